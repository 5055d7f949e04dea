// WorkerPool: every task through real piscina workers on shared slots, transfer, errors, abort.
import { test, after } from 'node:test';
import { spawnSync } from 'node:child_process';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { busyLoops } from '../../helpers/load.js';
import { waitFor } from '../../helpers/processes.js';
import assert from 'node:assert/strict';
import * as zlib from 'node:zlib';
import { isQvmBackupError } from '../../../src/main/errors.js';
import { SlotPool } from '../../../src/main/pipeline/slot-pool.js';
import { CHUNK_WORKER_URL, WorkerPool, workerFile } from '../../../src/main/pipeline/worker-pool.js';
import { computeHmacHex } from '../../../src/workers/hmac.js';
import { evpBytesToKey, opensslDecryptFile } from '../../../src/workers/openssl-enc.js';
import { scryptDecryptInto } from '../../../src/workers/scrypt-file.js';
import { assertSameBytes, run, sampleData } from '../../workers/tools.js';

const pool = new WorkerPool({ threads: 2 });
const slots = new SlotPool({ slotBytes: 4 << 20, slots: 2 });
after(() => pool.destroy());
const KEY = Buffer.from('qubes');
const DATA = sampleData(1 << 20, 3);

test('compressBlock, opensslSeal/opensslOpen, hmacSlice, cipherPiece, scrypt round trip through the pool', async () => {
  const s = await slots.acquire();
  const t = await slots.acquire();
  try {
    s.bytes.set(DATA);
    const input = s.slice(0, DATA.length);
    const gz = await pool.run('compressBlock', { level: 6, input, output: t.slice(0, 2 << 20) });
    assert.ok(gz.ok);
    assertSameBytes(zlib.gunzipSync(t.bytes.subarray(0, gz.length)), DATA, 'gzip member');

    const h = await pool.run('hmacSlice', { algorithm: 'SHA512', key: KEY, input });
    assert.deepEqual(h, { ok: true, hex: computeHmacHex('SHA512', KEY, DATA) });

    const sealed = await pool.run('opensslSeal', { cipher: 'aes-256-cbc', passphrase: 'qubes', input, output: t.slice(0, 2 << 20), hmac: { algorithm: 'SHA512', key: KEY } });
    assert.ok(sealed.ok);
    const file = t.bytes.subarray(0, sealed.length);
    assertSameBytes(run('openssl', ['enc', '-d', '-aes-256-cbc', '-md', 'MD5', '-pass', 'pass:qubes'], file), DATA, 'openssl -d');
    const opened = await pool.run('opensslOpen', { cipher: 'aes-256-cbc', passphrase: 'qubes', input: t.slice(0, sealed.length), output: s.slice(2 << 20, 2 << 20), decompress: 'none', hmac: { algorithm: 'SHA512', key: KEY }, expectHmacHex: sealed.hmacHex ?? '' });
    assert.deepEqual(opened, { ok: true, length: DATA.length });
    assertSameBytes(s.bytes.subarray(2 << 20, (2 << 20) + DATA.length), DATA);

    const { key, iv } = evpBytesToKey(KEY, Buffer.alloc(8, 9), 32, 16);
    const piece = await pool.run('cipherPiece', { mode: 'encrypt', cipher: 'aes-256-cbc', key, iv, final: true, input, output: t.slice(0, DATA.length + 16) });
    assert.ok(piece.ok && piece.length === DATA.length + 16 && piece.nextIv.length === 16);
    const ref = opensslDecryptFile('aes-256-cbc', KEY, Buffer.concat([Buffer.from('Salted__'), Buffer.alloc(8, 9), t.bytes.subarray(0, piece.length)]));
    assert.ok(ref instanceof Uint8Array);
    assertSameBytes(ref, DATA, 'cipherPiece == openssl enc');

    const enc = await pool.run('scryptEncrypt', { passphrase: 'id!vm1/private.img.000!qubes', logN: 10, r: 8, p: 1, input, output: t.slice(0, DATA.length + 128) });
    assert.deepEqual(enc, { ok: true, length: DATA.length + 128 });
    const out = new Uint8Array(DATA.length);
    assert.ok(scryptDecryptInto(Buffer.from('id!vm1/private.img.000!qubes'), t.bytes.subarray(0, enc.length), out, { maxKdfBytes: 1 << 30 }).ok);
    assertSameBytes(out, DATA);
    const dec = await pool.run('scryptDecrypt', { passphrase: 'id!vm1/private.img.000!qubes', input: t.slice(0, enc.length), output: s.slice(0, DATA.length), maxKdfBytes: 1 << 30 });
    assert.deepEqual(dec, { ok: true, length: DATA.length, logN: 10, r: 8, p: 1 });
    const wrong = await pool.run('scryptDecrypt', { passphrase: 'nope', input: t.slice(0, enc.length), output: s.slice(0, DATA.length), maxKdfBytes: 1 << 30 });
    assert.ok(!wrong.ok && wrong.reason === 'mac-mismatch', 'expected failures come back as values');
  } finally {
    slots.release(s);
    slots.release(t);
  }
});

test('a transferred ArrayBuffer is detached afterwards and still reaches the worker', async () => {
  const s = await slots.acquire();
  try {
    s.bytes.set(DATA.subarray(0, 1000));
    const ab = new ArrayBuffer(5);
    new Uint8Array(ab).set(KEY);
    const r = await pool.run('hmacSlice', { algorithm: 'sha256', key: new Uint8Array(ab), input: s.slice(0, 1000) }, { transferList: [ab] });
    assert.equal(ab.byteLength, 0, 'detached');
    assert.deepEqual(r, { ok: true, hex: computeHmacHex('sha256', KEY, DATA.subarray(0, 1000)) });
  } finally {
    slots.release(s);
  }
});

test('a worker that throws arrives as QvmBackupError ERR_INTERNAL with the context', async () => {
  const s = await slots.acquire();
  try {
    const bogus = { sab: s.sab, offset: 4 << 20, length: 100 }; // outside the SAB: RangeError in the worker
    await assert.rejects(
      pool.run('compressBlock', { level: 6, input: bogus, output: s.slice(0, 10) }, { context: { vm: 'work', chunk: 'vm1/private.img.003' } }),
      (e: unknown) => isQvmBackupError(e) && e.code === 'ERR_INTERNAL' && /^compressBlock failed: /.test(e.message) && e.context.vm === 'work' && e.context.chunk === 'vm1/private.img.003' && e.cause !== undefined,
    );
  } finally {
    slots.release(s);
  }
});

test('an aborted task rejects with ERR_CANCELLED', async () => {
  const ac = new AbortController();
  ac.abort();
  const s = await slots.acquire();
  try {
    await assert.rejects(
      pool.run('hmacSlice', { algorithm: 'sha256', key: KEY, input: s.slice(0, 10) }, { signal: ac.signal, context: { vm: 'x' } }),
      (e: unknown) => isQvmBackupError(e) && e.code === 'ERR_CANCELLED' && e.context.vm === 'x',
    );
  } finally {
    slots.release(s);
  }
});

test("a Node error thrown in a worker keeps its code and name across the thread", async () => {
  const s = await slots.acquire();
  try {
    await assert.rejects(
      pool.run('hmacSlice', { algorithm: 'sha256', key: 5 as unknown as Uint8Array, input: s.slice(0, 10) }, { context: { chunk: 'c' } }),
      (e: unknown) => {
        const cause = (e as { cause?: { code?: string; name?: string } }).cause;
        return isQvmBackupError(e) && e.code === 'ERR_INTERNAL' && e.context.chunk === 'c' && e.context['errorCode'] === 'ERR_INVALID_ARG_TYPE' && cause?.code === 'ERR_INVALID_ARG_TYPE' && cause.name === 'TypeError';
      },
    );
  } finally {
    slots.release(s);
  }
});

test('tasks aborted at random, under load: no crash, no late-answer error, no write after rejection', { timeout: 120_000 }, () => {
  const child = path.join(path.dirname(fileURLToPath(import.meta.url)), 'pool-abort-child.js');
  const load = busyLoops(2);
  try {
    for (let i = 0; i < 3; i++) {
      const r = spawnSync(process.execPath, [child, '150'], { encoding: 'utf8', timeout: 60_000 });
      assert.equal(r.status, 0, `run ${i}: exit ${r.status} ${r.signal ?? ''}: ${r.stderr.slice(0, 2000)}`);
      assert.doesNotMatch(r.stderr, /Unexpected message|uncaught|FATAL/);
      const summary = JSON.parse(r.stdout.trim()) as { uncaught: number; cancelled: number; done: number; other: number; overwritten: number };
      assert.deepEqual({ uncaught: summary.uncaught, other: summary.other, overwritten: summary.overwritten }, { uncaught: 0, other: 0, overwritten: 0 }, r.stdout);
      assert.equal(summary.cancelled + summary.done, 600);
      assert.ok(summary.cancelled > 0 && summary.done > 0, r.stdout);
    }
  } finally {
    load.stop();
  }
});

test('a pool destroyed while its workers still start (a run that fails at once) never takes the process down', { timeout: 240_000 }, () => {
  const child = path.join(path.dirname(fileURLToPath(import.meta.url)), 'pool-abort-child.js');
  const load = busyLoops(2);
  try {
    const r = spawnSync(process.execPath, [child, 'early', '20'], { encoding: 'utf8', timeout: 200_000 });
    assert.equal(r.status, 0, `exit ${r.status} ${r.signal ?? ''}: ${r.stderr.slice(0, 1000)}`);
    assert.equal(r.stdout.trim(), '{"early":"ok"}');
  } finally {
    load.stop();
  }
});

test('workerFile: the bundle when it is not older than the compiled entry, else the entry', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'qvmb-wf-'));
  try {
    const plain = path.join(dir, 'pool-entry.js');
    const bundle = path.join(dir, 'pool-entry.bundle.mjs');
    writeFileSync(plain, '');
    assert.equal(workerFile(pathToFileURL(plain)), plain, 'no bundle');
    writeFileSync(bundle, '');
    const now = Date.now() / 1000;
    utimesSync(plain, now - 10, now - 10);
    utimesSync(bundle, now, now);
    assert.equal(workerFile(pathToFileURL(plain)), bundle, 'newer bundle');
    utimesSync(bundle, now - 10, now - 10);
    assert.equal(workerFile(pathToFileURL(plain)), bundle, 'same time');
    utimesSync(plain, now, now);
    assert.equal(workerFile(pathToFileURL(plain)), plain, 'older bundle');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  // this build (npm run build bundles): the pool's workers load the bundle
  assert.equal(workerFile(), fileURLToPath(CHUNK_WORKER_URL).replace(/\.js$/, '.bundle.mjs'));
});

// The memory workers keep for scrypt between derivations (workers/scrypt-romix.ts) is released on
// request by every worker, idle or not, and leaves the process (restore/stream/kdf-budget.ts asks
// for it when a derivation would not fit beside it).
test('dropKeptKdfMemory: every worker releases the scrypt memory it keeps, and the RSS goes down', { timeout: 120_000 }, async () => {
  const own = new WorkerPool({ threads: 2, kdfEngine: 'wasm' });
  try {
    const salt = new Uint8Array(32).fill(7);
    const derive = async (keep: boolean): Promise<Buffer> => {
      const r = await own.run('scryptDerive', { passphrase: 'qubes', salt, logN: 18, r: 8, p: 1, ...(keep ? { keepKdfMemory: true } : {}) });
      assert.ok(r.ok, 'derived');
      return Buffer.from(r.key);
    };
    await own.dropKeptKdfMemory(); // nothing kept: resolves at once
    const base = process.memoryUsage().rss;
    const want = (await import('node:crypto')).scryptSync('qubes', salt, 64, { N: 2 ** 18, r: 8, p: 1, maxmem: 2 ** 30 });
    // two at once: one per worker (each takes one task at a time)
    for (const k of await Promise.all([derive(true), derive(true)])) assert.ok(k.equals(want), 'the same key as node:crypto');
    assert.equal(own.keptKdfHolders, 2, 'both workers keep 256 MiB');
    assert.ok(process.memoryUsage().rss - base > 400 * 2 ** 20, 'the kept memory is resident');
    await own.dropKeptKdfMemory();
    assert.equal(own.keptKdfHolders, 0);
    await waitFor('the kept memory to leave the RSS', () => process.memoryUsage().rss - base < 100 * 2 ** 20, 10_000);
    // a later derivation keeps again, with the same key
    assert.ok((await derive(true)).equals(want));
    assert.equal(own.keptKdfHolders, 1);
  } finally {
    await own.destroy();
  }
});

test('dropKeptKdfMemory: a stop while a worker is busy ends the wait at once, and frees the workers waiting at the barrier', { timeout: 120_000 }, async () => {
  const own = new WorkerPool({ threads: 2, kdfEngine: 'wasm' });
  try {
    const salt = new Uint8Array(32).fill(9);
    await own.run('scryptDerive', { passphrase: 'x', salt, logN: 12, r: 8, p: 1, keepKdfMemory: true });
    assert.ok(own.keptKdfHolders >= 1);
    // one worker busy with a long derivation (p = 64 at logN 14: a few seconds), the other idle
    let busyEnded = false;
    const busy = own.run('scryptDerive', { passphrase: 'x', salt, logN: 14, r: 8, p: 64 }).finally(() => (busyEnded = true));
    const ac = new AbortController();
    const t0 = performance.now();
    const dropping = own.dropKeptKdfMemory(ac.signal);
    setImmediate(() => ac.abort(new Error('stop')));
    await assert.rejects(dropping, (e: unknown) => isQvmBackupError(e) && e.code === 'ERR_CANCELLED');
    assert.equal(busyEnded, false, 'the stop did not wait for the busy worker');
    assert.ok((await busy).ok);
    // nobody is left at the barrier: both workers take tasks again
    const keys = await Promise.all([1, 2].map(() => own.run('scryptDerive', { passphrase: 'x', salt, logN: 4, r: 8, p: 1 })));
    assert.ok(keys.every((k) => k.ok));
    assert.ok(performance.now() - t0 < 60_000);
  } finally {
    await own.destroy();
  }
});

// The scrypt engine per derivation (workers/kdf-engine.ts): fixed by the option (QVMB_KDF), else each
// worker's measured faster one; the pool counts which ran, and the key is the same either way.
test('kdfEngine: wasm, openssl and auto give node:crypto\'s key; the pool counts the engine of each derivation', { timeout: 120_000 }, async () => {
  const salt = new Uint8Array(32).fill(9);
  const want = (await import('node:crypto')).scryptSync('qubes', salt, 64, { N: 2 ** 12, r: 8, p: 1 });
  for (const kdfEngine of ['wasm', 'openssl', 'auto'] as const) {
    const own = new WorkerPool({ threads: 2, kdfEngine });
    try {
      const keys = await Promise.all([true, false, true, true].map(async (keep) => {
        const r = await own.run('scryptDerive', { passphrase: 'qubes', salt, logN: 12, r: 8, p: 1, ...(keep ? { keepKdfMemory: true } : {}) });
        assert.ok(r.ok);
        return Buffer.from(r.key);
      }));
      for (const k of keys) assert.ok(k.equals(want), kdfEngine);
      const c = own.kdfEngineCounts;
      assert.equal(c.wasm + c.openssl, 4, `${kdfEngine}: ${JSON.stringify(c)}`);
      if (kdfEngine === 'openssl') assert.equal(c.openssl, 4);
      // wasm: a derivation without keep runs in the module only where memory is kept already
      if (kdfEngine === 'wasm') assert.ok(c.wasm >= 3, JSON.stringify(c));
    } finally {
      await own.destroy();
    }
  }
});

test('deriveWhileLoading: node:crypto\'s key on this thread while no worker is loaded, counted; null once one is, for more than 32 MiB, with QVMB_KDF=wasm, or where node:crypto refuses', { timeout: 60_000 }, async () => {
  const crypto = await import('node:crypto');
  const { syncBuiltinESMExports } = await import('node:module');
  const { RunStats } = await import('../../../src/main/stats/run-stats.js');
  const pw = Buffer.from('qubes');
  const salt = new Uint8Array(32).fill(7);
  const q = { logN: 12, r: 8, p: 1 };
  const want = crypto.scryptSync(pw, salt, 64, { N: 2 ** 12, r: 8, p: 1 });
  const stats = new RunStats({ enabled: true, measureEventLoop: false });
  const own = new WorkerPool({ threads: 2, stats });
  try {
    // just made: its workers are loading (they take tens of ms); the check before the first await sees it
    const d = await own.deriveWhileLoading(pw, salt, q);
    assert.ok(d !== null, 'derived here');
    assert.ok(Buffer.from(d.key).equals(want));
    assert.deepEqual({ salt: d.salt, logN: d.logN, r: d.r, p: d.p }, { salt, ...q });
    assert.deepEqual(own.kdfEngineCounts, { wasm: 0, openssl: 1 });
    assert.equal(stats.keyDerivations, 1);
    assert.equal(await own.deriveWhileLoading(pw, salt, { logN: 15, r: 8, p: 1 }), null, '32 MiB + 3 KiB: in the pool');
    // little memory (4 MiB) but N·r·p = 2^25 (seconds of libuv's thread, which cannot be stopped): in the pool
    assert.equal(await own.deriveWhileLoading(pw, salt, { logN: 10, r: 1, p: 2 ** 15 }), null, 'large work: in the pool');
    // once a worker has answered, it is loaded
    await own.run('scryptDerive', { passphrase: 'qubes', salt, ...q });
    assert.equal(await own.deriveWhileLoading(pw, salt, q), null, 'a worker is ready');
  } finally {
    await own.destroy();
  }
  const wasm = new WorkerPool({ threads: 1, kdfEngine: 'wasm' });
  try {
    assert.equal(await wasm.deriveWhileLoading(pw, salt, q), null, 'QVMB_KDF=wasm: the module, in the workers');
  } finally {
    await wasm.destroy();
  }
  const original = crypto.default.scrypt;
  crypto.default.scrypt = ((...a: unknown[]) => (a[a.length - 1] as (e: Error | null) => void)(new Error('unsupported'))) as typeof crypto.scrypt;
  syncBuiltinESMExports();
  const refusing = new WorkerPool({ threads: 1 });
  try {
    assert.equal(await refusing.deriveWhileLoading(pw, salt, q), null, 'refused: in the pool');
    assert.deepEqual(refusing.kdfEngineCounts, { wasm: 0, openssl: 0 });
  } finally {
    crypto.default.scrypt = original;
    syncBuiltinESMExports();
    await refusing.destroy();
  }
});
