// streamFileV34 alone, on in-memory input and an in-memory sink: a file is cut into chunk members
// of chunkSize bytes, in order, each followed by its .hmac (format 3), and every slot comes back.
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { Readable } from 'node:stream';
import { after, test } from 'node:test';
import { streamFileV34, type StreamSettings } from '../../../src/main/backup/chunk-pipeline.js';
import { OrderedWriter } from '../../../src/main/backup/ordered-writer.js';
import type { Sink } from '../../../src/main/io/sink.js';
import { Semaphore } from '../../../src/main/pipeline/async-queue.js';
import { SlotPool } from '../../../src/main/pipeline/slot-pool.js';
import { WorkerPool } from '../../../src/main/pipeline/worker-pool.js';
import { OuterTarReader } from '../../../src/main/tar/outer-tar-reader.js';
import { OuterTarWriter } from '../../../src/main/tar/outer-tar-writer.js';

const pool = new WorkerPool({ threads: 2 });
after(() => pool.destroy());

const CHUNK = 64 * 1024;
const passphrase = Buffer.from('pw');

/** A sink that keeps the bytes (copied: the caller reuses its buffers). */
function memorySink(): Sink & { bytes(): Buffer } {
  const parts: Buffer[] = [];
  return {
    description: 'memory',
    write: (d) => {
      parts.push(Buffer.from(d));
      return Promise.resolve();
    },
    commit: () => Promise.resolve(),
    abort: () => Promise.resolve(),
    bytes: () => Buffer.concat(parts),
  };
}

async function* pieces(b: Buffer, n: number): AsyncGenerator<Uint8Array> {
  for (let off = 0; off < b.length; off += n) yield b.subarray(off, off + n);
}

async function members(tar: Buffer): Promise<{ name: string; data: Buffer }[]> {
  const r = new OuterTarReader(Readable.from([tar]));
  const out: { name: string; data: Buffer }[] = [];
  for (let e = await r.next(); e !== null; e = await r.next()) {
    const data = Buffer.alloc(e.size);
    await e.readInto(data);
    out.push({ name: e.untrustedName, data });
  }
  return out;
}

async function streamOne(data: Buffer, pieceBytes: number): Promise<{ count: number; tar: Buffer; chunks: SlotPool }> {
  const sink = memorySink();
  const writer = new OrderedWriter(new OuterTarWriter(sink, { mtimeSec: 0 }), () => undefined);
  const writing = writer.run();
  const chunks = new SlotPool({ slotBytes: CHUNK, slots: 2 });
  const s: StreamSettings = { format: 3, passphrase, chunkSize: CHUNK, blocks: null, encrypted: false, cipher: 'aes-256-cbc', hmacAlgorithm: 'SHA512', backupId: 'x', scrypt: { logN: 14, r: 8, p: 1 } };
  const blockIn = new SlotPool({ slotBytes: 4096, slots: 1 });
  const count = await streamFileV34('vm1/private.img', pieces(data, pieceBytes), s, { pool, blockIn, blockOut: blockIn, chunks, kdf: new Semaphore(1), writer, signal: new AbortController().signal });
  writer.close();
  await writing;
  return { count, tar: sink.bytes(), chunks };
}

test('format 3: chunks of chunkSize in order, each with its HMAC; slots all returned', async () => {
  const data = Buffer.alloc(3 * CHUNK + 1000);
  for (let i = 0; i < data.length; i++) data[i] = (i * 131 + (i >> 9)) & 0xff;
  const { count, tar, chunks } = await streamOne(data, 10_000);
  assert.equal(count, 4);
  const got = await members(tar);
  assert.deepEqual(got.map((m) => m.name), ['000', '001', '002', '003'].flatMap((n) => [`vm1/private.img.${n}`, `vm1/private.img.${n}.hmac`]));
  const chunkData = got.filter((m) => !m.name.endsWith('.hmac'));
  assert.deepEqual(chunkData.map((m) => m.data.length), [CHUNK, CHUNK, CHUNK, 1000]);
  assert.ok(Buffer.concat(chunkData.map((m) => m.data)).equals(data));
  for (let i = 0; i < got.length; i += 2) {
    const hex = createHmac('sha512', passphrase).update(got[i]!.data).digest('hex');
    assert.equal(got[i + 1]!.data.toString(), `(stdin)= ${hex}\n`);
  }
  assert.equal(chunks.inUse(), 0);
});

test('an empty file is one empty chunk; an exact multiple of chunkSize adds none', async () => {
  const empty = await streamOne(Buffer.alloc(0), 1);
  assert.equal(empty.count, 1);
  assert.deepEqual((await members(empty.tar)).map((m) => [m.name, m.data.length]).slice(0, 1), [['vm1/private.img.000', 0]]);
  const exact = await streamOne(Buffer.alloc(2 * CHUNK, 7), CHUNK);
  assert.equal(exact.count, 2);
});
