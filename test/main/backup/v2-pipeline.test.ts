// streamFileV2 alone, without tar: in-memory volumes become one chunk each (gzip-compressed, or as
// they are), each followed by its .hmac over the chunk as stored; slots all return.
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { Readable } from 'node:stream';
import { after, test } from 'node:test';
import { gunzipSync } from 'node:zlib';
import type { StreamSettings } from '../../../src/main/backup/chunk-pipeline.js';
import { OrderedWriter } from '../../../src/main/backup/ordered-writer.js';
import { streamFileV2 } from '../../../src/main/backup/v2-pipeline.js';
import type { Sink } from '../../../src/main/io/sink.js';
import { Semaphore } from '../../../src/main/pipeline/async-queue.js';
import { SlotPool } from '../../../src/main/pipeline/slot-pool.js';
import { WorkerPool } from '../../../src/main/pipeline/worker-pool.js';
import { OuterTarReader } from '../../../src/main/tar/outer-tar-reader.js';
import { OuterTarWriter } from '../../../src/main/tar/outer-tar-writer.js';
import { blockBound } from '../../../src/workers/compress.js';

const pool = new WorkerPool({ threads: 2 });
after(() => pool.destroy());

const VOLUME = 64 * 1024;
const passphrase = Buffer.from('pw');

async function run(volumes: (Uint8Array | Readable)[], gzip: boolean): Promise<{ count: number; members: { name: string; data: Buffer }[]; bytes: number; pools: SlotPool[] }> {
  const parts: Buffer[] = [];
  const sink: Sink = {
    description: 'memory',
    write: (d) => {
      parts.push(Buffer.from(d)); // copied: the caller reuses its buffers
      return Promise.resolve();
    },
    commit: () => Promise.resolve(),
    abort: () => Promise.resolve(),
  };
  const writer = new OrderedWriter(new OuterTarWriter(sink, { mtimeSec: 0 }), () => undefined);
  const writing = writer.run();
  const chunks = new SlotPool({ slotBytes: VOLUME, slots: 2 });
  const chunksOut = new SlotPool({ slotBytes: blockBound(VOLUME), slots: 2 });
  const s: StreamSettings = { format: 2, passphrase, chunkSize: VOLUME, blocks: gzip ? { codec: 'gzip', level: 6 } : null, encrypted: false, cipher: 'aes-256-cbc', hmacAlgorithm: 'SHA512', backupId: '', scrypt: { logN: 14, r: 8, p: 1 } };
  let bytes = 0;
  async function* vols(): AsyncGenerator<Uint8Array | Readable> {
    yield* volumes;
  }
  const count = await streamFileV2('vm1/private.img', vols(), s, { pool, blockIn: chunks, blockOut: chunks, chunks, chunksOut, kdf: new Semaphore(1), writer, signal: new AbortController().signal }, (n) => (bytes += n));
  writer.close();
  await writing;
  const r = new OuterTarReader(Readable.from([Buffer.concat(parts)]));
  const members: { name: string; data: Buffer }[] = [];
  for (let e = await r.next(); e !== null; e = await r.next()) {
    const data = Buffer.alloc(e.size);
    await e.readInto(data);
    members.push({ name: e.untrustedName, data });
  }
  return { count, members, bytes, pools: [chunks, chunksOut] };
}

function volume(i: number, n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let k = 0; k < n; k++) b[k] = (i * 17 + (k >> 8)) & 0xff;
  return b;
}

test('gzip: one gzip chunk per volume (a Readable volume too), HMAC of the compressed bytes', async () => {
  const vols = [volume(0, VOLUME), volume(1, VOLUME), volume(2, 5000)];
  const { count, members, bytes, pools } = await run([vols[0]!, Readable.from([vols[1]!.subarray(0, 1000), vols[1]!.subarray(1000)]), vols[2]!], true);
  assert.equal(count, 3);
  assert.equal(bytes, 2 * VOLUME + 5000);
  assert.deepEqual(members.map((m) => m.name), ['000', '001', '002'].flatMap((n) => [`vm1/private.img.${n}`, `vm1/private.img.${n}.hmac`]));
  for (let i = 0; i < 3; i++) {
    const chunk = members[2 * i]!.data;
    assert.ok(gunzipSync(chunk).equals(vols[i]!), `volume ${i}`);
    assert.equal(members[2 * i + 1]!.data.toString(), `(stdin)= ${createHmac('sha512', passphrase).update(chunk).digest('hex')}\n`);
  }
  for (const p of pools) assert.equal(p.inUse(), 0);
});

test('uncompressed: each volume is stored as it is; a volume larger than a chunk slot fails', async () => {
  const { members } = await run([volume(3, 1234)], false);
  assert.ok(members[0]!.data.equals(volume(3, 1234)));
  await assert.rejects(run([volume(4, VOLUME + 1)], false), /tar volume larger than expected/);
});
