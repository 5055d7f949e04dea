// qvm-backup under slow and failing destinations and failing tar, each in a loop beside busy
// loops: a slow reader behind stdout or --dest-command gets an archive that verifies every time;
// the first real failure is the reported cause with its code (tar → 7, a failing command → 1 with
// its exit status and stderr), never a cancellation it caused, never a stack trace; destinations
// never replace a file, a trailing '/' means a directory.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, closeSync, mkdirSync, openSync, readdirSync, rmSync, symlinkSync, writeFileSync, writeSync, existsSync, statSync, readFileSync, lstatSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir, passFile, node, run, haveCmd, BACKUP_BIN, RESTORE_BIN, ROOT, sampleIn } from '../helpers/cli.js';
import { busyLoops } from '../helpers/load.js';

const MiB = 1024 * 1024;
const SLOW_READER = join(ROOT, 'test/fixtures/bin/slow-reader.js');
const ITERATIONS = 3;

function sample(dir: string, bigDataBytes = 4 * MiB) {
  return sampleIn(dir, { bigImageBytes: 64 * MiB, bigDataBytes, smallImageBytes: 8 * MiB, smallDataBytes: 64 * 1024 });
}

interface Exit {
  status: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
}

/** Wait for a child's exit, collecting stderr; kills it after `ms` (a hang is a failure). */
function exited(child: ReturnType<typeof spawn>, ms: number): Promise<Exit> {
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), ms);
    child.on('close', (status, signal) => {
      clearTimeout(timer);
      resolve({ status, signal, stderr });
    });
  });
}

function verify(pw: string, archive: string): void {
  const v = node(RESTORE_BIN, ['-q', '-y', '--verify-only', '-p', pw, archive]);
  assert.equal(v.status, 0, `verify ${archive}: ${v.stderr}`);
}

/** No stack trace, no Node warning, no late-worker noise: only our own lines. */
function clean(stderr: string): void {
  assert.doesNotMatch(stderr, /^\s+at |Warning|Unexpected message|node:internal/m, stderr);
}

test('a slow reader behind --dest-command and behind stdout gets an archive that verifies, every time', { timeout: 600_000 }, async () => {
  const t = tempDir();
  const load = busyLoops(2);
  try {
    const { root, home } = sample(t.dir);
    const pw = passFile(t.dir);
    const base = ['-q', '-y', '--qubes-root', root, '--dom0-home', home, '-p', pw, '--scrypt-logn', '10', '--chunk-size', '64K'];
    for (let i = 0; i < ITERATIONS; i++) {
      const viaCmd = join(t.dir, `cmd-${i}.bin`);
      const cmd = spawn(process.execPath, [BACKUP_BIN, ...base, '--dest-command', `"${process.execPath}" '${SLOW_READER}' '${viaCmd}'`, 'x'], { stdio: ['ignore', 'ignore', 'pipe'] });
      const c = await exited(cmd, 120_000);
      assert.equal(c.status, 0, c.stderr);
      assert.equal(c.stderr, '', 'nothing on stderr with -q (no Node warnings)');
      verify(pw, viaCmd);

      // stdout a socket (what node, ssh and many supervisors hand a child): writes complete later
      const viaStdout = join(t.dir, `stdout-${i}.bin`);
      const reader = spawn(process.execPath, [SLOW_READER, viaStdout], { stdio: ['pipe', 'ignore', 'inherit'] });
      const readerDone = exited(reader, 120_000);
      const backup = spawn(process.execPath, [BACKUP_BIN, ...base, '-'], { stdio: ['ignore', reader.stdin!, 'pipe'] });
      reader.stdin!.destroy(); // the backup holds the only writer now
      const b = await exited(backup, 120_000);
      assert.equal(b.status, 0, b.stderr);
      assert.equal(b.stderr, '');
      assert.equal((await readerDone).status, 0);
      verify(pw, viaStdout);
    }
  } finally {
    load.stop();
    t.cleanup();
  }
});

/** `body` with a sample collection, a passphrase file and an empty output directory, beside busy
 *  loops; everything removed afterwards. */
function underLoad(bigDataBytes: number, body: (c: { dir: string; root: string; home: string; pw: string; out: string }) => void): void {
  const t = tempDir();
  const load = busyLoops(2);
  try {
    const { root, home } = sample(t.dir, bigDataBytes);
    const out = join(t.dir, 'out');
    mkdirSync(out);
    body({ dir: t.dir, root, home, pw: passFile(t.dir), out });
  } finally {
    load.stop();
    t.cleanup();
  }
}

/** A `tar` for PATH that is GNU tar, except that the archive of vm3/private.img breaks off. */
function brokenTar(bin: string, how: 'shrank' | 'killed'): void {
  const realTar = run('sh', ['-c', 'command -v tar']).stdout.trim();
  mkdirSync(bin, { recursive: true });
  const fail = how === 'shrank' ? `echo "tar: private.img: File shrank by 12345 bytes; padding with zeros" >&2; exit 2` : 'kill -9 $$';
  writeFileSync(
    join(bin, 'tar'),
    `#!/bin/sh\ncase "$*" in\n  *vm3/private.img*) '${realTar}' "$@" | head -c 1500000; ${fail};;\nesac\nexec '${realTar}' "$@"\n`,
  );
  chmodSync(join(bin, 'tar'), 0o755);
}

test('tar failing mid-stream is the reported cause (exit 7 with its stderr), never a cancellation it caused', { timeout: 600_000 }, () => {
  underLoad(8 * MiB, ({ dir, root, home, pw, out }) => {
    for (const how of ['shrank', 'killed'] as const) {
      const bin = join(dir, `bin-${how}`);
      brokenTar(bin, how);
      for (let i = 0; i < ITERATIONS; i++) {
        // GNU tar makes the images' inner archives only when asked (or for what is not a regular file)
        const r = node(BACKUP_BIN, ['-q', '-y', '--qubes-root', root, '--dom0-home', home, '-p', pw, '--scrypt-logn', '10', '--chunk-size', '1M', `${out}/`], { env: { PATH: `${bin}:${process.env['PATH'] ?? ''}`, QVMB_INNER_TAR: 'tar' } });
        const last = r.stderr.trim().split('\n').pop() ?? '';
        assert.equal(r.status, 7, `${how} #${i}: ${r.stderr}`);
        assert.match(last, how === 'shrank' ? /^qvm-backup: error: VM work: tar failed \(exit 2\): tar: private\.img: File shrank/ : /^qvm-backup: error: VM work: tar failed \(killed by SIGKILL\)/);
        clean(r.stderr);
        assert.deepEqual(readdirSync(out), [], 'partial output removed');
      }
    }
  });
});

test('a compression program failing on an in-process inner archive (-Z xz) is the reported cause: exit 7 with its stderr, no partial output, no process left', { timeout: 600_000, skip: !haveCmd('xz') && 'xz not installed' }, () => {
  underLoad(8 * MiB, ({ dir, root, home, pw, out }) => {
    // an `xz` that is xz for small inputs (qubes.xml, firewall.xml) and fails on an image's
    const realXz = run('sh', ['-c', 'command -v xz']).stdout.trim();
    const bin = join(dir, 'bin-xz');
    mkdirSync(bin);
    writeFileSync(join(bin, 'xz'), `#!/bin/sh\ntmp=$(mktemp)\ncat > "$tmp"\nif [ "$(stat -c %s "$tmp")" -gt 2000000 ]; then rm -f "$tmp"; echo "xz: simulated failure" >&2; exit 2; fi\n'${realXz}' "$@" < "$tmp"; rc=$?; rm -f "$tmp"; exit $rc\n`);
    chmodSync(join(bin, 'xz'), 0o755);
    for (let i = 0; i < ITERATIONS; i++) {
      const r = node(BACKUP_BIN, ['-q', '-y', '--qubes-root', root, '--dom0-home', home, '-p', pw, '--scrypt-logn', '10', '--chunk-size', '1M', '-Z', 'xz', `${out}/`], { env: { PATH: `${bin}:${process.env['PATH'] ?? ''}` } });
      assert.equal(r.status, 7, `#${i}: ${r.stderr}`);
      assert.match(r.stderr.trim().split('\n').pop() ?? '', /^qvm-backup: error: VM \S+: vm\d+\/\S+\.img: the compression program failed: xz \(exit 2\): xz: simulated failure$/);
      clean(r.stderr);
      assert.deepEqual(readdirSync(out), [], 'partial output removed');
      assert.equal(run('pgrep', ['-f', join(bin, 'xz')]).status, 1, 'no xz left running');
    }
  });
});

test('the in-process inner archives: an image written to while read fails naming VM and file (exit 1); one removed after the plan too (exit 1, not left to GNU tar); no partial output', { timeout: 600_000 }, async () => {
  const t = tempDir();
  try {
    const { root, home } = sample(t.dir, 48 * MiB);
    const pw = passFile(t.dir);
    const out = join(t.dir, 'out');
    mkdirSync(out);
    const image = join(root, 'appvms/work/private.img');
    // a running VM: its image keeps changing during the whole backup
    const writer = spawn('sh', ['-c', 'while :; do printf x >> "$1"; done', 'sh', image], { stdio: 'ignore' });
    try {
      const backup = spawn(process.execPath, [BACKUP_BIN, '-q', '-y', '--qubes-root', root, '--dom0-home', home, '-p', pw, '--scrypt-logn', '10', `${out}/`], { stdio: ['ignore', 'ignore', 'pipe'] });
      const r = await exited(backup, 300_000);
      assert.equal(r.status, 1, r.stderr);
      assert.match(r.stderr.trim().split('\n').pop() ?? '', /^qvm-backup: error: VM work: .*private\.img: it changed while it was being backed up/);
      clean(r.stderr);
      assert.deepEqual(readdirSync(out), [], 'partial output removed');
    } finally {
      writer.kill('SIGKILL');
    }
    // removed once the plan was confirmed (the passphrase is asked for after it)
    const r = node(BACKUP_BIN, ['-q', '-y', '--qubes-root', root, '--dom0-home', home, '--passphrase-command', `rm -f '${join(root, 'appvms/personal/private.img')}'; echo pass`, '--scrypt-logn', '10', `${out}/`]);
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, /^qvm-backup: error: VM personal: \S+\/appvms\/personal\/private\.img: it disappeared since the backup was planned \(a running VM or another program changed it\?\); the backup stopped$/m);
    clean(r.stderr);
    assert.deepEqual(readdirSync(out), [], 'partial output removed');
    // grown past what a restore accepts for the size its qubes.xml states (a running VM writing):
    // stopped when the file is opened; a growth within the restore's room backs up and verifies
    const vault = join(root, 'appvms/vault/private.img');
    const grow = (mib: number): string => `dd if=/dev/urandom of='${vault}' bs=1M count=${mib} conv=notrunc status=none; echo pass`;
    const grown = node(BACKUP_BIN, ['-q', '-y', '--qubes-root', root, '--dom0-home', home, '--passphrase-command', grow(80), '--scrypt-logn', '10', `${out}/`, 'vault']);
    assert.equal(grown.status, 1, grown.stderr);
    assert.match(grown.stderr, /^qvm-backup: error: VM vault: its files grew since the backup was planned \(a running VM\?\): \S+\/appvms\/vault\/private\.img brings its archive data to \d+ bytes, more than a restore accepts for the \d+ bytes its qubes\.xml states \(up to \d+\); the backup stopped$/m);
    clean(grown.stderr);
    assert.deepEqual(readdirSync(out), [], 'partial output removed');
    const small = join(t.dir, 'small.bin');
    const within = node(BACKUP_BIN, ['-q', '-y', '--qubes-root', root, '--dom0-home', home, '--passphrase-command', grow(1), '--scrypt-logn', '10', small, 'vault']);
    assert.equal(within.status, 0, within.stderr);
    const pwFile = join(t.dir, 'pw-small');
    writeFileSync(pwFile, 'pass\n');
    const verified = node(RESTORE_BIN, ['-q', '--verify-only', '-y', '-p', pwFile, small]);
    assert.equal(verified.status, 0, verified.stderr);
    // replaced by a FIFO or a directory: GNU tar would archive that, and no restore installs it
    for (const [make, what] of [['mkfifo', 'a FIFO'], ['mkdir', 'a directory']] as const) {
      const img = join(root, 'appvms/work/private.img');
      const r2 = node(BACKUP_BIN, ['-q', '-y', '--qubes-root', root, '--dom0-home', home, '--passphrase-command', `rm -f '${img}'; ${make} '${img}'; echo pass`, '--scrypt-logn', '10', `${out}/`, 'work']);
      assert.equal(r2.status, 1, r2.stderr);
      assert.match(r2.stderr, new RegExp(`^qvm-backup: error: VM work: \\S+/appvms/work/private\\.img: it is no longer a regular file \\(${what}\\) since the backup was planned`, 'm'));
      clean(r2.stderr);
      assert.deepEqual(readdirSync(out), [], 'partial output removed');
      rmSync(img, { recursive: true });
      writeFileSync(img, 'data');
    }
  } finally {
    t.cleanup();
  }
});

test('format 2 (GNU tar reads every file): a file removed after the plan fails naming its VM, in one line (tar\'s closing line left out), in text and in JSON; no partial output', { timeout: 300_000 }, () => {
  const t = tempDir();
  try {
    const { root, home } = sample(t.dir, 2 * MiB);
    const out = join(t.dir, 'out');
    mkdirSync(out);
    const img = join(root, 'appvms/personal/private.img');
    const args = ['-y', '--format', '2', '--no-compress', '--qubes-root', root, '--dom0-home', home, '--passphrase-command', `rm -f '${img}'; echo pass`, `${out}/`, 'personal'];
    const r = node(BACKUP_BIN, ['-q', ...args]);
    assert.equal(r.status, 7, r.stderr);
    const errors = r.stderr.split('\n').filter((l) => l.startsWith('qvm-backup: error:'));
    assert.deepEqual(errors, ['qvm-backup: error: VM personal: tar failed (exit 2): tar: private.img: Cannot stat: No such file or directory'], r.stderr);
    assert.doesNotMatch(r.stderr, /Exiting with failure status/);
    clean(r.stderr);
    assert.deepEqual(readdirSync(out), [], 'partial output removed');
    writeFileSync(img, 'data');
    const j = node(BACKUP_BIN, ['--json', ...args]);
    assert.equal(j.status, 7, j.stderr);
    const last = JSON.parse(j.stdout.trim().split('\n').pop() ?? '{}') as { message_type?: string; message?: string; error_code?: string };
    assert.equal(last.message_type, 'exit_error');
    assert.equal(last.error_code, 'ERR_TAR_FAILED');
    assert.equal(last.message, 'VM personal: tar failed (exit 2): tar: private.img: Cannot stat: No such file or directory');
    assert.deepEqual(readdirSync(out), [], 'partial output removed');
  } finally {
    t.cleanup();
  }
});

test('a destination command that exits early: its exit status and stderr are the cause, no crash', { timeout: 600_000 }, () => {
  const t = tempDir();
  const load = busyLoops(2);
  try {
    const { root, home } = sample(t.dir, 24 * MiB);
    const pw = passFile(t.dir);
    for (let i = 0; i < ITERATIONS + 1; i++) {
      // many workers and chunks in flight when the command goes away (default scrypt cost)
      const r = node(BACKUP_BIN, ['-q', '-y', '--qubes-root', root, '--dom0-home', home, '-p', pw, '--threads', '8', '--chunk-size', '1M', '--dest-command', 'head -c 1000 >/dev/null; echo "remote: disk quota exceeded" >&2; exit 3', 'x']);
      assert.equal(r.status, 1, `#${i}: ${r.stderr}`);
      assert.match(r.stderr.trim(), /^qvm-backup: error: writing to the output command: output command failed \(exit 3\): remote: disk quota exceeded$/);
      clean(r.stderr);
    }
  } finally {
    load.stop();
    t.cleanup();
  }
});

test('a destination command that stops reading and exits 0: said as such (exit 1), not "failed (exit 0)"', { timeout: 60_000 }, () => {
  const t = tempDir();
  try {
    const { root, home } = sample(t.dir, MiB);
    const pw = passFile(t.dir);
    const r = node(BACKUP_BIN, ['-q', '-y', '--qubes-root', root, '--dom0-home', home, '-p', pw, '--scrypt-logn', '10', '--dest-command', 'head -c 100000 >/dev/null', 'x']);
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr.trim(), /^qvm-backup: error: writing to the output command: output command exited with status 0 before it had read the whole archive$/);
  } finally {
    t.cleanup();
  }
});

test('a destination command that exits 0 having left the archive\'s last bytes unread in its pipe (no write of ours fails): exit 1, never "finished"', { timeout: 60_000 }, () => {
  const t = tempDir();
  try {
    const { root, home } = sample(t.dir, MiB);
    const pw = passFile(t.dir);
    const args = (cmd: string): string[] => ['-q', '-y', '--qubes-root', root, '--dom0-home', home, '-p', pw, '--scrypt-logn', '10', '--dest-command', cmd, 'x'];
    const whole = join(t.dir, 'whole.bin');
    const ok = node(BACKUP_BIN, args(`cat > '${whole}'`));
    assert.equal(ok.status, 0, ok.stderr);
    const size = statSync(whole).size;
    // all but the last 30 000 bytes (they fit in the pipe's buffer), or nothing at all
    for (const cmd of [`head -c ${size - 30_000} > '${join(t.dir, 'cut.bin')}'; sleep 0.3`, 'sleep 0.5']) {
      const r = node(BACKUP_BIN, args(cmd));
      assert.equal(r.status, 1, `${cmd}: ${r.stderr}`);
      // (said when the archive ends, or at the write its pipe no longer takes)
      assert.match(r.stderr.trim(), /^qvm-backup: error: (finishing the backup|writing to the output command): output command exited with status 0 before it had read the whole archive$/, cmd);
    }
    // a command's own failure stays its own, with what it said
    const own = node(BACKUP_BIN, args(`cat > /dev/null; echo 'remote: gone' >&2; exit 125`));
    assert.equal(own.status, 1, own.stderr);
    assert.match(own.stderr.trim(), /output command failed \(exit 125\): remote: gone$/);
  } finally {
    t.cleanup();
  }
});

test('a destination command that exits 0 but leaves a process holding its stderr: the backup ends with the command (exit 0), and what it left is killed', { timeout: 120_000 }, () => {
  const t = tempDir();
  try {
    const { root, home } = sample(t.dir, MiB);
    const pw = passFile(t.dir);
    const out = join(t.dir, 'remote.bin');
    const marker = join(t.dir, 'left-running');
    const started = Date.now();
    // the background shell keeps the command's stderr open for 2 minutes, as an ssh master would
    const r = node(BACKUP_BIN, ['-q', '-y', '--qubes-root', root, '--dom0-home', home, '-p', pw, '--scrypt-logn', '10', '--dest-command', `cat > '${out}'; (touch '${marker}'; exec sleep 119.7) & exit 0`, 'x']);
    assert.equal(r.status, 0, r.stderr);
    assert.ok(Date.now() - started < 60_000, 'not held by the process left behind');
    const v = node(RESTORE_BIN, ['-q', '-y', '--verify-only', '-p', pw, out]);
    assert.equal(v.status, 0, v.stderr);
    assert.ok(existsSync(marker));
    // the process it left is gone with the backup
    assert.equal(run('pgrep', ['-f', '^sleep 119.7$']).stdout.split('\n').filter((l) => l !== '').length, 0);
  } finally {
    t.cleanup();
  }
});

test('destinations: a trailing slash means a directory; concurrent runs never replace each other', { timeout: 300_000 }, async () => {
  const t = tempDir();
  try {
    const { root, home } = sample(t.dir, 2 * MiB);
    const pw = passFile(t.dir);
    const base = ['-q', '-y', '--qubes-root', root, '--dom0-home', home, '-p', pw, '--scrypt-logn', '10'];
    // a missing directory is refused before anything else (even before the passphrase is read)
    const asked = join(t.dir, 'passphrase-asked');
    let r = node(BACKUP_BIN, ['-q', '-y', '--qubes-root', root, '--dom0-home', home, '--passphrase-command', `touch '${asked}'; echo pass`, `${join(t.dir, 'missing-dir')}/`, 'vault']);
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, /backup directory does not exist: .*missing-dir\/$/m);
    assert.equal(existsSync(asked), false, 'the passphrase was not asked for');
    assert.equal(existsSync(join(t.dir, 'missing-dir')), false, 'no file named like the directory');
    writeFileSync(join(t.dir, 'a-file'), 'keep me');
    r = node(BACKUP_BIN, [...base, `${join(t.dir, 'a-file')}/`, 'vault']);
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, /not a directory/);

    // two runs at once into one directory: both archives exist (same second: a -1 name) and verify
    const dir = join(t.dir, 'dir');
    mkdirSync(dir);
    const both = await Promise.all([0, 1].map((i) => exited(spawn(process.execPath, [BACKUP_BIN, ...base, dir, i === 0 ? 'vault' : 'personal'], { stdio: ['ignore', 'ignore', 'pipe'] }), 120_000)));
    assert.deepEqual(both.map((b) => b.status), [0, 0], both.map((b) => b.stderr).join('\n'));
    const made = readdirSync(dir).sort();
    assert.equal(made.length, 2, made.join(' '));
    for (const n of made) {
      assert.match(n, /^qubes-\d{4}-\d\d-\d\dT\d{6}(-1)?$/);
      verify(pw, join(dir, n));
    }

    // two runs at once to one file name: one archive is complete there, the other run fails clearly
    const file = join(t.dir, 'one.bin');
    const pair = await Promise.all(['vault', 'personal'].map((vm) => exited(spawn(process.execPath, [BACKUP_BIN, ...base, file, vm], { stdio: ['ignore', 'ignore', 'pipe'] }), 120_000)));
    const ok = pair.filter((p) => p.status === 0).length;
    assert.ok(ok >= 1, pair.map((p) => p.stderr).join('\n'));
    for (const p of pair.filter((q) => q.status !== 0)) {
      // it either found the file at its start (usage, exit 2) or when it finished (exit 1)
      if (p.status === 2) assert.match(p.stderr, /one\.bin \(refusing to overwrite\)/);
      else {
        assert.equal(p.status, 1, p.stderr);
        assert.match(p.stderr, /one\.bin appeared while the backup was being written; it was not overwritten/);
      }
    }
    verify(pw, file);
    assert.deepEqual(readdirSync(t.dir).filter((n) => n.includes('partial')), []);
  } finally {
    t.cleanup();
  }
});

test('a location that is empty, or the name of a VM that is no path yet, or a TMPDIR that is no directory, is refused (exit 2) before anything is written; ./NAME is a path', { timeout: 120_000 }, () => {
  const t = tempDir();
  try {
    const { root, home } = sample(t.dir, 1 * MiB);
    const pw = passFile(t.dir);
    const cwd = join(t.dir, 'cwd');
    mkdirSync(cwd);
    const backup = (...args: string[]) => spawnSync(process.execPath, [BACKUP_BIN, '-q', '-y', '--qubes-root', root, '--dom0-home', home, '-p', pw, '--scrypt-logn', '10', ...args], { cwd, encoding: 'utf8' });
    // `qvm-backup "$DEST" vault` with DEST unset would have written into the current directory
    const empty = backup('', 'vault');
    assert.equal(empty.status, 2, empty.stderr);
    assert.match(empty.stderr, /the backup location is empty \(an unset variable\?\)/);
    // `qvm-backup vault` (or `--profile daily vault`) would have backed up every VM into ./vault
    const named = backup('vault');
    assert.equal(named.status, 2, named.stderr);
    assert.match(named.stderr, /the backup location 'vault' is the name of a VM of the collection, not a path: VMs to back up come after the location \(with --profile too\); to write a file of that name, give \.\/vault/);
    assert.deepEqual(readdirSync(cwd), [], 'nothing written');
    // a link to a missing target is refused at once, not found "appeared" after the whole backup
    symlinkSync(join(t.dir, 'nowhere'), join(cwd, 'vault'));
    const dangling = backup('./vault', 'vault');
    assert.equal(dangling.status, 2, dangling.stderr);
    assert.match(dangling.stderr, /backup location \.\/vault is a symbolic link to a missing target \(not followed\)/);
    rmSync(join(cwd, 'vault'));
    // a dom0 home that is not there is the caller's argument (exit 2, as the restore says it)
    const noHome = spawnSync(process.execPath, [BACKUP_BIN, '-q', '-y', '--qubes-root', root, '--dom0-home', join(t.dir, 'no', 'user'), '-p', pw, '--scrypt-logn', '10', './h.bin', 'dom0'], { cwd, encoding: 'utf8' });
    assert.equal(noHome.status, 2, noHome.stderr);
    assert.match(noHome.stderr, /dom0 home not found: .*\/no\/user \(give it with --dom0-home, or leave it out with -x dom0\)/);
    // format 2 passes its volumes through FIFOs in TMPDIR: one that names no directory is said at
    // the start (exit 2), not as a raw ENOENT after the passphrase; a verification's scratch copy too
    for (const tmp of [join(t.dir, 'no-tmp'), pw]) {
      const v2 = spawnSync(process.execPath, [BACKUP_BIN, '-q', '-y', '--qubes-root', root, '--dom0-home', home, '-p', pw, '--format', '2', '--no-compress', './v2.bin', 'vault'], { cwd, encoding: 'utf8', env: { ...process.env, TMPDIR: tmp } });
      assert.equal(v2.status, 2, v2.stderr);
      assert.match(v2.stderr, /^qvm-backup: error: TMPDIR \S+ (does not exist|is not a directory): format 2 passes each volume through a FIFO made there; set TMPDIR to an existing directory, or unset it\n$/);
      assert.deepEqual(readdirSync(cwd), [], 'nothing written');
    }
    const dotted = backup('./vault', 'vault');
    assert.equal(dotted.status, 0, dotted.stderr);
    const asked = join(t.dir, 'asked');
    const verify = spawnSync(process.execPath, [RESTORE_BIN, '--verify-only', '-y', '--passphrase-command', `touch '${asked}'; cat '${pw}'`, join(cwd, 'vault')], { encoding: 'utf8', env: { ...process.env, TMPDIR: join(t.dir, 'no-tmp') } });
    assert.equal(verify.status, 2, verify.stderr);
    assert.match(verify.stderr, /TMPDIR \S+\/no-tmp does not exist: a verification extracts into a scratch directory there/);
    assert.equal(existsSync(asked), false, 'said before the passphrase');
    assert.deepEqual(readdirSync(cwd), ['vault']);
    // an existing directory of that name is a location as before
    rmSync(join(cwd, 'vault'));
    mkdirSync(join(cwd, 'vault'));
    const dir = backup('vault', 'vault');
    assert.equal(dir.status, 0, dir.stderr);
    assert.equal(readdirSync(join(cwd, 'vault')).length, 1);
  } finally {
    t.cleanup();
  }
});

test('a backup to stdout when stdout is /dev/null or closed is refused (exit 2) before anything is read: the archive would be lost', () => {
  const t = tempDir();
  try {
    const { root, home } = sample(t.dir, 4 * MiB);
    const pw = passFile(t.dir);
    const args = [BACKUP_BIN, '-q', '-y', '--qubes-root', root, '--dom0-home', home, '-p', pw, '--scrypt-logn', '10', '-'];
    // 'ignore' is /dev/null; a closed fd 1 is reopened on /dev/null by node
    const nul = spawnSync(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' });
    assert.equal(nul.status, 2, nul.stderr);
    assert.match(nul.stderr, /stdout is \/dev\/null or was closed: the archive would be lost/);
    const closed = spawnSync('sh', ['-c', `exec "$0" "$@" >&-`, process.execPath, ...args], { stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8' });
    assert.equal(closed.status, 2, closed.stderr);
    // a pipe is fine
    const piped = spawnSync(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 1 << 30 });
    assert.equal(piped.status, 0, String(piped.stderr));
    assert.ok(piped.stdout.length > 0);
  } finally {
    t.cleanup();
  }
});

test('an unchanged VM whose disk usage understates its data (1 KiB-block ext4): backed up, with a warning that its restore needs --ignore-size-limit', { timeout: 300_000 }, (t) => {
  if (process.getuid?.() !== 0 || !haveCmd('mkfs.ext4')) return t.skip('needs root and mkfs.ext4 (a loop mount)');
  const tmp = tempDir();
  const fsImage = join(tmp.dir, 'fs.img');
  const mnt = join(tmp.dir, 'mnt');
  mkdirSync(mnt);
  assert.equal(run('truncate', ['-s', '300M', fsImage]).status, 0);
  assert.equal(run('mkfs.ext4', ['-q', '-b', '1024', '-F', fsImage]).status, 0);
  if (run('mount', ['-o', 'loop', fsImage, mnt]).status !== 0) {
    tmp.cleanup();
    return t.skip('no loop mount here');
  }
  try {
    const { root, home } = sampleIn(mnt, { bigImageBytes: 4 * 1024 * 1024, bigDataBytes: 64 * 1024, smallImageBytes: 1024 * 1024, smallDataBytes: 16 * 1024 });
    // one byte every 8 KiB: a 1 KiB block each on this file system, a 4 KiB block each as a restore
    // counts (and writes) them
    const fd = openSync(join(root, 'appvms/vault/private.img'), 'r+');
    for (let i = 0; i < 30_000; i++) writeSync(fd, Buffer.from([i & 0xff | 1]), 0, 1, i * 8192 + 1023);
    closeSync(fd);
    const pw = passFile(tmp.dir);
    const archive = join(tmp.dir, 'a.bin');
    const b = node(BACKUP_BIN, ['-y', '--scrypt-logn', '10', '--qubes-root', root, '--dom0-home', home, '-p', pw, archive, 'vault']);
    assert.equal(b.status, 0, b.stderr);
    assert.match(b.stderr, /^warning: VM vault: its data \(\d+ bytes as archived, at \S+\/appvms\/vault\/private\.img\) is more than a restore accepts for the \d+ bytes of disk usage its qubes\.xml states \(up to \d+; the file system's disk usage understates it\): restoring this VM will need --ignore-size-limit$/m);
    const refused = node(RESTORE_BIN, ['-q', '--verify-only', '-y', '-p', pw, archive]);
    assert.notEqual(refused.status, 0, 'the restore refuses it without --ignore-size-limit, as the warning said');
    assert.match(refused.stderr, /--ignore-size-limit/);
    const verified = node(RESTORE_BIN, ['-q', '--verify-only', '-y', '--ignore-size-limit', '-p', pw, archive]);
    assert.equal(verified.status, 0, verified.stderr);
  } finally {
    run('umount', ['-l', mnt]);
    tmp.cleanup();
  }
});

test('an image this user cannot read stops the plan, before anything is written (exit 1, naming VM and file), not midway as "tar failed"', { timeout: 120_000, skip: (process.getuid?.() !== 0 || !haveCmd('setpriv')) && 'needs root and setpriv (to run as nobody)' }, (tc) => {
  const asNobody = ['--reuid', 'nobody', '--regid', 'nogroup', '--clear-groups'];
  // (a checkout in a private directory, as CI's temp clone, is not nobody's to run)
  if (run('setpriv', [...asNobody, process.execPath, '-e', `require('fs').accessSync(${JSON.stringify(BACKUP_BIN)}, 4)`]).status !== 0) return tc.skip('nobody cannot read this checkout');
  const t = tempDir();
  try {
    const { root, home } = sample(t.dir, 2 * MiB);
    const out = join(t.dir, 'out');
    mkdirSync(out);
    run('chmod', ['-R', 'o+rX', t.dir]);
    chmodSync(out, 0o777);
    chmodSync(join(root, 'appvms/personal/private.img'), 0o600);
    const r = run('setpriv', [...asNobody, process.execPath, BACKUP_BIN, '-q', '-y', '--qubes-root', root, '--dom0-home', home, '--passphrase-command', 'echo pass', '--scrypt-logn', '10', `${out}/`]);
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, /^qvm-backup: error: VM personal: \S+\/appvms\/personal\/private\.img cannot be read by this user \(EACCES\): it cannot be backed up$/m);
    clean(r.stderr);
    assert.deepEqual(readdirSync(out), [], 'nothing written');
    // inside a tree GNU tar archives (the dom0 home): checked by the plan too; a VM directory this
    // user cannot enter is said as such, not as a missing image
    mkdirSync(join(home, 'private-dir'));
    writeFileSync(join(home, 'private-dir', 'f'), 'x');
    chmodSync(join(home, 'private-dir'), 0o700);
    chmodSync(join(root, 'appvms/work'), 0o700);
    for (const [vm, want] of [['dom0', /^qvm-backup: error: the dom0 home: \S+\/private-dir cannot be read by this user \(EACCES\): it cannot be backed up$/m], ['work', /^qvm-backup: error: \S+\/appvms\/work\/private\.img cannot be reached by this user \(EACCES\): it cannot be backed up$/m]] as const) {
      const x = run('setpriv', [...asNobody, process.execPath, BACKUP_BIN, '-q', '-y', '--qubes-root', root, '--dom0-home', home, '--passphrase-command', 'echo pass', '--scrypt-logn', '10', `${out}/`, vm]);
      assert.equal(x.status, 1, x.stderr);
      assert.match(x.stderr, want, vm);
      assert.deepEqual(readdirSync(out), [], 'nothing written');
    }
  } finally {
    t.cleanup();
  }
});

test('a host qubes.xml cut short: exit 1 (the host\'s file, not an archive\'s integrity), one line naming it and the elements left open', { timeout: 60_000 }, () => {
  const t = tempDir();
  try {
    const { root, home } = sample(t.dir, 64 * 1024);
    writeFileSync(join(root, 'qubes.xml'), '<?xml version="1.0"?>\n<qubes><domains><domain');
    const r = node(BACKUP_BIN, ['-q', '-y', '--qubes-root', root, '--dom0-home', home, '--passphrase-command', 'echo pass', join(t.dir, 'x.bin')]);
    assert.equal(r.status, 1, r.stderr);
    assert.equal(r.stderr.trim(), `qvm-backup: error: the host collection ${join(root, 'qubes.xml')} cannot be used: qubes.xml is malformed: it ends with elements <qubes> > <domains> > <domain> still open (cut short?)`);
  } finally {
    t.cleanup();
  }
});

test('partial files that killed backups left in the destination are named in a warning (not removed: the directory may be shared)', { timeout: 120_000 }, () => {
  const t = tempDir();
  try {
    const { root, home } = sample(t.dir, 64 * 1024);
    const pw = passFile(t.dir);
    const out = join(t.dir, 'out');
    mkdirSync(out);
    // a PID above the kernel's maximum never runs; our own parent's does
    writeFileSync(join(out, '.qubes-backup-2026-01-01T000000.partial-4194999'), 'half an archive');
    writeFileSync(join(out, `.other.partial-${process.pid}`), 'a running backup\'s');
    const r = node(BACKUP_BIN, ['-y', '--qubes-root', root, '--dom0-home', home, '-p', pw, '--scrypt-logn', '10', `${out}/`, 'vault']);
    assert.equal(r.status, 0, r.stderr);
    const warnings = r.stderr.split('\n').filter((l) => l.includes('partial file'));
    assert.equal(warnings.length, 1, r.stderr);
    assert.match(warnings[0]!, /^warning: \S+ holds 1 partial file of backups that were killed before they finished \(\.qubes-backup-2026-01-01T000000\.partial-4194999\): not archives; remove it unless another machine is writing there$/);
    assert.ok(readdirSync(out).includes('.qubes-backup-2026-01-01T000000.partial-4194999'), 'never removed');
  } finally {
    t.cleanup();
  }
});

test('backup_timestamp: the live qubes.xml keeps its mode; one that is a symbolic link is not written through (exit 0, a warning)', { timeout: 60_000 }, () => {
  const t = tempDir();
  try {
    const { root, home } = sample(t.dir, MiB);
    const pw = passFile(t.dir);
    const xml = join(root, 'qubes.xml');
    const args = (out: string): string[] => ['-y', '--qubes-root', root, '--dom0-home', home, '-p', pw, '--scrypt-logn', '10', join(t.dir, out)];
    chmodSync(xml, 0o600);
    const r = node(BACKUP_BIN, args('a.bin'));
    assert.equal(r.status, 0, r.stderr);
    assert.equal(statSync(xml).mode & 0o777, 0o600);
    assert.match(readFileSync(xml, 'utf8'), /backup_timestamp/);
    // the file elsewhere, qubes.xml a link to it
    const real = join(t.dir, 'real-qubes.xml');
    writeFileSync(real, readFileSync(xml, 'utf8').replace(/<property name="backup_timestamp">\d+<\/property>/g, ''));
    rmSync(xml);
    symlinkSync(real, xml);
    const before = readFileSync(real, 'utf8');
    const l = node(BACKUP_BIN, args('b.bin'));
    assert.equal(l.status, 0, l.stderr);
    assert.match(l.stderr, /backup_timestamp could not be recorded in .*qubes\.xml: .*symbolic link/);
    assert.equal(readFileSync(real, 'utf8'), before, 'the link\'s target is not written');
    assert.ok(lstatSync(xml).isSymbolicLink());
  } finally {
    t.cleanup();
  }
});
