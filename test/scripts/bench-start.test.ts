// bench-start: each checkout's restore timed to its data pass (the status message, not any text)
// and to its exit, under this test's node; every failure one line (no stack trace), with its
// status; a stop (SIGTERM) ends the restore in progress and removes the work directory.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir, passFile, node, run, sampleIn, BACKUP_BIN, ROOT } from '../helpers/cli.js';
import { alive, waitFor } from '../helpers/processes.js';

const MiB = 1024 * 1024;
const SCRIPT = join(ROOT, 'dist/scripts/bench-start.js');
// the launchers must run the node that runs the script, not whichever is first on PATH
const env = { ...process.env, PATH: '/usr/local/bin:/usr/bin:/bin' };

/** A checkout whose bin/qvm-backup-restore is `body` (a shell script). */
function fakeCheckout(dir: string, name: string, body: string): string {
  const c = join(dir, name);
  mkdirSync(join(c, 'bin'), { recursive: true });
  writeFileSync(join(c, 'bin/qvm-backup-restore'), `#!/bin/sh\n${body}\n`);
  chmodSync(join(c, 'bin/qvm-backup-restore'), 0o755);
  return c;
}

const STATUS = (phase: string) => JSON.stringify({ message_type: 'status', operation: 'restore', phase });

test('bench-start: the time to the data pass and to the exit per checkout, by the status message; failures are one line', { timeout: 180_000 }, () => {
  const t = tempDir();
  try {
    const { root, home } = sampleIn(t.dir, { bigImageBytes: 16 * MiB, bigDataBytes: 2 * MiB, smallImageBytes: 4 * MiB, smallDataBytes: 64 * 1024 });
    const pw = passFile(t.dir);
    const archive = join(t.dir, 'a.bin');
    const b = node(BACKUP_BIN, ['-q', '-y', '-p', pw, '--qubes-root', root, '--dom0-home', home, '--scrypt-logn', '10', archive, 'work']);
    assert.equal(b.status, 0, b.stderr);
    const work = join(t.dir, 'work');
    mkdirSync(work);
    const base = ['--archive', archive, '--passphrase-file', pw, '--work-dir', work];
    const bench = (args: string[]) => run(process.execPath, [SCRIPT, ...args], { env });

    // this checkout, named twice (two series); the node named is the one that ran the restores
    const r = bench(['--rounds', '2', ...base, ROOT, ROOT]);
    assert.equal(r.status, 0, r.stderr);
    const lines = r.stdout.trim().split('\n');
    assert.equal(lines[0], `restore start-up, 2 rounds in turns (median, range), node ${process.version}:`);
    assert.equal(lines.length, 3, r.stdout);
    for (const l of lines.slice(1)) {
      const m = /^ {2}(\/.+): to the data pass (\d+) ms \((\d+)–(\d+)\), to the exit (\d+) ms \((\d+)–(\d+)\)$/.exec(l);
      assert.ok(m, l);
      const [d, dLo, dHi, x, xLo, xHi] = m.slice(2).map(Number) as [number, number, number, number, number, number];
      assert.equal(m[1], ROOT.replace(/\/$/, ''));
      assert.ok(dLo <= d && d <= dHi && xLo <= x && x <= xHi, l);
      assert.ok(dHi < xLo || d < x, `the data pass starts before the exit: ${l}`);
    }
    assert.deepEqual(readdirSync(work), [], 'the work directory is removed');

    // a fake restore: a plan message quoting the phase first, the status 0.4 s later, exit 0.8 s later
    const timed = fakeCheckout(t.dir, 'timed', `echo '{"message_type":"plan","note":"deriving keys for the first chunks"}'; sleep 0.4; echo '${STATUS('deriving keys for the first chunks')}'; sleep 0.4`);
    const f = bench(['--rounds', '1', ...base, timed]);
    assert.equal(f.status, 0, f.stderr);
    const fm = /to the data pass (\d+) ms .*, to the exit (\d+) ms/.exec(f.stdout);
    assert.ok(fm, f.stdout);
    const [toData, toExit] = [Number(fm[1]), Number(fm[2])];
    assert.ok(toData >= 380 && toExit >= toData + 380, `data pass at ${toData} ms (the status, not the plan), exit at ${toExit} ms`);

    const cases: [string, string, number, RegExp][] = [
      // a failure after the data pass started is a failure
      ['late-fail', `echo '${STATUS('deriving keys for the first chunks')}'; echo 'qvm-backup-restore: error: disk full' >&2; exit 6`, 1, /^bench-start: the untimed round: .*late-fail: exit 6: qvm-backup-restore: error: disk full\n$/],
      // a stack trace on stderr: only its last line is shown
      ['trace', `echo 'Error: Cannot find module x' >&2; echo '    at Module._resolveFilename (node:internal)' >&2; echo '    at main' >&2; exit 1`, 1, /^bench-start: .*trace: exit 1: at main\n$/],
      // exit 0 without the status: another format (or an older build)
      ['silent', 'exit 0', 1, /^bench-start: .*silent: the restore sent no data pass status \(only format 4 archives do/],
      ['hangs', 'exec sleep 30', 1, /^bench-start: .*hangs: timed out after 1 s \(--timeout\)\n$/],
    ];
    for (const [name, body, status, want] of cases) {
      const c = fakeCheckout(t.dir, name, body);
      const x = bench(['--rounds', '1', '--timeout', '1', ...base, c]);
      assert.equal(x.status, status, `${name}: ${x.stderr}`);
      assert.match(x.stderr, want, name);
      assert.doesNotMatch(x.stderr, /^\s+at /m, `${name}: no stack trace`);
    }
    assert.deepEqual(readdirSync(work), [], 'the work directory is removed after a failure too');
    // usage errors: exit 2 before anything is made
    for (const args of [['--rounds', '0'], ['--rounds', '0x2'], ['--archive', archive], [...base, join(t.dir, 'nowhere')], ['--round', '3']]) {
      const u = bench(args);
      assert.equal(u.status, 2, `${args.join(' ')}: ${u.stderr}`);
      assert.match(u.stderr, /^bench-start: [^\n]+\n$/);
    }
    assert.deepEqual(readdirSync(work), []);
  } finally {
    t.cleanup();
  }
});

test('bench-start: SIGTERM ends the restore in progress and removes the work directory (exit 143)', { timeout: 60_000 }, async () => {
  const t = tempDir();
  try {
    const pidFile = join(t.dir, 'pid');
    const c = fakeCheckout(t.dir, 'slow', `echo $$ > '${pidFile}'; exec sleep 30`);
    const work = join(t.dir, 'work');
    mkdirSync(work);
    writeFileSync(join(t.dir, 'a.bin'), '');
    const child = spawn(process.execPath, [SCRIPT, '--archive', join(t.dir, 'a.bin'), '--passphrase-file', join(t.dir, 'a.bin'), '--work-dir', work, c], { env, stdio: 'ignore' });
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    await waitFor('the fake restore to start', () => existsSync(pidFile) && readFileSync(pidFile, 'utf8').trim() !== '', 20_000);
    const pid = Number(readFileSync(pidFile, 'utf8'));
    assert.ok(alive(pid));
    assert.equal(readdirSync(work).length, 1, 'its work directory exists');
    child.kill('SIGTERM');
    assert.equal(await exited, 143);
    await waitFor('the fake restore to end', () => !alive(pid), 10_000);
    assert.deepEqual(readdirSync(work), [], 'the work directory is removed');
  } finally {
    t.cleanup();
  }
});
