// Tests for sink.ts: file sink commit/abort (no partial file left), command sink with real shell
// commands (success, failure, early exit, abort), stdout sink backpressure and EPIPE, freeBytes.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { loadSpawner } from '../../../src/main/io/spawn.js';
import { commandSink, freeBytes, openFileSink, stdoutSink, syncData } from '../../../src/main/io/sink.js';
import { FAKE_BIN, mkTmp, rejectsWith, rmTmp } from '../tar/tar-test-helpers.js';
import { waitFor } from '../../helpers/processes.js';

// the code under test starts processes: the entry points load execa first, so does this file
before(loadSpawner);

const here = path.dirname(fileURLToPath(import.meta.url));
const SLOW_READER = path.join(FAKE_BIN, 'slow-reader.js');
const MiB = 1024 * 1024;

/** Whether a process runs (a killed but unreaped zombie does not count). */
function alive(pid: number): boolean {
  try {
    return fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.[0] !== 'Z';
  } catch {
    return false;
  }
}

describe('openFileSink', () => {
  let dir = '';
  before(() => {
    dir = mkTmp();
  });
  after(() => rmTmp(dir));

  it('writes under .<base>.partial-<pid> and gives it the final name on commit', async () => {
    const final = path.join(dir, 'qubes-backup');
    const sink = await openFileSink(final);
    const partial = path.join(dir, `.qubes-backup.partial-${process.pid}`);
    await sink.write(Buffer.from('hello '));
    await sink.write(new Uint8Array(Buffer.from('world')));
    assert.ok(fs.existsSync(partial));
    assert.ok(!fs.existsSync(final), 'nothing under the final name before commit');
    await sink.commit();
    assert.equal(fs.readFileSync(final, 'utf8'), 'hello world');
    assert.deepEqual(fs.readdirSync(dir), ['qubes-backup']);
    await rejectsWith(sink.write(Buffer.from('x')), 'ERR_INTERNAL');
    assert.match(sink.description, /qubes-backup/);
  });

  it('abort removes the partial file and leaves nothing behind', async () => {
    const final = path.join(dir, 'aborted');
    const sink = await openFileSink(final);
    await sink.write(Buffer.alloc(3 * MiB, 1));
    await sink.abort();
    await sink.abort(); // idempotent
    assert.ok(!fs.readdirSync(dir).some((f) => f.includes('aborted')));
  });

  it('replaces a stale partial of the same pid; missing directory is ERR_IO', async () => {
    const final = path.join(dir, 'stale');
    fs.writeFileSync(path.join(dir, `.stale.partial-${process.pid}`), 'old junk');
    const sink = await openFileSink(final);
    await sink.write(Buffer.from('new'));
    await sink.commit();
    assert.equal(fs.readFileSync(final, 'utf8'), 'new');
    await rejectsWith(openFileSink(path.join(dir, 'no/such/dir/file')), 'ERR_IO', /cannot create/);
  });
  it('never replaces a file that appeared under the final name meanwhile: ERR_IO, the partial is removed', async () => {
    const final = path.join(dir, 'raced');
    const sink = await openFileSink(final);
    await sink.write(Buffer.from('ours'));
    fs.writeFileSync(final, 'theirs'); // another run finished first
    await rejectsWith(sink.commit(), 'ERR_IO', /appeared.*not overwritten/);
    assert.equal(fs.readFileSync(final, 'utf8'), 'theirs');
    assert.deepEqual(fs.readdirSync(dir).filter((n) => n.includes('raced')), ['raced']);
  });

  it('numbered: a taken name gets the next free -N suffix, reported by `path`', async () => {
    const final = path.join(dir, 'qubes-backup-2026-01-01T000000');
    fs.writeFileSync(final, 'first');
    fs.writeFileSync(`${final}-1`, 'second');
    const sink = await openFileSink(final, { numbered: true });
    await sink.write(Buffer.from('third'));
    await sink.commit();
    assert.equal(sink.path, `${final}-2`);
    assert.equal(fs.readFileSync(`${final}-2`, 'utf8'), 'third');
    assert.equal(fs.readFileSync(final, 'utf8'), 'first');
    assert.equal(fs.readFileSync(`${final}-1`, 'utf8'), 'second');
  });

  it('concurrent runs committing one numbered name at the same moment: each archive keeps its own name', async () => {
    const final = path.join(dir, 'same-second');
    const child = path.join(here, 'file-sink-child.js');
    const runs = [0, 1, 2, 3].map((i) => {
      const p = spawn(process.execPath, [child, final, `archive ${i}`], { stdio: ['pipe', 'pipe', 'inherit'] });
      let out = '';
      p.stdout.setEncoding('utf8');
      const ready = new Promise<void>((resolve) => p.stdout.on('data', (d: string) => {
        out += d;
        if (out.includes('ready\n')) resolve();
      }));
      const exited = new Promise<number | null>((resolve) => p.on('exit', resolve));
      return { p, ready, exited, out: () => out };
    });
    await Promise.all(runs.map((r) => r.ready)); // every partial written, none committed yet
    for (const r of runs) r.p.stdin.end('go\n');
    assert.deepEqual(await Promise.all(runs.map((r) => r.exited)), [0, 0, 0, 0]);
    const names = fs.readdirSync(dir).filter((n) => n.startsWith('same-second')).sort();
    assert.deepEqual(names, ['same-second', 'same-second-1', 'same-second-2', 'same-second-3']);
    assert.deepEqual(names.map((n) => fs.readFileSync(path.join(dir, n), 'utf8')).sort(), ['archive 0', 'archive 1', 'archive 2', 'archive 3']);
    const reported = runs.map((r) => r.out().split('\n').find((l) => l.startsWith('path '))?.slice(5)).sort();
    assert.deepEqual(reported, names.map((n) => path.join(dir, n)));
  });

  it('write and commit after abort: ERR_CANCELLED', async () => {
    const sink = await openFileSink(path.join(dir, 'gone'));
    await sink.abort();
    await rejectsWith(sink.write(Buffer.from('x')), 'ERR_CANCELLED');
    await rejectsWith(sink.commit(), 'ERR_CANCELLED');
  });
});

describe('commandSink', () => {
  let dir = '';
  before(() => {
    dir = mkTmp();
  });
  after(() => rmTmp(dir));

  it('`cat > file` receives every byte; commit waits for exit 0', async () => {
    const out = path.join(dir, 'out.bin');
    const sink = commandSink(`cat > '${out}'`);
    const data = Buffer.alloc(5 * MiB);
    for (let i = 0; i < data.length; i += 4) data.writeUInt32LE(i, i);
    for (let i = 0; i < data.length; i += MiB) await sink.write(data.subarray(i, i + MiB));
    await sink.commit();
    assert.ok(fs.readFileSync(out).equals(data));
  });

  it('write resolves only when the command has taken the bytes: a reused buffer arrives intact behind a slow reader', async () => {
    const out = path.join(dir, 'slow.bin');
    const sink = commandSink(`"${process.execPath}" '${SLOW_READER}' '${out}'`);
    // each write is below the stream's high-water mark, so write() returns true while the bytes
    // still wait in the stream for the slow reader; then the buffer is overwritten
    const reused = Buffer.alloc(3000);
    const expected: Buffer[] = [];
    for (let i = 0; i < 400; i++) {
      reused.fill(i & 0xff);
      reused.writeUInt32BE(i, 0);
      await sink.write(reused);
      expected.push(Buffer.from(reused));
    }
    await sink.commit();
    const got = fs.readFileSync(out);
    const want = Buffer.concat(expected);
    assert.equal(got.length, want.length);
    const bad = [...Array(400).keys()].filter((i) => !got.subarray(i * 3000, (i + 1) * 3000).equals(expected[i]!));
    assert.deepEqual(bad, [], `${bad.length} of 400 writes arrived overwritten`);
  });

  it('a failing command: ERR_IO with exit code and stderr tail', async () => {
    const sink = commandSink('cat > /dev/null; echo "no space on target" >&2; exit 3');
    await sink.write(Buffer.from('data'));
    const e = await rejectsWith(sink.commit(), 'ERR_IO', /exit 3.*no space on target/);
    assert.equal(e.context['exitCode'], 3);
    assert.equal(e.context['stderrTail'], 'no space on target');
  });

  it('a command that stops reading early: the write fails with ERR_IO', async () => {
    const sink = commandSink('head -c 10 > /dev/null; echo gone >&2; exit 4');
    const run = async (): Promise<void> => {
      for (let i = 0; i < 64; i++) await sink.write(Buffer.alloc(MiB));
      await sink.commit();
    };
    await rejectsWith(run, 'ERR_IO', /exit 4.*gone/);
  });

  it('abort kills the whole command, children included', async () => {
    const pidFile = path.join(dir, 'child.pid');
    const sink = commandSink(`sleep 60 & echo $! > '${pidFile}'; wait`);
    await sink.write(Buffer.from('x'));
    await waitFor('the background pid', () => fs.existsSync(pidFile) && fs.readFileSync(pidFile, 'utf8').endsWith('\n'), 10_000);
    const pid = Number(fs.readFileSync(pidFile, 'utf8'));
    const t0 = Date.now();
    await sink.abort();
    assert.ok(Date.now() - t0 < 5000, 'prompt');
    // SIGKILL of the group is asynchronous: wait (bounded) for the background sleep to be gone
    await waitFor('the background sleep to be gone too', () => !alive(pid), 5000);
    const plain = commandSink('sleep 60');
    await plain.abort();
  });
});

describe('stdoutSink', () => {
  /** A Writable that delivers each chunk later (like libuv with a full pipe), copying it only then. */
  function slowWritable(highWaterMark: number): Writable & { got: Buffer[] } {
    const got: Buffer[] = [];
    const w = new Writable({
      highWaterMark,
      write(chunk: Buffer, _enc, cb) {
        setImmediate(() => {
          got.push(Buffer.from(chunk)); // the bytes are read only now, as libuv would
          cb();
        });
      },
    });
    return Object.assign(w, { got });
  }

  it('write resolves only after the stream called back: the caller may then reuse its buffer', async () => {
    // high-water mark above the chunk size: write() returns true at once, the bytes are still queued
    const w = slowWritable(1 << 20);
    const sink = stdoutSink(w);
    const reused = Buffer.alloc(4096);
    for (let i = 0; i < 20; i++) {
      reused.fill(i);
      await sink.write(reused);
      assert.equal(w.writableLength, 0, 'nothing of ours left in the stream');
      assert.equal(w.got.length, i + 1, 'the chunk was taken before write() resolved');
    }
    await sink.commit();
    assert.deepEqual(w.got.filter((b) => b.length > 0).map((b) => [b[0], b[4095]]), [...Array(20).keys()].map((i) => [i, i]));
  });

  it('waits for drain (backpressure) and keeps order', async () => {
    const w = slowWritable(1024);
    const sink = stdoutSink(w);
    for (let i = 0; i < 20; i++) {
      await sink.write(Buffer.alloc(4096, i));
      assert.equal(w.writableLength, 0, 'write resolved only after the chunk went out and the stream drained');
      assert.ok(!w.writableNeedDrain);
    }
    await sink.commit();
    assert.deepEqual(w.got.filter((b) => b.length > 0).map((b) => b[0]), [...Array(20).keys()]);
  });

  it('abort stops waiting for a reader that never reads: ERR_CANCELLED', async () => {
    const w = new Writable({ highWaterMark: 16, write() {} }); // never calls back
    const sink = stdoutSink(w);
    const pending = sink.write(Buffer.alloc(100));
    await sink.abort();
    await rejectsWith(pending, 'ERR_CANCELLED');
    await rejectsWith(sink.write(Buffer.alloc(1)), 'ERR_CANCELLED');
  });

  it('EPIPE (reader went away) is ERR_IO, not a crash', () => {
    const child = path.join(here, 'stdout-sink-child.js');
    const r = spawnSync('sh', ['-c', `"${process.execPath}" "${child}" 64 | head -c 100 > /dev/null`], { encoding: 'utf8', timeout: 20_000 });
    const report = JSON.parse(r.stderr.trim().split('\n').at(-1) ?? '{}') as { ok: boolean; code?: string; message?: string };
    assert.equal(report.ok, false, r.stderr);
    assert.equal(report.code, 'ERR_IO');
    assert.match(report.message ?? '', /EPIPE/);
  });

  it('a complete write to a pipe commits', () => {
    const child = path.join(here, 'stdout-sink-child.js');
    const r = spawnSync('sh', ['-c', `"${process.execPath}" "${child}" 4 | wc -c`], { encoding: 'utf8', timeout: 20_000 });
    assert.equal(r.stdout.trim(), String(4 * MiB));
    assert.match(r.stderr, /"ok":true/);
  });

  /** A Writable on an open regular file (what process.stdout is for `qvm-backup - > file`). */
  function fileWritable(file: string, flags = 'w'): Writable & { fd: number } {
    const fd = fs.openSync(file, flags);
    const w = new Writable({
      write(chunk: Buffer, _enc, cb) {
        fs.write(fd, chunk, (e) => cb(e));
      },
      destroy(e, cb) {
        fs.closeSync(fd);
        cb(e);
      },
    });
    return Object.assign(w, { fd });
  }

  it('stdout that is a regular file is flushed in the background while written, and its bytes land', async () => {
    const dir = mkTmp();
    try {
      const file = path.join(dir, 'archive');
      const w = fileWritable(file);
      const flushed: number[] = [];
      const sink = stdoutSink(w, { flushEvery: MiB, datasync: async (fd) => void flushed.push(fs.fstatSync(fd).size) });
      for (let i = 0; i < 8; i++) await sink.write(Buffer.alloc(512 * 1024, i));
      await sink.commit();
      assert.ok(flushed.length >= 2, `flushed ${flushed.length} times while 4 MiB were written (every 1 MiB, one at a time)`);
      assert.ok(flushed.every((size) => size >= MiB), 'each flush came after the bytes it counts were written');
      assert.equal(fs.statSync(file).size, 4 * MiB);
      w.destroy();
    } finally {
      rmTmp(dir);
    }
  });

  it('a failed background flush of stdout (a full disk) fails the next write as ERR_NO_SPACE', async () => {
    const dir = mkTmp();
    try {
      const w = fileWritable(path.join(dir, 'archive'));
      const full = Object.assign(new Error('ENOSPC: no space left on device, fdatasync'), { code: 'ENOSPC' });
      const sink = stdoutSink(w, { flushEvery: MiB, datasync: async () => Promise.reject(full) });
      await sink.write(Buffer.alloc(MiB)); // starts the flush
      await new Promise((r) => setImmediate(r));
      await rejectsWith(sink.write(Buffer.alloc(1)), 'ERR_NO_SPACE');
      w.destroy();
    } finally {
      rmTmp(dir);
    }
  });

  it('the background flush of stdout treats a file that cannot be synced (EINVAL) as the final fsync does (found by review)', async () => {
    const fd = fs.openSync('/dev/null', 'w'); // fdatasync: EINVAL
    try {
      await syncData(fd);
    } finally {
      fs.closeSync(fd);
    }
    await assert.rejects(syncData(987654), (e: NodeJS.ErrnoException) => e.code === 'EBADF');
  });

  it('stdout that is a pipe, or a stream without a file, is never flushed', async () => {
    let calls = 0;
    const datasync = async (): Promise<void> => void calls++;
    const plain = stdoutSink(slowWritable(1 << 20), { flushEvery: 1024, datasync });
    for (let i = 0; i < 8; i++) await plain.write(Buffer.alloc(4096));
    await plain.commit();
    const dir = mkTmp();
    try {
      const fifo = path.join(dir, 'fifo');
      assert.equal(spawnSync('mkfifo', [fifo]).status, 0);
      const w = fileWritable(fifo, 'r+'); // read-write: opening does not wait for a reader
      const piped = stdoutSink(w, { flushEvery: 1024, datasync });
      for (let i = 0; i < 8; i++) await piped.write(Buffer.alloc(4096)); // 32 KiB: within the pipe's buffer
      w.destroy();
    } finally {
      rmTmp(dir);
    }
    assert.equal(calls, 0);
  });
});

describe('freeBytes', () => {
  it('reports the bytes available on the filesystem', async () => {
    const n = await freeBytes(process.cwd());
    const s = fs.statfsSync(process.cwd());
    assert.ok(n > 0 && Number.isSafeInteger(n));
    assert.ok(Math.abs(n - s.bavail * s.bsize) < 512 * MiB);
    await assert.rejects(freeBytes('/no/such/dir'));
  });
});
