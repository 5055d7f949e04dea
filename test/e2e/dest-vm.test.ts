// -d/--dest-vm (issue 10): the archive goes to / comes from a VM's qubes.Backup / qubes.Restore
// service through `qvm-run --pass-io --service VM SERVICE`, the location as the first line. A
// stand-in qvm-run first on PATH records its arguments and plays the VM side: qubes.Backup reads the
// location line and stores stdin there; qubes.Restore reads the location and the filter line and
// sends the archive as Qubes' tar2qfile does (qfile format; it fails unless dom0 answers with the
// right CRC). Failures: the service exits non-zero, the VM does not exist.
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { BACKUP_BIN, RESTORE_BIN, ROOT, node, passFile, run, sampleIn, tempDir } from '../helpers/cli.js';

const MiB = 1024 * 1024;
const FAKE_TAR2QFILE = join(ROOT, 'dist/test/helpers/fake-tar2qfile.js');

/** A bin dir with the stand-in qvm-run; VM "backupvm" has its files under `vmRoot`. */
function standIn(dir: string): { env: NodeJS.ProcessEnv; log: string; vmRoot: string } {
  const bin = join(dir, 'bin');
  const vmRoot = join(dir, 'backupvm');
  mkdirSync(bin, { recursive: true });
  mkdirSync(vmRoot, { recursive: true });
  const log = join(dir, 'qvm-run.log');
  const script = `#!/bin/sh
printf '%s\\n' "$*" >> "$QVMRUN_LOG"
[ "$1" = --pass-io ] && [ "$2" = --service ] || { echo "stand-in: unexpected arguments $*" >&2; exit 64; }
if [ "$3" != backupvm ]; then echo "qvm-run: error: no such domain: '$3'" >&2; exit 2; fi
case "$4" in
qubes.Backup)
  read -r loc
  echo "Starting Backupcopy"
  if [ -n "$SERVICE_FAIL" ]; then head -c 100000 > "$VMROOT/$loc"; echo "backupvm: No space left on device" >&2; exit 1; fi
  cat > "$VMROOT/$loc" ;;
qubes.Restore)
  read -r loc
  read -r paths
  printf '%s|%s\\n' "$loc" "$paths" >> "$QVMRUN_LOG"
  echo "Starting Restorecopy" >&2
  [ -f "$VMROOT/$loc" ] || { echo "Invalid command $loc" >&2; exit 2; }
  exec "$NODE" "$FAKE_TAR2QFILE" "$VMROOT/$loc" ;;
my.Restore+*)
  read -r paths
  printf 'service|%s\\n' "$paths" >> "$QVMRUN_LOG"
  exec "$NODE" "$FAKE_TAR2QFILE" "$VMROOT/archive" ;;
*) echo "Request refused" >&2; exit 126 ;;
esac
`;
  writeFileSync(join(bin, 'qvm-run'), script);
  chmodSync(join(bin, 'qvm-run'), 0o755);
  return { env: { PATH: `${bin}:${process.env['PATH'] ?? ''}`, QVMRUN_LOG: log, VMROOT: vmRoot, NODE: process.execPath, FAKE_TAR2QFILE }, log, vmRoot };
}

test('backup -d VM: archive through qubes.Backup (location first line), restore -d VM through qubes.Restore, byte-identical; failures are clear', { timeout: 300_000 }, () => {
  const t = tempDir('qvmb-destvm-');
  try {
    const { root, home } = sampleIn(t.dir, { bigImageBytes: 24 * MiB, bigDataBytes: 3 * MiB, smallImageBytes: 4 * MiB, smallDataBytes: 256 * 1024 });
    const pw = passFile(t.dir);
    const vm = standIn(t.dir);
    const base = ['-q', '-y', '--qubes-root', root, '--dom0-home', home, '-p', pw, '--scrypt-logn', '12', '--chunk-size', '1M'];

    // 1. backup into the VM; the location is a line, not an argument (spaces and all)
    let r = node(BACKUP_BIN, [...base, '-d', 'backupvm', 'my backup.bin'], { env: vm.env });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, '', 'the service chatter on its stdout is dropped');
    assert.equal(readFileSync(vm.log, 'utf8'), '--pass-io --service backupvm qubes.Backup\n');
    const archive = join(vm.vmRoot, 'my backup.bin');
    // the same archive as a local file restores (it is a complete Qubes backup)
    const host1 = join(t.dir, 'host1');
    const hh = join(t.dir, 'hh', 'user');
    mkdirSync(hh, { recursive: true });
    r = node(RESTORE_BIN, ['-q', '-y', '-p', pw, '--qubes-root', host1, '--dom0-home', hh, '--verify-only', archive]);
    assert.equal(r.status, 0, r.stderr);

    // 2. restore from the VM: location line + empty filter line, qfile stream answered with its CRC
    writeFileSync(vm.log, '');
    const host = join(t.dir, 'host');
    r = node(RESTORE_BIN, ['-q', '-y', '-p', pw, '--qubes-root', host, '--dom0-home', hh, '--skip-dom0-home', '-d', 'backupvm', 'my backup.bin'], { env: vm.env });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(readFileSync(vm.log, 'utf8'), '--pass-io --service backupvm qubes.Restore\nmy backup.bin|\n');
    for (const f of ['appvms/work/private.img', 'vm-templates/fedora-40/root.img']) {
      assert.equal(run('cmp', [join(root, f), join(host, f)]).status, 0, `${f} differs`);
    }

    // 3. --location-is-service: the location names the service; only the filter line is sent
    writeFileSync(vm.log, '');
    writeFileSync(join(vm.vmRoot, 'archive'), readFileSync(archive));
    r = node(RESTORE_BIN, ['-q', '-y', '-p', pw, '--qubes-root', join(t.dir, 'host3'), '--dom0-home', hh, '--verify-only', '-d', 'backupvm', '--location-is-service', 'my.Restore+today'], { env: vm.env });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(readFileSync(vm.log, 'utf8'), '--pass-io --service backupvm my.Restore+today\nservice|\n');

    // 4. the service fails after part of the archive: exit 5, its status and stderr, nothing installed
    const host4 = join(t.dir, 'host4');
    r = node(RESTORE_BIN, ['-q', '-y', '-p', pw, '--qubes-root', host4, '--dom0-home', hh, '--skip-dom0-home', '-d', 'backupvm', 'my backup.bin'], { env: { ...vm.env, FAKE_TAR2QFILE_STOP_AFTER: '12' } });
    assert.equal(r.status, 5, r.stderr);
    assert.match(r.stderr, /qubes\.Restore in VM backupvm/);
    assert.match(r.stderr, /read error on the backup disk/);
    assert.equal(existsSync(join(host4, 'appvms')), false);
    assert.equal(existsSync(join(host4, 'vm-templates')), false);

    // 5. no such VM: restore and backup say so (exit 5 / 1), nothing written
    r = node(RESTORE_BIN, ['-q', '-y', '-p', pw, '--qubes-root', join(t.dir, 'host5'), '--dom0-home', hh, '-d', 'nosuchvm', 'x.bin'], { env: vm.env });
    assert.equal(r.status, 5, r.stderr);
    assert.match(r.stderr, /no such domain: 'nosuchvm'/);
    r = node(BACKUP_BIN, [...base, '-d', 'nosuchvm', 'x.bin'], { env: vm.env });
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, /qubes\.Backup in VM nosuchvm failed \(exit 2\).*no such domain/);

    // 6. the VM's qubes.Backup fails (disk full in the VM): exit 1 with its message
    r = node(BACKUP_BIN, [...base, '-d', 'backupvm', 'full.bin'], { env: { ...vm.env, SERVICE_FAIL: '1' } });
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, /qubes\.Backup in VM backupvm failed \(exit 1\): backupvm: No space left on device/);

    // 7. usage: -d with --dest-command/--source-command, --location-is-service without -d, bad names
    r = node(BACKUP_BIN, [...base, '-d', 'backupvm', '--dest-command', 'cat > /dev/null', 'x'], { env: vm.env });
    assert.equal(r.status, 2, r.stderr);
    r = node(RESTORE_BIN, ['-d', 'backupvm', '--source-command', 'cat x', 'x'], { env: vm.env });
    assert.equal(r.status, 2, r.stderr);
    r = node(RESTORE_BIN, ['--location-is-service', 'my.Restore'], { env: vm.env });
    assert.equal(r.status, 2, r.stderr);
    r = node(RESTORE_BIN, ['-d', '-rf', 'x'], { env: vm.env });
    assert.equal(r.status, 2, r.stderr);
    r = node(RESTORE_BIN, ['-d', 'backupvm', '--location-is-service', 'bad service'], { env: vm.env });
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, /not a valid qrexec service name/);

    // 8. -d dom0 is a local file, as in Qubes
    writeFileSync(vm.log, '');
    r = node(BACKUP_BIN, [...base, '-d', 'dom0', join(t.dir, 'local.bin'), 'work'], { env: vm.env });
    assert.equal(r.status, 0, r.stderr);
    assert.ok(existsSync(join(t.dir, 'local.bin')));
    assert.equal(readFileSync(vm.log, 'utf8'), '');
    assert.deepEqual(readdirSync(t.dir).filter((n) => n.startsWith('host4')), ['host4'].filter((n) => existsSync(join(t.dir, n))));
  } finally {
    t.cleanup();
  }
});

test('-d VM without qvm-run on PATH (not dom0): a usage error before the plan, for backup and restore', { timeout: 60_000 }, () => {
  const t = tempDir('qvmb-destvm-');
  try {
    const { root, home } = sampleIn(t.dir, { bigImageBytes: MiB, bigDataBytes: 64 * 1024, smallImageBytes: MiB, smallDataBytes: 4096 });
    const pw = passFile(t.dir);
    const env = { PATH: dirname(process.execPath) + ':/usr/bin:/bin' };
    assert.notEqual(run('sh', ['-c', 'command -v qvm-run'], { env }).status, 0, 'no qvm-run on this PATH');
    const want = /^qvm-backup(-restore)?: error: --dest-vm sys-usb: qvm-run is not on PATH \(it is Qubes dom0's\); outside dom0 use --dest-command \/ --source-command$/;
    const b = node(BACKUP_BIN, ['-y', '--qubes-root', root, '--dom0-home', home, '-p', pw, '-d', 'sys-usb', 'x.bin'], { env });
    assert.equal(b.status, 2, b.stderr);
    assert.match(b.stderr.trim(), want, 'one line, no plan before it');
    const r = node(RESTORE_BIN, ['-y', '-p', pw, '-d', 'sys-usb', 'x.bin'], { env });
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr.trim(), want);
  } finally {
    t.cleanup();
  }
});
