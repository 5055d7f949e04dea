// DropBehind: after a flush, the file's clean pages leave the page cache (fincore says so) and the
// file holds exactly what was written, also with drops between writes; requests made while a drop
// runs become one more; a helper that cannot run (no shell, a dd that fails, no file descriptors
// left) is reported once and nothing waits for it; a dd that hangs is killed with the shell; end()
// and kill() leave no process behind, nor does a kill -9 of the process during a drop; dd is never
// taken from an empty (current directory) PATH entry.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, promises as fsp, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { DropBehind } from '../../../src/main/io/drop-behind.js';

const MiB = 1024 * 1024;

interface Fixture {
  dir: string;
  file: string;
  fh: fsp.FileHandle;
  /** reports of the helper being unavailable, and drops timed */
  lost: number;
  timed: number[];
  /** the helper under test (killed after the test, whatever it did) */
  d: DropBehind;
}

/**
 * Runs `f` with a fresh temp file and a DropBehind on it (options `o`); with `fakeDd`, a `dd` script
 * of that body comes first in PATH. The helper is killed, PATH restored and the directory removed
 * afterwards, also when an assertion failed (a live helper would keep the test process running).
 */
async function withHelper(f: (x: Fixture) => Promise<void>, o: { fakeDd?: string; shell?: string; waitMs?: number } = {}): Promise<void> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'qvmb-drop-'));
  const oldPath = process.env['PATH'];
  if (o.fakeDd !== undefined) process.env['PATH'] = `${await writeFakeDd(dir, o.fakeDd)}:${oldPath}`;
  const file = path.join(dir, 'img');
  const fh = await fsp.open(file, 'wx+');
  const x = { dir, file, fh, lost: 0, timed: [] as number[] } as Fixture;
  x.d = new DropBehind(fh.fd, () => x.lost++, (ms) => x.timed.push(ms), { ...(o.shell ? { shell: o.shell } : {}), ...(o.waitMs ? { waitMs: o.waitMs } : {}) });
  try {
    await f(x);
  } finally {
    await x.d.kill();
    process.env['PATH'] = oldPath;
    await fh.close();
    await fsp.rm(dir, { recursive: true, force: true });
  }
}

/** A `dd` script of that body in `<dir>/bin`; returns that directory (for PATH). */
async function writeFakeDd(dir: string, body: string): Promise<string> {
  const bin = path.join(dir, 'bin');
  await fsp.mkdir(bin);
  writeFileSync(path.join(bin, 'dd'), `#!/bin/sh\n${body}\n`);
  chmodSync(path.join(bin, 'dd'), 0o755);
  return bin;
}

/** Whether `dir` can show a drop: a disk filesystem (tmpfs keeps its pages) and fincore. */
function seesPageCache(dir: string): string | null {
  const fsType = spawnSync('stat', ['-f', '-c', '%T', dir], { encoding: 'utf8' }).stdout.trim();
  if (fsType === 'tmpfs') return `${dir} is on tmpfs`;
  return spawnSync('fincore', ['--version']).status === 0 ? null : 'no fincore';
}

/** Bytes of `file` in the page cache. */
function cachedBytes(file: string): number {
  const r = spawnSync('fincore', ['--bytes', '--noheadings', '--raw', '--output', 'RES', file], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return Number(r.stdout.trim());
}

/** Until `cond` holds (a bounded wait: the test fails after 10 s). */
async function until(cond: () => boolean, what: string): Promise<void> {
  const end = Date.now() + 10_000;
  while (!cond()) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Whether `pid` runs (a zombie does not: its parent, maybe an init that reaps late, has yet to wait for it). */
const alive = (pid: number | undefined): boolean => {
  if (pid === undefined) return false;
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false; // gone meanwhile
  }
};

test('a drop after a flush takes the written pages out of the page cache', async (t) => {
  await withHelper(async (x) => {
    const { fh, file, d } = x;
    const why = seesPageCache(path.dirname(file));
    if (why !== null) return t.skip(why);
    await fh.write(randomBytes(32 * MiB), 0, 32 * MiB, 0);
    await fh.datasync();
    assert.ok(cachedBytes(file) >= 16 * MiB, `written pages cached: ${cachedBytes(file)}`);
    d.flushed();
    await until(() => d.drops === 1, 'the drop');
    assert.equal(x.timed.length, 1, 'the drop timed once');
    assert.ok(cachedBytes(file) < MiB, `after the drop: ${cachedBytes(file)} bytes cached`);
    await d.end();
    assert.equal(x.lost, 0);
    assert.equal(alive(d.pid), false, 'helper exited');
  });
});

test('each drop runs dd itself, not through a setpriv of its own (a program start per drop costs more than the drop)', { skip: process.platform !== 'linux' && 'linux only' }, async () => {
  await withHelper(async (x) => {
    x.d.flushed();
    await until(() => x.d.drops === 1, 'the drop');
    // the shell's own command line (setpriv, where it wraps the shell, has exec'd into it)
    const argv = readFileSync(`/proc/${x.d.pid}/cmdline`, 'utf8').split('\0');
    const at = argv.indexOf('drop-behind');
    assert.ok(at > 0, argv.join(' '));
    assert.equal(path.basename(argv[at + 1]!), 'dd', argv.join(' '));
    await x.d.end();
    assert.equal(x.lost, 0);
  });
});

test('drops between writes change nothing in the file; requests while one runs become one more', async () => {
  await withHelper(async (x) => {
    const { fh, d } = x;
    await fh.truncate(80 * MiB);
    const want = createHash('sha256');
    const zeros = Buffer.alloc(MiB);
    let requests = 0;
    for (let i = 0; i < 64; i++) {
      // every other MiB written, the rest a hole
      const piece = i % 2 === 0 ? randomBytes(MiB) : null;
      if (piece) await fh.write(piece, 0, MiB, i * MiB);
      want.update(piece ?? zeros);
      if (i % 4 === 3) {
        await fh.datasync();
        for (let k = 0; k < 3; k++, requests++) d.flushed(); // three at once: one, then one more
      }
    }
    await until(() => d.drops >= 2, 'the drops');
    await d.end();
    assert.equal(x.lost, 0);
    assert.ok(d.drops >= 2 && d.drops < requests, `${d.drops} drops for ${requests} requests`);
    want.update(Buffer.alloc(16 * MiB));
    const got = createHash('sha256').update(await fsp.readFile(x.file)).digest('hex');
    assert.equal(got, want.digest('hex'));
    assert.equal(alive(d.pid), false);
  });
});

test('a helper that cannot start is reported once; end() does not wait for it', async () => {
  await withHelper(async (x) => {
    x.d.flushed();
    await until(() => x.lost === 1, 'the report');
    x.d.flushed(); // ignored
    await x.d.end();
    assert.equal(x.lost, 1);
    assert.equal(x.d.drops, 0);
  }, { shell: path.join(os.tmpdir(), 'qvmb-no-such-shell') });
});

test('a dd that fails (no iflag=nocache) ends the helper: reported once, no drops', async () => {
  await withHelper(async (x) => {
    x.d.flushed();
    x.d.flushed();
    await until(() => x.lost === 1, 'the report');
    assert.equal(x.timed.length, 0, 'a drop that never happened is not timed');
    x.d.flushed(); // ignored
    await x.d.end();
    assert.equal(x.lost, 1);
    assert.equal(x.d.drops, 0);
    assert.equal(alive(x.d.pid), false);
  }, { fakeDd: 'echo "dd: invalid input flag: nocache" >&2\nexit 1' });
});

test('nothing starts before the first drop', async () => {
  const d = new DropBehind(0);
  await d.end();
  assert.equal(d.pid, undefined);
  d.flushed(); // after end(): ignored
  assert.equal(d.pid, undefined);
});

test('kill() stops the helper at once, also with a drop asked for; end() after it resolves', async () => {
  await withHelper(async (x) => {
    x.d.flushed();
    await x.d.kill();
    assert.equal(alive(x.d.pid), false);
    await x.d.end();
    assert.equal(x.lost, 0, 'a helper we stopped is not reported as lost');
  });
});

/** A fake dd that hangs (for at most 30 s), its pid written next to the fixture's file. */
const HANGING_DD = 'echo $$ > "$(dirname "$0")/../dd.pid"\nexec sleep 30';

/** The pid of the hanging dd of `dir`'s fake (HANGING_DD), once it started. */
async function hungDdPid(dir: string): Promise<number> {
  const pidFile = path.join(dir, 'dd.pid');
  await until(() => spawnSync('test', ['-s', pidFile]).status === 0, 'the dd to start');
  const ddPid = Number((await fsp.readFile(pidFile, 'utf8')).trim());
  assert.ok(alive(ddPid), 'the dd runs');
  return ddPid;
}

/** The hanging dd's pid, once it started; it is killed after `f`, whatever happened. */
async function withHungDd(x: Fixture, f: (ddPid: number) => Promise<void>): Promise<void> {
  x.d.flushed();
  const ddPid = await hungDdPid(x.dir);
  try {
    await f(ddPid);
  } finally {
    if (alive(ddPid)) process.kill(ddPid, 'SIGKILL');
  }
}

test('a drop that hangs ends the helper after its bound, with its dd: reported, the file goes on without it', async () => {
  await withHelper(async (x) => {
    await withHungDd(x, async (ddPid) => {
      await until(() => x.lost === 1, 'the report');
      assert.equal(x.d.killed, true);
      await until(() => !alive(x.d.pid) && !alive(ddPid), 'the shell and the dd to be gone');
      x.d.flushed(); // ignored
      const t0 = Date.now();
      await x.d.end();
      assert.ok(Date.now() - t0 < 100, 'end() has nothing left to wait for');
      assert.equal(x.d.drops, 0);
    });
  }, { fakeDd: HANGING_DD, waitMs: 300 });
});

test('kill() while end() waits for a hung dd: stops at once, shell and dd gone, nothing reported', async () => {
  await withHelper(async (x) => {
    await withHungDd(x, async (ddPid) => {
      const ending = x.d.end();
      await new Promise((r) => setTimeout(r, 100));
      const t0 = Date.now();
      await x.d.kill();
      assert.ok(Date.now() - t0 < 1500, `kill() took ${Date.now() - t0} ms`);
      await ending;
      assert.equal(alive(x.d.pid), false, 'the shell is gone');
      await until(() => !alive(ddPid), 'the dd to be gone (its process group killed)');
      assert.equal(x.lost, 0, 'stopped by us: not reported');
    });
  }, { fakeDd: HANGING_DD, waitMs: 20_000 });
});

test('kill -9 of the process during a drop: the shell (its death signal) and the dd it runs (the shell\'s trap) are gone', { skip: spawnSync('sh', ['-c', 'command -v setpriv']).status !== 0 && 'needs setpriv (util-linux)', timeout: 30_000 }, async () => {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'qvmb-drop-'));
  let child: ChildProcess | undefined;
  let ddPid: number | undefined;
  try {
    const bin = await writeFakeDd(dir, HANGING_DD);
    const here = path.dirname(fileURLToPath(import.meta.url));
    const c = spawn(process.execPath, [path.join(here, 'drop-behind-child.js'), path.join(dir, 'img')], { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, PATH: `${bin}:${process.env['PATH'] ?? ''}` } });
    child = c;
    ddPid = await hungDdPid(dir);
    c.kill('SIGKILL');
    await until(() => !alive(ddPid), 'the dd to be gone after the kill -9');
  } finally {
    if (child?.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    if (alive(ddPid)) process.kill(ddPid!, 'SIGKILL');
    await fsp.rm(dir, { recursive: true, force: true });
  }
});

test('a helper that cannot be had is not reported once end() was called', async () => {
  await withHelper(async (x) => {
    const oldPath = process.env['PATH'];
    process.env['PATH'] = x.dir; // no dd here
    try {
      x.d.flushed();
    } finally {
      process.env['PATH'] = oldPath;
    }
    await x.d.end();
    await new Promise((r) => setImmediate(r));
    assert.equal(x.lost, 0);
  });
});

test('dd is looked up in PATH without its empty entries (never ./dd)', async () => {
  await withHelper(async (x) => {
    writeFileSync(path.join(x.dir, 'dd'), `#!/bin/sh\ntouch "${path.join(x.dir, 'ran')}"\n`);
    chmodSync(path.join(x.dir, 'dd'), 0o755);
    const [oldPath, oldCwd] = [process.env['PATH'], process.cwd()];
    process.env['PATH'] = `:${oldPath}`;
    process.chdir(x.dir);
    try {
      x.d.flushed();
      await until(() => x.d.drops === 1, 'the drop');
      await x.d.end();
    } finally {
      process.chdir(oldCwd);
      process.env['PATH'] = oldPath;
    }
    await assert.rejects(fsp.stat(path.join(x.dir, 'ran')), 'the dd of the current directory did not run');
  });
});

test('no file descriptors left for its pipes: reported, nothing thrown, nothing waits', () => {
  // in a child process whose descriptors are all taken but one (the pipes need more)
  const script = `
    import { openSync, closeSync } from 'node:fs';
    const { DropBehind } = await import(${JSON.stringify(new URL('../../../src/main/io/drop-behind.js', import.meta.url).href)});
    const fd = openSync('/dev/null', 'r');
    const fds = [];
    try { for (;;) fds.push(openSync('/dev/null', 'r')); } catch {}
    closeSync(fds.pop());
    let lost = 0;
    const d = new DropBehind(fd, () => lost++);
    d.flushed();
    await new Promise((r) => setTimeout(r, 200));
    await d.end();
    for (const x of fds) closeSync(x);
    console.log(JSON.stringify({ lost, drops: d.drops }));
  `;
  // under a low descriptor limit where prlimit exists (filling a limit of a million takes seconds)
  const argv = [process.execPath, '--input-type=module', '-e', script];
  const prlimit = spawnSync('prlimit', ['--version']).status === 0;
  const r = spawnSync(prlimit ? 'prlimit' : argv[0]!, prlimit ? ['--nofile=256', '--', ...argv] : argv.slice(1), { encoding: 'utf8', timeout: 30_000 });
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout.trim().split('\n').at(-1)!), { lost: 1, drops: 0 });
});
