// The one spawning module: bounded stderr tail, the error context shape, setpriv wrapping, how an
// exit is described; and the --source-command that uses it keeps only a bounded stderr tail.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, describe, it, test } from 'node:test';
import { findInPath } from '../../../src/main/io/child-lifetime.js';
import { commandLine, exitDetail, loadSpawner, processContext, runShort, spawnProcess, SHORT_STDOUT_BYTES, STDERR_TAIL_BYTES } from '../../../src/main/io/spawn.js';
import { isQvmBackupError, type QvmBackupError } from '../../../src/main/errors.js';
import { closeSource, openSource } from '../../../src/main/restore/archive-source.js';

before(loadSpawner);

const MiB = 1024 * 1024;

describe('spawnProcess', () => {
  it('refuses to start a process before execa was loaded (ERR_INTERNAL), and starts one after', () => {
    // module state: a fresh process, so that nothing loaded execa before
    const url = new URL('../../../src/main/io/spawn.js', import.meta.url).href;
    const script = `import { spawnProcess, loadSpawner } from ${JSON.stringify(url)};
      try { spawnProcess('true', [], { stdin: 'ignore', stdout: 'ignore' }); console.log('started'); } catch (e) { console.log(e.code); }
      await loadSpawner();
      const r = await spawnProcess('sh', ['-c', 'exit 7'], { stdin: 'ignore', stdout: 'ignore' }).child;
      console.log(r.exitCode);`;
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
    assert.equal(out, 'ERR_INTERNAL\n7\n');
  });

  it('keeps only the last STDERR_TAIL_BYTES of a chatty failing program, and says how it ended', async () => {
    // 2 MiB of "x" then a last line: only the tail, which holds the last line, is kept
    const script = `head -c ${2 * MiB} /dev/zero | tr '\\0' x >&2; echo; echo last words >&2; exit 3`;
    const s = spawnProcess('sh', ['-c', script], { stdin: 'ignore', stdout: 'ignore' });
    const r = await s.child;
    const tail = s.stderr.text();
    assert.ok(tail.length <= STDERR_TAIL_BYTES, `tail of ${tail.length} bytes`);
    assert.match(tail, /last words$/);
    assert.equal(exitDetail(r), 'exit 3');
    assert.deepEqual(processContext(s.command, r, tail), { command: commandLine('sh', ['-c', script]), exitCode: 3, stderrTail: tail });
  });

  it('runs the program through setpriv --pdeathsig where setpriv exists', async () => {
    const s = spawnProcess('true', [], { stdin: 'ignore', stdout: 'ignore' });
    assert.equal(s.viaSetpriv, findInPath('setpriv') !== null);
    if (s.viaSetpriv) assert.deepEqual(s.child.spawnargs.slice(1, 4), ['--pdeathsig', 'KILL', '--']);
    assert.equal((await s.child).exitCode, 0);
  });

  it('a cancelled run is killed and described by its signal', async () => {
    const ac = new AbortController();
    const s = spawnProcess('sleep', ['30'], { stdin: 'ignore', stdout: 'ignore', signal: ac.signal });
    ac.abort();
    const r = await s.child;
    assert.equal(r.isCanceled, true);
    assert.equal(exitDetail(r), 'killed by SIGTERM');
  });

  it('the label replaces the command line in errors', () => {
    const s = spawnProcess('true', [], { stdin: 'ignore', stdout: 'ignore' }, 'source');
    assert.equal(s.command, 'source');
    assert.equal(commandLine('a b', ["it's"]), `'a b' 'it'\\''s'`);
    return s.child.then(() => undefined);
  });
});

/** The QvmBackupError `p` rejects with. */
async function failure(p: Promise<unknown>): Promise<QvmBackupError> {
  const e = await p.then(() => assert.fail('expected a failure'), (x: unknown) => x);
  assert.ok(isQvmBackupError(e), String(e));
  return e;
}

describe('runShort', () => {
  it('resolves to stdout on exit 0, run under LC_ALL=C', async () => {
    assert.equal(await runShort('sh', ['-c', 'echo "$LC_ALL"; echo chatter >&2'], { timeout: 10_000 }), 'C');
  });

  it('a failure carries the command, the exit code and the stderr tail, under the caller\'s code and words', async () => {
    const script = `head -c ${2 * MiB} /dev/zero | tr '\\0' y >&2; echo the reason >&2; exit 4`;
    const e = await failure(runShort('sh', ['-c', script], { timeout: 10_000, code: 'ERR_TAR_FAILED', what: 'doing it', context: { file: 'f' } }));
    assert.equal(e.code, 'ERR_TAR_FAILED');
    assert.ok(e.message.startsWith('doing it: exit 4: yyy') && e.message.endsWith('the reason'), e.message.slice(0, 40));
    assert.equal(e.context.command, commandLine('sh', ['-c', script]));
    assert.equal(e.context.exitCode, 4);
    assert.equal(e.context.file, 'f');
    const tail = String(e.context.stderrTail);
    assert.ok(tail.length <= STDERR_TAIL_BYTES && tail.endsWith('the reason'), `tail of ${tail.length} bytes`);
  });

  it('kills a program that outlives its timeout, and says so', async () => {
    const t0 = Date.now();
    const e = await failure(runShort('sleep', ['30'], { timeout: 200 }));
    assert.equal(e.code, 'ERR_IO');
    assert.match(e.message, /^sleep 30: timed out after 0\.2 s$/);
    assert.ok(Date.now() - t0 < 10_000);
  });

  it('bounds stdout: a program printing more than SHORT_STDOUT_BYTES fails', async () => {
    const e = await failure(runShort('head', ['-c', String(SHORT_STDOUT_BYTES + 4096), '/dev/zero'], { timeout: 10_000 }));
    assert.match(e.message, /more than \d+ bytes of output/);
  });

  it('a missing program is "not found"; the run\'s signal cancels a running one', async () => {
    assert.match((await failure(runShort('/nonexistent/prog', [], { timeout: 10_000 }))).message, /^\/nonexistent\/prog: not found$/);
    const ac = new AbortController();
    const p = runShort('sleep', ['30'], { timeout: null, signal: ac.signal });
    ac.abort();
    assert.match((await failure(p)).message, /^sleep 30: cancelled$/);
  });
});

describe('--source-command stderr', () => {
  it('is kept as a bounded tail however much the command writes', async () => {
    const ac = new AbortController();
    const src = await openSource({ location: '', sourceCommand: `head -c ${4 * MiB} /dev/zero >&2; echo the end >&2`, signal: ac.signal });
    src.stream!.resume();
    await src.exited;
    await new Promise<void>((res) => (src.command!.stderr!.readableEnded ? res() : src.command!.stderr!.once('end', res)));
    const t = src.stderr!.text();
    assert.ok(t.length <= STDERR_TAIL_BYTES, `stderr tail of ${t.length} bytes`);
    assert.match(t, /the end$/);
    await closeSource(src);
  });
});

test('findInPath takes programs from absolute PATH entries only (never the current directory)', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'qvmb-path-'));
  const oldCwd = process.cwd();
  try {
    await mkdir(join(dir, 'bin'));
    for (const p of [join(dir, 'tool'), join(dir, 'bin', 'tool')]) {
      await writeFile(p, '#!/bin/sh\n');
      await chmod(p, 0o755);
    }
    process.chdir(dir);
    assert.equal(findInPath('tool', ':.:bin'), null, 'empty, "." and relative entries are skipped');
    assert.equal(findInPath('tool', `.:${join(dir, 'bin')}`), join(dir, 'bin', 'tool'));
  } finally {
    process.chdir(oldCwd);
    await rm(dir, { recursive: true, force: true });
  }
});
