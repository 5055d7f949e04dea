// --passphrase-command CMD (restic's password command) on both commands: the first line of its
// stdout by the rules of a passphrase file, asked once by a backup; a failing, silent or endless
// command is a usage error naming the option, never showing its output; it cannot be combined
// with -p; its stdin is not the archive's; a signal stops it and everything it started.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir, node, run, BACKUP_BIN, RESTORE_BIN, sampleIn } from '../helpers/cli.js';
import { alive, waitFor } from '../helpers/processes.js';

const MiB = 1024 * 1024;
const sh = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

function setup() {
  const t = tempDir();
  const { root, home } = sampleIn(t.dir, { bigImageBytes: 4 * MiB, bigDataBytes: 256 * 1024, smallImageBytes: 2 * MiB, smallDataBytes: 64 * 1024 });
  return { t, root, home, archive: join(t.dir, 'b.bin') };
}

test('backup and restore take the first line of the command output, stripped like a file; backup runs it once', { timeout: 120_000 }, () => {
  const s = setup();
  try {
    const count = join(s.t.dir, 'count');
    // a trailing CR and tabs are stripped, the leading spaces kept, the second line ignored
    const cmd = `echo run >> ${sh(count)}; printf '  my secret \\t\\r\\nsecond line\\n'`;
    const b = node(BACKUP_BIN, ['-q', '-y', '--scrypt-logn', '10', '--qubes-root', s.root, '--dom0-home', s.home, '--passphrase-command', cmd, s.archive, 'vault']);
    assert.equal(b.status, 0, b.stderr);
    assert.equal(readFileSync(count, 'utf8'), 'run\n', 'asked once: no confirmation run');
    const pw = join(s.t.dir, 'pw');
    writeFileSync(pw, '  my secret\n');
    let r = node(RESTORE_BIN, ['-q', '-y', '--verify-only', '-p', pw, s.archive]);
    assert.equal(r.status, 0, `the same passphrase as the file: ${r.stderr}`);
    r = node(RESTORE_BIN, ['-q', '-y', '--verify-only', '--passphrase-command', `cat ${sh(pw)}`, s.archive]);
    assert.equal(r.status, 0, r.stderr);
    // the archive on stdin: the command's stdin is closed, so `cat` reads nothing of the archive
    r = run('sh', ['-c', `${sh(process.execPath)} ${sh(RESTORE_BIN)} -q -y --verify-only --passphrase-command ${sh(`cat; cat ${sh(pw)}`)} - < ${sh(s.archive)}`]);
    assert.equal(r.status, 0, r.stderr);
    r = node(RESTORE_BIN, ['-q', '-y', '--verify-only', '--passphrase-command', 'echo wrong', s.archive]);
    assert.equal(r.status, 4, r.stderr);
  } finally {
    s.t.cleanup();
  }
});

test('a failing, silent, empty or endless command and -p together are usage errors (exit 2), without its output', { timeout: 120_000 }, () => {
  const s = setup();
  try {
    const cases: [string[], RegExp][] = [
      [['--passphrase-command', 'echo "secret-output"; echo oops >&2; exit 3'], /^qvm-backup(-restore)?: error: --passphrase-command exited with status 3: no passphrase$/],
      [['--passphrase-command', 'kill -9 $$'], /^qvm-backup(-restore)?: error: --passphrase-command was killed by SIGKILL: no passphrase$/],
      [['--passphrase-command', 'true'], /^qvm-backup(-restore)?: error: --passphrase-command printed nothing: no passphrase$/],
      [['--passphrase-command', "printf ' \\t\\nsecret-output\\n'"], /^qvm-backup(-restore)?: error: empty passphrase \(--passphrase-command\): refusing to continue$/],
      [['--passphrase-command', 'yes secret-output'], /^qvm-backup(-restore)?: error: --passphrase-command printed more than 1048576 bytes: stopped$/],
      [['-p', '/dev/null', '--passphrase-command', 'echo x'], /^qvm-backup(-restore)?: error: option '--passphrase-command <cmd>' cannot be used with option '-p, --passphrase-file <file>'$/],
    ];
    for (const [opts, message] of cases) {
      for (const [bin, args] of [
        [BACKUP_BIN, ['-q', '-y', '--scrypt-logn', '10', '--qubes-root', s.root, '--dom0-home', s.home, ...opts, s.archive, 'vault']],
        [RESTORE_BIN, ['-q', '-y', '--verify-only', ...opts, join(s.t.dir, 'qubes', 'qubes.xml')]],
      ] as const) {
        const r = node(bin, [...args]);
        const what = `${bin.split('/').pop()} ${opts.join(' ')}`;
        assert.equal(r.status, 2, `${what}: ${r.stderr}`);
        const lines = r.stderr.split('\n').filter((l) => l !== '' && l !== 'oops'); // its own stderr is the user's
        assert.equal(lines.length, 1, `${what}: ${r.stderr}`);
        assert.match(lines[0]!, message, what);
        assert.ok(!r.stderr.includes('secret-output') && !r.stdout.includes('secret-output'), `${what}: its output is never shown`);
      }
    }
  } finally {
    s.t.cleanup();
  }
});

test('a signal while the command runs stops the command and all it started', { timeout: 60_000 }, async () => {
  const s = setup();
  try {
    const pidFile = join(s.t.dir, 'sleep.pid');
    // dash runs `sleep` as a child of the shell: signalling only the shell would leave it behind
    const cmd = `sleep 300 & echo $! > ${sh(pidFile)}; wait`;
    const child = spawn(process.execPath, [RESTORE_BIN, '-q', '-y', '--verify-only', '--passphrase-command', cmd, join(s.t.dir, 'qubes', 'qubes.xml')], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((res) => child.once('exit', (code) => res(code)));
    await waitFor('the command to start its sleep', () => {
      try {
        return readFileSync(pidFile, 'utf8').endsWith('\n');
      } catch {
        return false;
      }
    });
    const sleeper = Number(readFileSync(pidFile, 'utf8'));
    assert.ok(alive(sleeper));
    child.kill('SIGTERM');
    assert.equal(await exited, 143, stderr);
    await waitFor('the sleep started by the command to end', () => !alive(sleeper), 10_000);
  } finally {
    s.t.cleanup();
  }
});

test('a command ended by the Ctrl-C that also reaches us (its end seen first): the run is interrupted (130), not a failed command (2)', { timeout: 120_000 }, () => {
  // a terminal's Ctrl-C reaches the whole group: here the command dies of SIGINT at once and our
  // SIGINT follows 50 ms later, the order in which the exit wins the race
  const s = setup();
  try {
    const cmd = 'p=$PPID; (sleep 0.05; kill -INT $p) & kill -INT $$';
    for (const [bin, args] of [
      [BACKUP_BIN, ['-y', '--scrypt-logn', '10', '--qubes-root', s.root, '--dom0-home', s.home, '--passphrase-command', cmd, s.archive, 'vault']],
      [RESTORE_BIN, ['-y', '--verify-only', '--passphrase-command', cmd, join(s.t.dir, 'qubes', 'qubes.xml')]],
    ] as const) {
      const r = node(bin, [...args]);
      const what = bin.split('/').pop();
      assert.equal(r.status, 130, `${what}: ${r.stderr}`);
      assert.doesNotMatch(r.stderr, /no passphrase/, `${what}`);
      assert.match(r.stderr, /error: .*SIGINT/, `${what}`);
    }
  } finally {
    s.t.cleanup();
  }
});

test('a -p file that cannot be read is a usage error at the start, before the plan (one line, exit 2), for backup and restore', { timeout: 60_000 }, () => {
  const t = tempDir();
  try {
    const { root, home } = sampleIn(t.dir, { bigImageBytes: MiB, bigDataBytes: 64 * 1024, smallImageBytes: MiB, smallDataBytes: 4096 });
    for (const [pw, why] of [[join(t.dir, 'missing'), 'no such file'], [t.dir, 'it is a directory']] as const) {
      const b = node(BACKUP_BIN, ['-y', '--qubes-root', root, '--dom0-home', home, '-p', pw, join(t.dir, 'x.bin')]);
      assert.equal(b.status, 2, b.stderr);
      assert.equal(b.stderr.trim(), `qvm-backup: error: cannot read passphrase file ${pw}: ${why}`, 'no plan before it');
      const r = node(RESTORE_BIN, ['-y', '-p', pw, join(t.dir, 'x.bin')]);
      assert.equal(r.status, 2, r.stderr);
      assert.equal(r.stderr.trim(), `qvm-backup-restore: error: cannot read passphrase file ${pw}: ${why}`);
    }
    // an empty file: the empty passphrase is refused up front too
    const empty = join(t.dir, 'empty');
    writeFileSync(empty, '');
    const e = node(BACKUP_BIN, ['-y', '--qubes-root', root, '--dom0-home', home, '-p', empty, join(t.dir, 'x.bin')]);
    assert.equal(e.status, 2, e.stderr);
    assert.equal(e.stderr.trim(), `qvm-backup: error: empty passphrase (passphrase file ${empty} is empty): refusing to continue`);
  } finally {
    t.cleanup();
  }
});
