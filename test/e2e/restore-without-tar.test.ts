// GNU tar is needed only by the files it extracts: a restore whose files are all VM images (written
// in-process) never runs it — nor loads the process-starting module —, so it works with no GNU tar
// at all; a file that needs tar fails its VM with the reason, the others are restored.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir, passFile, node, sampleIn, BACKUP_BIN, RESTORE_BIN, ROOT } from '../helpers/cli.js';
import type { StatsReport } from '../../src/main/stats/report-types.js';

const MiB = 1024 * 1024;
const NOT_GNU_TAR = join(ROOT, 'test/fixtures/bin/fake-tar-not-gnu.js');

test('restore: images need no GNU tar; a file that does fails its VM with the reason', { timeout: 180_000 }, () => {
  const t = tempDir();
  try {
    const { root, home } = sampleIn(t.dir, { bigImageBytes: 32 * MiB, bigDataBytes: 4 * MiB, smallImageBytes: 4 * MiB, smallDataBytes: 256 * 1024 });
    // `vault` keeps only its image; `work` keeps firewall.xml, notes.txt and its menu list
    rmSync(join(root, 'appvms/vault/whitelisted-appmenus.list'));
    const pw = passFile(t.dir);
    const archive = join(t.dir, 'a.bin');
    const b = node(BACKUP_BIN, ['-q', '-y', '-p', pw, '--qubes-root', root, '--dom0-home', home, '-x', 'dom0', '--scrypt-logn', '10', '--chunk-size', '4M', archive, 'vault', 'work']);
    assert.equal(b.status, 0, b.stderr);

    // the first `tar` in PATH answers --version like bsdtar
    const bin = join(t.dir, 'bin');
    mkdirSync(bin);
    symlinkSync(NOT_GNU_TAR, join(bin, 'tar'));
    const env = { ...process.env, PATH: `${bin}:${process.env['PATH'] ?? ''}` };
    const hh = join(t.dir, 'hh', 'user');
    mkdirSync(hh, { recursive: true });
    const restore = (host: string, ...vms: string[]) =>
      node(RESTORE_BIN, ['--json', '-y', '-p', pw, '--qubes-root', host, '--dom0-home', hh, '--ignore-missing', archive, ...vms], { env });

    const host1 = join(t.dir, 'host1');
    const ok = restore(host1, 'vault');
    assert.equal(ok.status, 0, ok.stderr);
    assert.ok(readFileSync(join(host1, 'appvms/vault/private.img')).equals(readFileSync(join(root, 'appvms/vault/private.img'))), 'image restored as it was');
    const summary = JSON.parse(ok.stdout.split('\n').filter((l) => l.includes('"summary"')).pop() ?? '{}') as { stats?: StatsReport };
    assert.equal(summary.stats?.spawns.count, 0, 'no process was started');

    const host2 = join(t.dir, 'host2');
    const bad = restore(host2, 'vault', 'work');
    assert.notEqual(bad.status, 0, bad.stdout);
    assert.match(bad.stdout + bad.stderr, /work.*is not GNU tar.*GNU tar is required/);
    assert.doesNotMatch(bad.stderr, /^\s+at /m, 'no stack trace');
    assert.equal(existsSync(join(host2, 'appvms/work')), false, 'the VM whose files failed is not installed');
    assert.ok(existsSync(join(host2, 'appvms/vault/private.img')), 'the other VM is');
  } finally {
    t.cleanup();
  }
});

test('restore without GNU tar: tar is checked once per run, not once per VM (a hung check costs its timeout once)', { timeout: 120_000 }, () => {
  const t = tempDir();
  try {
    // Qubes' own archive: every VM and the dom0 home have files that need tar
    const fixture = join(process.env['QVMB_FIXTURES'] ?? '/work/shared/fixtures/qubes-made', 'upstream-v4-gzip.bin');
    const bin = join(t.dir, 'bin');
    mkdirSync(bin);
    const log = join(t.dir, 'version-calls');
    writeFileSync(join(bin, 'tar'), `#!/bin/sh\necho "$*" >> '${log}'\necho 'bsdtar 3.6.2 - libarchive 3.6.2'\n`);
    chmodSync(join(bin, 'tar'), 0o755);
    const pw = join(t.dir, 'pw');
    writeFileSync(pw, 'qubes\n');
    const hh = join(t.dir, 'hh', 'user');
    mkdirSync(hh, { recursive: true });
    const r = node(RESTORE_BIN, ['-y', '-p', pw, '--qubes-root', join(t.dir, 'host'), '--dom0-home', hh, '--ignore-missing', fixture], { env: { ...process.env, PATH: `${bin}:${process.env['PATH'] ?? ''}` } });
    assert.equal(r.status, 7, r.stderr);
    assert.match(r.stderr, /test-work: .*is not GNU tar/);
    assert.deepEqual(readFileSync(log, 'utf8').trim().split('\n'), ['--version'], 'one check for the 9 parts that need tar');
  } finally {
    t.cleanup();
  }
});
