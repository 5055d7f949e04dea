// PagePrefault: reads only the data runs, only ahead of the writer and at most `window` bytes ahead,
// one read at a time; nothing after stop(); a failed read only ends it; on a real file the holes
// stay holes and the file holds exactly what the writer wrote.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { constants as fsc, promises as fsp, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { GAP, MIN_READ, PIECE, PagePrefault } from '../../../src/main/io/page-prefault.js';

const KiB = 1024;
const MiB = 1024 * KiB;

interface Call {
  position: number;
  length: number;
  resolve: () => void;
  reject: (e: unknown) => void;
}

/** A stand-in handle whose reads stay pending until the test settles them. */
function fakeHandle(): { fh: fsp.FileHandle; calls: Call[] } {
  const calls: Call[] = [];
  const fh = {
    read: (_b: Uint8Array, _o: number, length: number, position: number) =>
      new Promise<void>((resolve, reject) => calls.push({ position, length, resolve, reject })),
  } as unknown as fsp.FileHandle;
  return { fh, calls };
}

/** Lets the promise callbacks of a settled read run. */
const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

test('reads the runs ahead of the writer, one at a time, up to the window; never a hole', async () => {
  const { fh, calls } = fakeHandle();
  const spans = [
    { offset: 0, length: 2 * MiB },
    { offset: 3 * MiB, length: 0 }, // an empty run does not stall it
    { offset: 5 * MiB, length: 3 * MiB },
    { offset: 12 * MiB, length: 2 * MIN_READ },
  ];
  const p = new PagePrefault(fh, spans, 4 * MiB);
  p.ahead(256 * KiB);
  assert.deepEqual(calls.map((c) => [c.position, c.length]), [[256 * KiB + GAP, PIECE]], 'from GAP after the writer, one piece');
  p.ahead(512 * KiB);
  assert.equal(calls.length, 1, 'one read at a time');
  calls[0]!.resolve();
  await tick();
  const second = 256 * KiB + GAP + PIECE + GAP;
  assert.deepEqual(calls.slice(1).map((c) => [c.position, c.length]), [[second, 2 * MiB - second]], 'GAP after the last read, to the end of the run');
  calls[1]!.resolve();
  await tick();
  assert.equal(calls.length, 2, 'the next run starts past the window (writer 512 KiB + 4 MiB)');
  p.ahead(2 * MiB);
  assert.deepEqual(calls.slice(2).map((c) => [c.position, c.length]), [[5 * MiB, MiB]], 'up to the window: writer 2 MiB + 4 MiB');
  calls[2]!.resolve();
  await tick();
  assert.equal(calls.length, 3, 'the window ends at 6 MiB');
  p.ahead(7 * MiB); // the writer passed what was prepared
  assert.deepEqual(calls.slice(3).map((c) => [c.position, c.length]), [[7 * MiB + GAP, MiB - GAP]], 'GAP after the writer, to the end of the run');
  calls[3]!.resolve();
  await tick();
  assert.equal(calls.length, 4, 'the next run starts past the window (writer 7 MiB + 4 MiB)');
  p.ahead(12 * MiB + 4 * KiB);
  assert.deepEqual(calls.slice(4).map((c) => [c.position, c.length]), [[12 * MiB + 4 * KiB + GAP, 2 * MIN_READ - 4 * KiB - GAP]]);
  calls[4]!.resolve();
  await tick();
  p.ahead(12 * MiB + 2 * MIN_READ);
  assert.equal(calls.length, 5, 'nothing left to read');
  assert.equal(p.prepared, calls.reduce((a, c) => a + c.length, 0));
  for (const c of calls) {
    const inRun = spans.some((s) => c.position >= s.offset && c.position + c.length <= s.offset + s.length);
    assert.ok(inRun, `read ${c.position}+${c.length} lies in a data run`);
  }
});

test('runs shorter than MIN_READ, and short rests of runs, are left to the writer', async () => {
  const { fh, calls } = fakeHandle();
  const short = [
    { offset: 0, length: 4 * KiB },
    { offset: 64 * KiB, length: 512 },
    { offset: 128 * KiB, length: MIN_READ - 1 },
    { offset: 2 * MiB, length: MIN_READ },
  ];
  new PagePrefault(fh, short, 8 * MiB).ahead(512);
  assert.deepEqual(calls.map((c) => [c.position, c.length]), [[2 * MiB, MIN_READ]], 'only the run of MIN_READ bytes');
  // one piece, then MIN_READ - 2 bytes would be left after the GAP
  const p = new PagePrefault(fh, [{ offset: 0, length: 2 * GAP + PIECE + MIN_READ - 1 }], 8 * MiB);
  p.ahead(1);
  assert.deepEqual(calls.slice(1).map((c) => [c.position, c.length]), [[1 + GAP, PIECE]]);
  calls[1]!.resolve();
  await tick();
  assert.equal(calls.length, 2, 'the short rest is the writer\'s');
  // the writer already is in the run: less than MIN_READ after it
  new PagePrefault(fh, [{ offset: MiB, length: MIN_READ + GAP + 100 }], 8 * MiB).ahead(MiB + 200);
  assert.equal(calls.length, 2);
});

test('no read starts next to the last read or next to the writer (the kernel would read ahead into the holes)', async () => {
  // a writer that walks through the runs in 200 KiB writes, with the reads settled at once
  const calls: { position: number; length: number; writer: number }[] = [];
  let writer = 0;
  const fh = {
    read: (_b: Uint8Array, _o: number, length: number, position: number) => {
      calls.push({ position, length, writer });
      return Promise.resolve();
    },
  } as unknown as fsp.FileHandle;
  const spans: { offset: number; length: number }[] = [];
  for (let i = 0; i < 40; i++) spans.push({ offset: i * 3 * MiB + (i % 2) * 4096, length: [MiB + 3, 2 * MiB, 300 * KiB, MIN_READ][i % 4]! });
  const p = new PagePrefault(fh, spans, 5 * MiB);
  for (const s of spans) {
    for (let off = 0; off < s.length; off += 200 * KiB) {
      writer = s.offset + Math.min(s.length, off + 200 * KiB);
      p.ahead(writer);
      await tick();
    }
  }
  await p.stop();
  assert.ok(calls.length > 40, `${calls.length} reads`);
  let lastEnd = -Infinity;
  for (const c of calls) {
    assert.ok(c.position >= lastEnd + GAP, `read at ${c.position} starts ${c.position - lastEnd} bytes after the last one`);
    assert.ok(c.position >= c.writer + GAP, `read at ${c.position}, writer at ${c.writer}`);
    assert.ok(c.position + c.length <= c.writer + 5 * MiB, 'within the window');
    assert.ok(c.length >= MIN_READ && c.length <= PIECE, `read of ${c.length} bytes`);
    lastEnd = c.position + c.length;
  }
});

test('stop() waits for the read in flight and no read starts after it', async () => {
  const { fh, calls } = fakeHandle();
  const p = new PagePrefault(fh, [{ offset: 0, length: 10 * MiB }], 8 * MiB);
  p.ahead(0);
  assert.equal(calls.length, 1);
  let stopped = false;
  const s = p.stop().then(() => (stopped = true));
  await tick();
  assert.equal(stopped, false, 'waits for the read in flight');
  calls[0]!.resolve();
  await s;
  p.ahead(1);
  await tick();
  assert.equal(calls.length, 1, 'no read after stop');
});

test('a failed read ends the prefaulting quietly', async () => {
  const { fh, calls } = fakeHandle();
  const p = new PagePrefault(fh, [{ offset: 0, length: 10 * MiB }], 8 * MiB);
  p.ahead(0);
  calls[0]!.reject(Object.assign(new Error('EIO'), { code: 'EIO' }));
  await tick();
  p.ahead(1);
  await tick();
  assert.equal(calls.length, 1, 'no read after a failure');
  await p.stop();
});

test('on a real file: the writer\'s bytes, holes kept, the reads only prepared pages', async () => {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'prefault-'));
  try {
    const file = path.join(dir, 'img');
    const fh = await fsp.open(file, fsc.O_RDWR | fsc.O_CREAT | fsc.O_EXCL, 0o600);
    const size = 128 * MiB;
    await fh.truncate(size);
    const spans = [
      { offset: 0, length: 3 * MiB },
      { offset: 40 * MiB, length: 5 * MiB + 123 },
      { offset: 100 * MiB, length: 2 * MiB },
    ];
    const p = new PagePrefault(fh, spans, 2 * MiB);
    const piece = Buffer.alloc(256 * 1024);
    for (let i = 0; i < piece.length; i++) piece[i] = (i * 31 + 7) & 255 || 1;
    for (const s of spans) {
      for (let off = 0; off < s.length; off += piece.length) {
        const n = Math.min(piece.length, s.length - off);
        p.ahead(s.offset + off + n);
        await fh.write(piece, 0, n, s.offset + off);
      }
    }
    await p.stop();
    assert.ok(p.prepared > 0, 'pages were prepared ahead of the writer');
    await fh.sync();
    await fh.close();
    const back = await fsp.readFile(file);
    assert.equal(back.length, size);
    let pos = 0;
    for (const s of spans) {
      assert.ok(back.subarray(pos, s.offset).equals(Buffer.alloc(s.offset - pos)), `hole before ${s.offset} reads as zeros`);
      for (let off = 0; off < s.length; off += piece.length) {
        const n = Math.min(piece.length, s.length - off);
        assert.ok(back.subarray(s.offset + off, s.offset + off + n).equals(piece.subarray(0, n)), `data at ${s.offset + off}`);
      }
      pos = s.offset + s.length;
    }
    const data = spans.reduce((a, s) => a + s.length, 0);
    assert.ok(statSync(file).blocks * 512 <= data + 4 * MiB, `holes stay holes (${statSync(file).blocks * 512} bytes allocated for ${data} of data)`);
  } finally {
    await fsp.rm(dir, { recursive: true, force: true });
  }
});

test('on a real file: the kernel reads nothing ahead into the holes after the runs (fincore)', async (t) => {
  // fincore (util-linux) counts a file's pages in the page cache; a hole read by the kernel's
  // readahead holds zero pages there (on tmpfs a read of a hole caches nothing: passes trivially)
  if (spawnSync('fincore', ['--version']).status !== 0) return t.skip('no fincore');
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'prefault-'));
  try {
    const file = path.join(dir, 'img');
    const fh = await fsp.open(file, fsc.O_RDWR | fsc.O_CREAT | fsc.O_EXCL, 0o600);
    // 32 runs of 2 MiB, each before a 6 MiB hole: readahead of a sequential stream reaches past a
    // run's end (up to the device's read_ahead_kb, 128 KiB by default)
    const spans = Array.from({ length: 32 }, (_, i) => ({ offset: i * 8 * MiB, length: 2 * MiB }));
    await fh.truncate(32 * 8 * MiB);
    const p = new PagePrefault(fh, spans);
    const piece = Buffer.alloc(256 * KiB, 0x5a);
    for (const s of spans) {
      for (let off = 0; off < s.length; off += piece.length) {
        p.ahead(s.offset + off + piece.length);
        await fh.write(piece, 0, piece.length, s.offset + off);
      }
    }
    await p.stop();
    await fh.close();
    assert.ok(p.prepared > 32 * MiB, `${p.prepared} bytes prepared`);
    const cached = Number(execFileSync('fincore', ['--bytes', '--noheadings', '--output', 'RES', file]).toString());
    const data = 32 * 2 * MiB;
    assert.ok(cached <= data + 256 * KiB, `${cached - data} bytes of holes in the page cache`);
  } finally {
    await fsp.rm(dir, { recursive: true, force: true });
  }
});
