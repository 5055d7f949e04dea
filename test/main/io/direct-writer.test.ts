// DirectWriter: a file written in pieces through aligned staging blocks holds exactly what a plain
// positioned write of every piece would (holes read as zeros, the size exact), its fully empty 4 KiB
// blocks stay holes, large ranges go direct and small ones through the page cache, a filesystem
// that refuses O_DIRECT at a write hands the rest to the buffered handle, and errors surface.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { constants as fsc, promises as fsp, readFileSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { DIRECT_BLOCK, DIRECT_MIN, DirectWriter, MAX_PAIRS, STAGE_BYTES, openDirect, openDirectWriter } from '../../../src/main/io/direct-writer.js';

const KiB = 1024;
const MiB = 1024 * KiB;

async function tempDir(t: { after: (fn: () => Promise<void>) => void }): Promise<string> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'qvmb-direct-'));
  t.after(() => fsp.rm(dir, { recursive: true, force: true }));
  return dir;
}

async function create(file: string, size: number): Promise<fsp.FileHandle> {
  const fh = await fsp.open(file, fsc.O_RDWR | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW, 0o644);
  await fh.truncate(size);
  return fh;
}

/** Pieces of `runs` (offset, length) cut at random points, with their bytes. */
function piecesOf(runs: [number, number][], seed: Uint8Array): { position: number; bytes: Uint8Array }[] {
  const out: { position: number; bytes: Uint8Array }[] = [];
  let k = 0;
  for (const [offset, length] of runs) {
    for (let at = 0; at < length; ) {
      const cut = 1 + (seed[k++ % seed.length]! * 997 + k * 131) % (3 * MiB);
      const n = Math.min(length - at, cut);
      out.push({ position: offset + at, bytes: randomBytes(n) });
      at += n;
    }
  }
  return out;
}

/** The data offsets of a file (SEEK_DATA/SEEK_HOLE via `dd`-free means: the allocated blocks). */
function allocatedBytes(file: string): number {
  return statSync(file).blocks * 512;
}

async function writeAll(dir: string, name: string, size: number, runs: [number, number][]): Promise<{ file: string; expected: Buffer; counts: DirectWriter['counts']; direct: boolean }> {
  const file = path.join(dir, name);
  const fh = await create(file, size);
  const w = await openDirectWriter(fh, size);
  assert.ok(w !== null, 'this filesystem takes O_DIRECT');
  const expected = Buffer.alloc(size);
  for (const p of piecesOf(runs, randomBytes(64))) {
    Buffer.from(p.bytes).copy(expected, p.position);
    await w.write(p.position, p.bytes);
  }
  await w.end();
  await fh.close();
  return { file, expected, counts: w.counts, direct: w.direct };
}

test('the file holds exactly what was written, at every alignment; the size is exact', async (t) => {
  const dir = await tempDir(t);
  const size = 40 * MiB + 777; // not a block multiple: the last block is cut back
  const runs: [number, number][] = [
    [0, 5], // a few bytes at the start
    [1000, 3000], // a gap inside the first block (zeros between), across into the next
    [3 * DIRECT_BLOCK + 513, 9 * MiB + 3], // unaligned both ends, longer than a staging block
    [12 * MiB, 4 * MiB], // aligned
    [16 * MiB + 4 * KiB + 100, 100], // a short range: through the page cache
    [20 * MiB - 1, 2], // straddles a block boundary
    [40 * MiB, 777], // up to the end of the file, its last block partial
  ];
  const { file, expected, counts, direct } = await writeAll(dir, 'img', size, runs);
  assert.equal(statSync(file).size, size);
  assert.ok(readFileSync(file).equals(expected), 'contents differ');
  assert.ok(direct);
  assert.ok(counts.direct >= 3, `direct writes: ${JSON.stringify(counts)}`);
  assert.ok(counts.buffered >= 1, `short ranges through the page cache: ${JSON.stringify(counts)}`);
  // every byte written once, in whole blocks: what was staged, rounded to blocks
  assert.ok(counts.directBytes % DIRECT_BLOCK === 0 && counts.bufferedBytes % DIRECT_BLOCK === 0);
});

test('blocks without data stay holes (a sparse 256 MiB file with 9 MiB of data)', async (t) => {
  const dir = await tempDir(t);
  const size = 256 * MiB;
  const runs: [number, number][] = [
    [10 * MiB, 4 * MiB],
    [30 * MiB + 512, 3 * MiB], // unaligned start: its block is written whole
    [200 * MiB, 2 * MiB],
  ];
  const { file, expected } = await writeAll(dir, 'sparse', size, runs);
  assert.ok(readFileSync(file).equals(expected));
  const allocated = allocatedBytes(file);
  assert.ok(allocated <= 9 * MiB + 2 * DIRECT_BLOCK + 64 * KiB, `allocated ${allocated} bytes for 9 MiB of data`);
});

test('many random maps against a plain write', async (t) => {
  const dir = await tempDir(t);
  for (let round = 0; round < 6; round++) {
    const size = 24 * MiB + (round * 4099) % DIRECT_BLOCK;
    const runs: [number, number][] = [];
    let at = (round * 37) % 9000;
    const r = randomBytes(64);
    for (let i = 0; at < size && i < 40; i++) {
      const len = Math.min(size - at, 1 + ((r[i]! * 65537 + i * 7919) % (2 * MiB)));
      runs.push([at, len]);
      at += len + ((r[(i + 1) % 64]! * 131) % (3 * DIRECT_BLOCK)); // gaps of 0 to ~3 blocks
    }
    const { file, expected } = await writeAll(dir, `r${round}`, size, runs);
    assert.equal(statSync(file).size, size);
    assert.ok(readFileSync(file).equals(expected), `round ${round}: contents differ`);
  }
});

test('a filesystem that refuses a direct write: the buffered handle takes it and the rest', async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, 'f');
  const size = 3 * STAGE_BYTES;
  const fh = await create(file, size);
  let refused = 0;
  let closed = false;
  const fakeDirect = {
    write: async () => {
      refused++;
      throw Object.assign(new Error('EINVAL: invalid argument, write'), { code: 'EINVAL' });
    },
    close: async () => {
      closed = true;
    },
  } as unknown as fsp.FileHandle;
  const w = new DirectWriter(fh, fakeDirect, size);
  const data = randomBytes(size);
  for (let at = 0; at < size; at += 3 * MiB) await w.write(at, data.subarray(at, Math.min(size, at + 3 * MiB)));
  await w.end();
  await fh.close();
  assert.equal(refused, 1, 'tried once, then no more');
  assert.ok(closed, 'the refused handle is closed');
  assert.equal(w.direct, false);
  assert.equal(w.counts.bufferedBytes, size);
  assert.ok(readFileSync(file).equals(data));
});

test('a failed write (not EINVAL) is reported by the next write or the end, and nothing hangs', async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, 'f');
  const fh = await create(file, 4 * STAGE_BYTES);
  const fakeDirect = {
    write: async () => {
      throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
    },
    close: async () => undefined,
  } as unknown as fsp.FileHandle;
  const w = new DirectWriter(fh, fakeDirect, 4 * STAGE_BYTES);
  const block = randomBytes(STAGE_BYTES);
  await w.write(0, block); // staged, its write started
  await assert.rejects(
    (async () => {
      await w.write(STAGE_BYTES, block);
      await w.write(2 * STAGE_BYTES, block);
      await w.end();
    })(),
    { code: 'ENOSPC' },
  );
  await w.close(); // after a failure: nothing in flight, closes
  await fh.close();
});

test('positions that go back are refused (the tar reader promises order)', async (t) => {
  const dir = await tempDir(t);
  const fh = await create(path.join(dir, 'f'), 4 * MiB);
  const w = await openDirectWriter(fh, 4 * MiB);
  assert.ok(w !== null);
  await w.write(2 * MiB, randomBytes(1000));
  await assert.rejects(w.write(2 * MiB + 10, randomBytes(10)), { code: 'ERR_INTERNAL' });
  await w.close();
  await fh.close();
});

test('openDirect reopens the same file (not a path lookup) and short files stay exact', async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, 'f');
  const fh = await create(file, 10);
  const d = await openDirect(fh);
  assert.ok(d !== null);
  assert.equal((await d.stat()).ino, (await fh.stat()).ino);
  // a file this small is never given a direct writer; one made by hand still writes it exactly
  assert.equal(await openDirectWriter(fh, 10), null);
  const w = new DirectWriter(fh, d, 10);
  await w.write(3, Buffer.from('abc'));
  await w.end();
  await fh.close();
  assert.deepEqual(readFileSync(file), Buffer.from([0, 0, 0, 97, 98, 99, 0, 0, 0, 0]));
  assert.ok(DIRECT_MIN > DIRECT_BLOCK);
});

test('contiguous pieces that end on block boundaries fill whole staging blocks (one direct write each)', async (t) => {
  const dir = await tempDir(t);
  const size = 4 * STAGE_BYTES;
  for (const piece of [DIRECT_BLOCK, 16 * KiB, 64 * KiB]) {
    const file = path.join(dir, `p${piece}`);
    const fh = await create(file, size);
    const w = await openDirectWriter(fh, size);
    assert.ok(w !== null);
    const data = randomBytes(size);
    for (let at = 0; at < size; at += piece) await w.write(at, data.subarray(at, at + piece));
    await w.end();
    await fh.close();
    assert.deepEqual(w.counts, { direct: size / STAGE_BYTES, directBytes: size, buffered: 0, bufferedBytes: 0 }, `pieces of ${piece}`);
    assert.ok(readFileSync(file).equals(data));
  }
});

test('staging for MAX_PAIRS files at once; more, or files with little data, go through the page cache', async (t) => {
  const dir = await tempDir(t);
  const writers: DirectWriter[] = [];
  const handles: fsp.FileHandle[] = [];
  for (let i = 0; i <= MAX_PAIRS; i++) {
    const fh = await create(path.join(dir, `f${i}`), 2 * MiB);
    handles.push(fh);
    const w = await openDirectWriter(fh, 2 * MiB);
    if (i < MAX_PAIRS) {
      assert.ok(w !== null, `file ${i} gets staging`);
      writers.push(w);
    } else assert.equal(w, null, 'no staging free: through the page cache');
  }
  const small = await create(path.join(dir, 'small'), 2 * MiB);
  handles.push(small);
  assert.equal(await openDirectWriter(small, 2 * MiB, DIRECT_MIN - 1), null, 'too little data to pay');
  await writers[0]!.close();
  const again = await openDirectWriter(handles[MAX_PAIRS]!, 2 * MiB);
  assert.ok(again !== null, 'a closed file\'s staging is reused');
  await again.close();
  for (const w of writers) await w.close();
  for (const fh of handles) await fh.close();
});

test('a write waiting for the one in flight when the writer is closed stops without touching the staging', async (t) => {
  const dir = await tempDir(t);
  const fh = await create(path.join(dir, 'f'), 4 * STAGE_BYTES);
  let release: () => void = () => undefined;
  const slow = {
    write: (_b: Uint8Array, _o: number, length: number) =>
      new Promise<{ bytesWritten: number }>((resolve) => {
        release = () => resolve({ bytesWritten: length });
      }),
    close: async () => undefined,
  } as unknown as fsp.FileHandle;
  const w = new DirectWriter(fh, slow, 4 * STAGE_BYTES);
  const block = randomBytes(STAGE_BYTES);
  await w.write(0, block); // its write is in flight
  const second = w.write(STAGE_BYTES, block); // waits for it
  const closing = w.close();
  release();
  await closing;
  await assert.rejects(second, { code: 'ERR_CANCELLED' });
  await fh.close();
});
