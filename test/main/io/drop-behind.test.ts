// DropBehind: after a flush, the file's clean pages leave the page cache (fincore says so) and the
// file holds exactly what was written, also with drops between writes; requests made while a drop
// runs become one more; a helper that cannot run (no shell, a dd that fails, no file descriptors
// left) is reported once and nothing waits for it; a dd that hangs is killed with the shell; end()
// and kill() leave no process behind; dd is never taken from an empty (current directory) PATH entry.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { chmodSync, promises as fsp, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { DropBehind } from '../../../src/main/io/drop-behind.js';

const MiB = 1024 * 1024;

/** A temp dir on a filesystem with a page cache to drop (not tmpfs), and fincore to look at it. */
async function realDir(t: { skip(m: string): void }): Promise<string | null> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'qvmb-drop-'));
  const fsType = spawnSync('stat', ['-f', '-c', '%T', dir], { encoding: 'utf8' }).stdout.trim();
  if (fsType === 'tmpfs' || spawnSync('fincore', ['--version']).status !== 0) {
    await fsp.rm(dir, { recursive: true, force: true });
    t.skip(`needs fincore and a disk filesystem (${dir} is ${fsType})`);
    return null;
  }
  return dir;
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

const alive = (pid: number | undefined): boolean => {
  if (pid === undefined) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

test('a drop after a flush takes the written pages out of the page cache', async (t) => {
  const dir = await realDir(t);
  if (dir === null) return;
  const file = path.join(dir, 'img');
  const fh = await fsp.open(file, 'wx+');
  let d: DropBehind | undefined;
  try {
    await fh.write(randomBytes(32 * MiB), 0, 32 * MiB, 0);
    await fh.datasync();
    assert.ok(cachedBytes(file) >= 16 * MiB, `written pages cached: ${cachedBytes(file)}`);
    let lost = 0;
    const timed: number[] = [];
    d = new DropBehind(fh.fd, () => lost++, (ms) => timed.push(ms));
    d.flushed();
    const helper = d;
    await until(() => helper.drops === 1, 'the drop');
    assert.equal(timed.length, 1, 'the drop timed once');
    assert.ok(cachedBytes(file) < MiB, `after the drop: ${cachedBytes(file)} bytes cached`);
    await d.end();
    assert.equal(lost, 0);
    assert.equal(alive(d.pid), false, 'helper exited');
  } finally {
    await d?.kill(); // a failed assertion leaves no helper behind
    await fh.close();
    await fsp.rm(dir, { recursive: true, force: true });
  }
});

test('drops between writes change nothing in the file; requests while one runs become one more', async () => {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'qvmb-drop-'));
  const file = path.join(dir, 'img');
  const fh = await fsp.open(file, 'wx+');
  let d: DropBehind | undefined;
  try {
    await fh.truncate(80 * MiB);
    let lost = 0;
    d = new DropBehind(fh.fd, () => lost++);
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
    const helper = d;
    await until(() => helper.drops >= 2, 'the drops');
    await d.end();
    assert.equal(lost, 0);
    assert.ok(d.drops >= 2 && d.drops < requests, `${d.drops} drops for ${requests} requests`);
    want.update(Buffer.alloc(16 * MiB));
    const got = createHash('sha256').update(await fsp.readFile(file)).digest('hex');
    assert.equal(got, want.digest('hex'));
    assert.equal(alive(d.pid), false);
  } finally {
    await d?.kill(); // a failed assertion leaves no helper behind
    await fh.close();
    await fsp.rm(dir, { recursive: true, force: true });
  }
});

test('a helper that cannot start is reported once; end() does not wait for it', async () => {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'qvmb-drop-'));
  const fh = await fsp.open(path.join(dir, 'f'), 'wx+');
  let d: DropBehind | undefined;
  try {
    let lost = 0;
    d = new DropBehind(fh.fd, () => lost++, undefined, { shell: path.join(dir, 'no-such-shell') });
    d.flushed();
    await until(() => lost === 1, 'the report');
    d.flushed(); // ignored
    await d.end();
    assert.equal(lost, 1);
    assert.equal(d.drops, 0);
  } finally {
    await d?.kill(); // a failed assertion leaves no helper behind
    await fh.close();
    await fsp.rm(dir, { recursive: true, force: true });
  }
});

test('a dd that fails (no iflag=nocache) ends the helper: reported once, no drops', async () => {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'qvmb-drop-'));
  const bin = path.join(dir, 'bin');
  await fsp.mkdir(bin);
  writeFileSync(path.join(bin, 'dd'), '#!/bin/sh\necho "dd: invalid input flag: nocache" >&2\nexit 1\n');
  chmodSync(path.join(bin, 'dd'), 0o755);
  const fh = await fsp.open(path.join(dir, 'f'), 'wx+');
  const oldPath = process.env['PATH'];
  process.env['PATH'] = `${bin}:${oldPath}`;
  let d: DropBehind | undefined;
  try {
    let lost = 0;
    let timed = 0;
    d = new DropBehind(fh.fd, () => lost++, () => timed++);
    d.flushed();
    d.flushed();
    await until(() => lost === 1, 'the report');
    assert.equal(timed, 0, 'a drop that never happened is not timed');
    d.flushed(); // ignored
    await d.end();
    assert.equal(lost, 1);
    assert.equal(d.drops, 0);
    assert.equal(alive(d.pid), false);
  } finally {
    await d?.kill(); // a failed assertion leaves no helper behind
    process.env['PATH'] = oldPath;
    await fh.close();
    await fsp.rm(dir, { recursive: true, force: true });
  }
});

test('nothing starts before the first drop', async () => {
  const d = new DropBehind(0);
  await d.end();
  assert.equal(d.pid, undefined);
  d.flushed(); // after end(): ignored
  assert.equal(d.pid, undefined);
});

test('kill() stops the helper at once, also with a drop asked for; end() after it resolves', async () => {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'qvmb-drop-'));
  const fh = await fsp.open(path.join(dir, 'f'), 'wx+');
  let d: DropBehind | undefined;
  try {
    let lost = 0;
    d = new DropBehind(fh.fd, () => lost++);
    d.flushed();
    await d.kill();
    assert.equal(alive(d.pid), false);
    await d.end();
    assert.equal(lost, 0, 'a helper we stopped is not reported as lost');
  } finally {
    await d?.kill(); // a failed assertion leaves no helper behind
    await fh.close();
    await fsp.rm(dir, { recursive: true, force: true });
  }
});

/** A directory with a fake `dd` (script `body`), first in PATH while `f` runs. */
async function withFakeDd(body: string, f: (dir: string) => Promise<void>): Promise<void> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'qvmb-drop-'));
  const bin = path.join(dir, 'bin');
  await fsp.mkdir(bin);
  writeFileSync(path.join(bin, 'dd'), `#!/bin/sh\n${body}\n`);
  chmodSync(path.join(bin, 'dd'), 0o755);
  const oldPath = process.env['PATH'];
  process.env['PATH'] = `${bin}:${oldPath}`;
  try {
    await f(dir);
  } finally {
    process.env['PATH'] = oldPath;
    await fsp.rm(dir, { recursive: true, force: true });
  }
}

const hasSetpriv = spawnSync('setpriv', ['--version']).status === 0;

for (const how of ['end', 'kill'] as const) {
  test(`a dd that hangs: ${how}() kills the shell and, with it, the dd; no wait past its bound`, async () => {
    await withFakeDd('echo $$ > "$(dirname "$0")/../dd.pid"\nexec sleep 1000', async (dir) => {
      const fh = await fsp.open(path.join(dir, 'f'), 'wx+');
      let d: DropBehind | undefined;
      try {
        let lost = 0;
        d = new DropBehind(fh.fd, () => lost++, undefined, { endWaitMs: 200 });
        d.flushed();
        const pidFile = path.join(dir, 'dd.pid');
        await until(() => spawnSync('test', ['-s', pidFile]).status === 0, 'the dd to start');
        const ddPid = Number((await fsp.readFile(pidFile, 'utf8')).trim());
        assert.ok(alive(ddPid));
        const t0 = Date.now();
        await (how === 'end' ? d.end() : d.kill());
        assert.ok(Date.now() - t0 < 3000, `${how}() took ${Date.now() - t0} ms`);
        if (how === 'end') assert.equal(d.killed, true, 'killed after its bound');
        assert.equal(alive(d.pid), false, 'the shell is gone');
        // dd's death signal (setpriv) comes with its parent's death
        if (hasSetpriv) await until(() => !alive(ddPid), 'the hung dd to die with the shell');
        assert.equal(lost, 0, 'stopped by us: not reported');
        const t1 = Date.now();
        await d.kill(); // again: the same end, no second wait
        assert.ok(Date.now() - t1 < 100);
      } finally {
        await d?.kill();
        await fh.close();
      }
    });
  });
}

test('dd is looked up in PATH without its empty entries (never ./dd)', async () => {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'qvmb-drop-'));
  writeFileSync(path.join(dir, 'dd'), `#!/bin/sh\ntouch "${path.join(dir, 'ran')}"\n`);
  chmodSync(path.join(dir, 'dd'), 0o755);
  const fh = await fsp.open(path.join(dir, 'f'), 'wx+');
  const [oldPath, oldCwd] = [process.env['PATH'], process.cwd()];
  process.env['PATH'] = `:${oldPath}`;
  process.chdir(dir);
  let d: DropBehind | undefined;
  try {
    d = new DropBehind(fh.fd);
    d.flushed();
    const helper = d;
    await until(() => helper.drops === 1, 'the drop');
    await d.end();
    await assert.rejects(fsp.stat(path.join(dir, 'ran')), 'the dd of the current directory did not run');
  } finally {
    process.chdir(oldCwd);
    process.env['PATH'] = oldPath;
    await d?.kill();
    await fh.close();
    await fsp.rm(dir, { recursive: true, force: true });
  }
});

test('no file descriptors left for its pipes: reported, nothing thrown, nothing waits', { skip: process.platform !== 'linux' }, () => {
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
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 30_000 });
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout.trim().split('\n').at(-1)!), { lost: 1, drops: 0 });
});
