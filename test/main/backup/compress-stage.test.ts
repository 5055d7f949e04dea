// compressPieces alone, on in-memory input: blocks compressed in parallel come back in order as one
// valid gzip (zstd) stream; irregular input pieces are cut at block boundaries; every slot returns.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { compressPieces, rawPieces } from '../../../src/main/backup/compress-stage.js';
import { SlotPool } from '../../../src/main/pipeline/slot-pool.js';
import { WorkerPool } from '../../../src/main/pipeline/worker-pool.js';
import { blockBound } from '../../../src/workers/compress.js';
import { waitFor } from '../../helpers/processes.js';

const pool = new WorkerPool({ threads: 2 });
after(() => pool.destroy());

const BLOCK = 64 * 1024;

/** Compressible, position-dependent bytes (a wrong block order changes the output). */
function input(n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (Math.floor(i / 1000) * 7 + (i % 13)) & 0xff;
  return b;
}

async function* pieces(b: Buffer, sizes: number[]): AsyncGenerator<Uint8Array> {
  let off = 0;
  for (let i = 0; off < b.length; i++) {
    const n = sizes[i % sizes.length]!;
    yield b.subarray(off, off + n);
    off += n;
  }
}

test('gzip blocks, in order, from irregular input pieces; all slots released', async () => {
  const data = input(10 * BLOCK + 12345);
  const inSlots = new SlotPool({ slotBytes: BLOCK, slots: 3 });
  const outSlots = new SlotPool({ slotBytes: blockBound(BLOCK), slots: 3 });
  const out: Buffer[] = [];
  let blocks = 0;
  for await (const p of compressPieces(pieces(data, [1, 70_000, 4096, 200_000]), { pool, inSlots, outSlots, codec: 'gzip', level: 6, signal: new AbortController().signal, file: 'f' })) {
    out.push(Buffer.from(p.data));
    blocks++;
    p.done();
  }
  assert.equal(blocks, 11, 'one gzip member per 64 KiB block');
  assert.ok(Buffer.concat(out).length < data.length / 4, 'compressed');
  assert.ok(gunzipSync(Buffer.concat(out)).equals(data));
  assert.equal(inSlots.inUse(), 0);
  assert.equal(outSlots.inUse(), 0);
});

test('an empty stream gives no piece; rawPieces passes bytes through', async () => {
  const inSlots = new SlotPool({ slotBytes: BLOCK, slots: 1 });
  const outSlots = new SlotPool({ slotBytes: blockBound(BLOCK), slots: 1 });
  const got = [];
  for await (const p of compressPieces(pieces(Buffer.alloc(0), [1]), { pool, inSlots, outSlots, codec: 'gzip', level: 1, signal: new AbortController().signal, file: 'f' })) got.push(p);
  assert.equal(got.length, 0);
  const raw: Uint8Array[] = [];
  for await (const p of rawPieces(pieces(Buffer.from('abcdef'), [4]))) raw.push(p.data);
  assert.deepEqual(raw.map((r) => Buffer.from(r).toString()), ['abcd', 'ef']);
});

test('an error of the source fails the stage and returns the slots', async () => {
  const inSlots = new SlotPool({ slotBytes: BLOCK, slots: 2 });
  const outSlots = new SlotPool({ slotBytes: blockBound(BLOCK), slots: 2 });
  async function* broken(): AsyncGenerator<Uint8Array> {
    yield input(3 * BLOCK);
    throw new Error('tar died');
  }
  await assert.rejects(async () => {
    for await (const p of compressPieces(broken(), { pool, inSlots, outSlots, codec: 'gzip', level: 1, signal: new AbortController().signal, file: 'f' })) p.done();
  }, /tar died/);
  // a block already in a worker keeps its slots until the worker is done with it (never earlier)
  await waitFor('both slot pools free', () => inSlots.inUse() === 0 && outSlots.inUse() === 0, 10_000);
  assert.equal(inSlots.inUse(), 0);
  assert.equal(outSlots.inUse(), 0);
});

test('many blocks in flight on one file (more than 10) raise no MaxListenersExceededWarning', async () => {
  const warnings: string[] = [];
  const onWarning = (w: Error): void => {
    warnings.push(w.name);
  };
  process.on('warning', onWarning);
  try {
    // one worker, 16 block slots: the producer queues many tasks faster than the worker ends them
    const one = new WorkerPool({ threads: 1 });
    try {
      const data = input(40 * BLOCK);
      const inSlots = new SlotPool({ slotBytes: BLOCK, slots: 16 });
      const outSlots = new SlotPool({ slotBytes: blockBound(BLOCK), slots: 16 });
      let n = 0;
      for await (const p of compressPieces(pieces(data, [40 * BLOCK]), { pool: one, inSlots, outSlots, codec: 'gzip', level: 9, signal: new AbortController().signal, file: 'f' })) {
        n += p.data.length;
        p.done();
      }
      assert.ok(n > 0);
    } finally {
      await one.destroy();
    }
    // the warning is emitted on the next tick
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(warnings.filter((w) => w === 'MaxListenersExceededWarning'), []);
  } finally {
    process.off('warning', onWarning);
  }
});
