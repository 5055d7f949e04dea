// PagePrefault: reads only the data runs, only ahead of the writer and at most `window` bytes ahead,
// one read at a time; nothing after stop(); a failed read only ends it; on a real file the holes
// stay holes and the file holds exactly what the writer wrote.
import assert from 'node:assert/strict';
import { constants as fsc, promises as fsp, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { PagePrefault } from '../../../src/main/io/page-prefault.js';

const MiB = 1024 * 1024;

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
    { offset: 0, length: 100 },
    { offset: 1000, length: 0 }, // an empty run does not stall it
    { offset: 5000, length: 300 },
    { offset: 9000, length: 50 },
  ];
  const p = new PagePrefault(fh, spans, 400);
  p.ahead(40);
  assert.deepEqual(calls.map((c) => [c.position, c.length]), [[40, 60]], 'from the writer to the end of the run');
  p.ahead(60);
  assert.equal(calls.length, 1, 'one read at a time');
  calls[0]!.resolve();
  await tick();
  assert.equal(calls.length, 1, 'the next run starts past the window (writer 60 + 400)');
  p.ahead(100);
  assert.equal(calls.length, 1, 'still past the window: 5000 > 100 + 400');
  p.ahead(4900);
  assert.deepEqual(calls.slice(1).map((c) => [c.position, c.length]), [[5000, 300]]);
  calls[1]!.resolve();
  await tick();
  assert.equal(calls.length, 2, '9000 is beyond 4900 + 400');
  p.ahead(9010); // the writer passed part of the last run: only the rest is read
  assert.deepEqual(calls.slice(2).map((c) => [c.position, c.length]), [[9010, 40]]);
  calls[2]!.resolve();
  await tick();
  p.ahead(9050);
  assert.equal(calls.length, 3, 'nothing left to read');
  assert.equal(p.prepared, 60 + 300 + 40);
  for (const c of calls) {
    const inRun = spans.some((s) => c.position >= s.offset && c.position + c.length <= s.offset + s.length);
    assert.ok(inRun, `read ${c.position}+${c.length} lies in a data run`);
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
