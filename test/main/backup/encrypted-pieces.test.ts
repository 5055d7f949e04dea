// A format 4 chunk written while its worker encrypts it (encrypted-pieces.ts): the pieces follow the
// task's progress word and end with the task, a failed task fails the member, no wait outlives the
// task, and the slot goes back only once the worker is done with it. Then the whole path: chunks of
// one file through streamFileV34 with a single chunk slot, each member decrypting to its plaintext
// and written in several pieces.
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { after, test } from 'node:test';
import { streamFileV34, type StreamSettings } from '../../../src/main/backup/chunk-pipeline.js';
import { encryptedChunkJob, encryptedPieces } from '../../../src/main/backup/encrypted-pieces.js';
import { OrderedWriter } from '../../../src/main/backup/ordered-writer.js';
import { isQvmBackupError } from '../../../src/main/errors.js';
import type { Sink } from '../../../src/main/io/sink.js';
import { Semaphore } from '../../../src/main/pipeline/async-queue.js';
import { SlotPool } from '../../../src/main/pipeline/slot-pool.js';
import { WorkerPool } from '../../../src/main/pipeline/worker-pool.js';
import { OuterTarReader } from '../../../src/main/tar/outer-tar-reader.js';
import { OuterTarWriter } from '../../../src/main/tar/outer-tar-writer.js';
import { RunStats } from '../../../src/main/stats/run-stats.js';
import { STAGE } from '../../../src/main/stats/bound.js';
import { scryptDecryptInto } from '../../../src/workers/scrypt-file.js';
import type { ScryptEncryptResult, TaskFailure } from '../../../src/workers/task-types.js';

function deferred<T>(): { promise: Promise<T>; resolve: (v: T) => void; reject: (e: unknown) => void } {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((a, b) => {
    resolve = a;
    reject = b;
  });
  return { promise, resolve, reject };
}

/** Iterates `it` in the background; `next()` resolves with each piece as it comes. */
function collect(it: AsyncIterable<Uint8Array>): { next(): Promise<Uint8Array>; done: Promise<Uint8Array[]> } {
  const got: Uint8Array[] = [];
  const queued: Uint8Array[] = [];
  const waiters: ((p: Uint8Array) => void)[] = [];
  const done = (async () => {
    for await (const p of it) {
      got.push(Uint8Array.prototype.slice.call(p));
      const w = waiters.shift();
      if (w) w(p);
      else queued.push(p);
    }
    return got;
  })();
  done.catch(() => undefined);
  return {
    next: () => {
      const p = queued.shift();
      return p !== undefined ? Promise.resolve(p) : new Promise((r) => waiters.push(r));
    },
    done,
  };
}

const failedWith = (r: TaskFailure): Error => new Error(`failed: ${r.message}`);

function store(p: Int32Array, n: number): void {
  Atomics.store(p, 0, n);
  Atomics.notify(p, 0);
}

test('pieces follow the progress word as it moves and end once the task ended', async () => {
  const bytes = Uint8Array.from({ length: 1000 }, (_, i) => i & 0xff);
  const progress = new Int32Array(new SharedArrayBuffer(4));
  const task = deferred<ScryptEncryptResult>();
  const c = collect(encryptedPieces(bytes, progress, task.promise, 1000, failedWith));
  store(progress, 96);
  assert.deepEqual([...(await c.next())], [...bytes.subarray(0, 96)]);
  store(progress, 500);
  assert.deepEqual([...(await c.next())], [...bytes.subarray(96, 500)]);
  store(progress, 1000); // the worker's last store comes before its answer
  task.resolve({ ok: true, length: 1000 });
  const all = await c.done;
  assert.deepEqual(all.map((p) => p.length), [96, 404, 500]);
  assert.deepEqual(Buffer.concat(all), Buffer.from(bytes));
});

test('a failure the task returns fails the member after the bytes that were final', async () => {
  const bytes = new Uint8Array(300);
  const progress = new Int32Array(new SharedArrayBuffer(4));
  const task = deferred<ScryptEncryptResult>();
  const c = collect(encryptedPieces(bytes, progress, task.promise, 300, failedWith));
  store(progress, 96);
  await c.next();
  task.resolve({ ok: false, reason: 'bad-params', message: 'no' });
  await assert.rejects(c.done, /failed: no/);
});

test('a task that throws fails the member with its error; one that never moved the word does not hang', async () => {
  const progress = new Int32Array(new SharedArrayBuffer(4));
  const thrown = deferred<ScryptEncryptResult>();
  const c = collect(encryptedPieces(new Uint8Array(300), progress, thrown.promise, 300, failedWith));
  setImmediate(() => thrown.reject(new Error('worker gone')));
  await assert.rejects(c.done, /worker gone/);
  // the word stays at 0, no wake-up ever comes: the task's end ends the wait, and a file it says
  // is whole while nothing was said final is an internal error, not a short member
  const quiet = deferred<ScryptEncryptResult>();
  const q = collect(encryptedPieces(new Uint8Array(300), new Int32Array(new SharedArrayBuffer(4)), quiet.promise, 300, failedWith));
  setImmediate(() => quiet.resolve({ ok: true, length: 300 }));
  await assert.rejects(q.done, (e: unknown) => isQvmBackupError(e) && e.code === 'ERR_INTERNAL' && /0 said final/.test(e.message));
  // another length than the member's size
  const long = deferred<ScryptEncryptResult>();
  const p = new Int32Array(new SharedArrayBuffer(4));
  const l = collect(encryptedPieces(new Uint8Array(300), p, long.promise, 300, failedWith));
  store(p, 300);
  long.resolve({ ok: true, length: 301 });
  await assert.rejects(l.done, (e: unknown) => isQvmBackupError(e) && e.code === 'ERR_INTERNAL');
});

test('the slot is released only once the task ended, even when the writer gives up before', async () => {
  for (const ending of ['resolve', 'reject'] as const) {
    const task = deferred<ScryptEncryptResult>();
    let released = 0;
    const job = encryptedChunkJob({ name: 'vm1/private.img.000.enc', bytes: new Uint8Array(200), size: 200, progress: new Int32Array(new SharedArrayBuffer(4)), task: task.promise, failed: failedWith, release: () => void released++ });
    job.release(); // the writer failed on the member while the worker still encrypts
    await new Promise((r) => setImmediate(r));
    assert.equal(released, 0, `${ending}: released while the worker still writes into the slot`);
    if (ending === 'resolve') task.resolve({ ok: true, length: 200 });
    else task.reject(new Error('cancelled'));
    await new Promise((r) => setImmediate(r));
    assert.equal(released, 1, ending);
  }
});

test('the profile counts every write of a streamed member as the destination\'s, header and padding too, and its waits as waits', async () => {
  let now = 0;
  const stats = new RunStats({ enabled: true, clock: () => now, measureEventLoop: false });
  const size = 5000;
  // the destination takes 100 (fake ms) for each write: the header, the data, the padding
  const sink: Sink = {
    description: 'slow',
    write: () => {
      now += 100;
      return Promise.resolve();
    },
    commit: () => Promise.resolve(),
    abort: () => Promise.resolve(),
  };
  const told: number[] = [];
  const writer = new OrderedWriter(new OuterTarWriter(sink, { mtimeSec: 0 }), (n) => told.push(n), stats);
  const writing = writer.run();
  const progress = new Int32Array(new SharedArrayBuffer(4));
  const task = deferred<ScryptEncryptResult>();
  writer.enqueue(Promise.resolve(encryptedChunkJob({ name: 'vm1/private.img.000.enc', bytes: new Uint8Array(size), size, progress, task: task.promise, failed: failedWith, release: () => undefined, stats })));
  writer.close();
  // the worker takes 1000 before it says anything is final, then all of it at once
  await new Promise((r) => setImmediate(r));
  now += 1000;
  store(progress, size);
  task.resolve({ ok: true, length: size });
  await writing;
  const stage = (name: string): number => stats.report().stages.find((x) => x.stage === name)?.busy_s ?? 0;
  assert.equal(stage(STAGE.backupWrite), 0.3, 'header, data and padding');
  assert.equal(stage(STAGE.backupWaitChunk), 1, 'the wait for the worker');
  // the progress heard of the header, the data and the padding as each was written
  assert.deepEqual(told.slice(0, 3), [1536, 1536 + size, 10240]);
});

const pool = new WorkerPool({ threads: 2 });
after(() => pool.destroy());

test('streamFileV34, format 4, one chunk slot: each member is written in several pieces and decrypts to its plaintext', { timeout: 120_000 }, async () => {
  const CHUNK = 9 * 1024 * 1024; // the worker wakes the writer every 4 MiB
  const data = Buffer.alloc(2 * CHUNK + 123_457);
  for (let i = 0; i + 4 <= data.length; i += 4) data.writeUInt32LE(Math.imul(i, 2654435761) >>> 0, i);
  const writes: number[] = [];
  const parts: Buffer[] = [];
  const sink: Sink = {
    description: 'memory',
    write: (d) => {
      writes.push(d.length);
      parts.push(Buffer.from(d));
      return Promise.resolve();
    },
    commit: () => Promise.resolve(),
    abort: () => Promise.resolve(),
  };
  const writer = new OrderedWriter(new OuterTarWriter(sink, { mtimeSec: 0 }), () => undefined);
  const writing = writer.run();
  const chunks = new SlotPool({ slotBytes: CHUNK + 128, slots: 1 });
  const s: StreamSettings = { format: 4, passphrase: Buffer.from('pw'), chunkSize: CHUNK, blocks: null, encrypted: true, cipher: 'aes-256-cbc', hmacAlgorithm: 'SHA512', backupId: 'id1', scrypt: { logN: 10, r: 8, p: 1 } };
  const blockIn = new SlotPool({ slotBytes: 4096, slots: 1 });
  async function* src(): AsyncGenerator<Uint8Array> {
    for (let off = 0; off < data.length; off += 1 << 20) yield data.subarray(off, off + (1 << 20));
  }
  const count = await streamFileV34('vm1/private.img', src(), s, { pool, blockIn, blockOut: blockIn, chunks, kdf: new Semaphore(1), writer, signal: new AbortController().signal });
  writer.close();
  await writing;
  assert.equal(count, 3);
  const r = new OuterTarReader(Readable.from([Buffer.concat(parts)]));
  const plain: Buffer[] = [];
  for (let e = await r.next(), i = 0; e !== null; e = await r.next(), i++) {
    const name = `vm1/private.img.${String(i).padStart(3, '0')}`;
    assert.equal(e.untrustedName, `${name}.enc`);
    const file = Buffer.alloc(e.size);
    await e.readInto(file);
    const out = Buffer.alloc(e.size);
    const d = scryptDecryptInto(Buffer.from(`id1!${name}!pw`), file, out, { maxKdfBytes: 1 << 30 });
    assert.ok(d.ok, `${name}: ${'message' in d ? d.message : ''}`);
    plain.push(out.subarray(0, d.length));
  }
  assert.ok(Buffer.concat(plain).equals(data), 'the chunks decrypt to the file');
  // a full chunk's member: its head, data in more than one write, its tail (one slot: every chunk
  // waited for the one before it, so none was whole before its writing began)
  const dataWrites = writes.filter((n) => n !== 1536 && n < CHUNK + 128);
  assert.ok(dataWrites.length > 3 * 2, `the members were written whole: ${writes.join(' ')}`);
  await new Promise((r) => setImmediate(r)); // a release waits for its task's end (a settled promise)
  assert.equal(chunks.inUse(), 0, 'the chunk slot came back');
});
