// The one spawning module: bounded stderr tail, the error context shape, setpriv wrapping, how an
// exit is described; and the --source-command that uses it keeps only a bounded stderr tail.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { findInPath } from '../../../src/main/io/child-lifetime.js';
import { commandLine, exitDetail, processContext, spawnProcess, STDERR_TAIL_BYTES } from '../../../src/main/io/spawn.js';
import { closeSource, openSource } from '../../../src/main/restore/archive-source.js';

const MiB = 1024 * 1024;

describe('spawnProcess', () => {
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
