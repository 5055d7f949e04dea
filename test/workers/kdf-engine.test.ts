// Which scrypt engine derives (workers/kdf-engine.ts): the measured faster one, memory already kept
// whenever it is large enough, the module once OpenSSL's real derivations turn out slower than the
// module would be, and back to OpenSSL once the module, timed in memory it keeps, is the slower;
// QVMB_KDF's fixed modes; the key is node:crypto's whichever runs, and a thread the
// budget counts as keeping memory never keeps the module's beside OpenSSL's.
import assert from 'node:assert/strict';
import crypto, { randomBytes, scryptSync } from 'node:crypto';
import { syncBuiltinESMExports } from 'node:module';
import { afterEach, test } from 'node:test';
import { once } from 'node:events';
import { Worker } from 'node:worker_threads';
import { countDerivationsIn, deriveScrypt, engineFor, measuredRatesForTest, resetKdfEngineForTest, setKdfEngineMode, timesOpenSslForTest } from '../../src/workers/kdf-engine.js';
import { dropKeptMemory, keptBytes, romixBytes, scryptWasm } from '../../src/workers/scrypt-romix.js';

const FAST_MODULE = { wasm: 1e-7, openssl: 2e-7 };
const FAST_OPENSSL = { wasm: 2e-7, openssl: 1e-7 };
const MAXMEM = 2 ** 30;

afterEach(() => {
  setKdfEngineMode('auto');
  resetKdfEngineForTest(undefined);
  dropKeptMemory();
});

/** Derive with both keep settings and count what ran: [module, node:crypto]. */
function derive(logN: number, keep: boolean, counter = new Int32Array(2)): { key: Buffer; want: Buffer; counter: Int32Array } {
  countDerivationsIn(counter);
  const pass = randomBytes(12);
  const salt = randomBytes(32);
  const key = deriveScrypt(pass, salt, logN, 8, 1, 64, keep, MAXMEM);
  return { key, want: scryptSync(pass, salt, 64, { N: 2 ** logN, r: 8, p: 1, maxmem: MAXMEM }), counter };
}

test('derivations up to 32 MiB go to OpenSSL unmeasured; the first larger one measures both engines on this thread (finite, positive rates)', () => {
  assert.equal(measuredRatesForTest(), undefined);
  const small = derive(15 - 1, true);
  assert.deepEqual(small.key, small.want);
  assert.deepEqual([...small.counter], [0, 1], 'logN 14 (16 MiB): OpenSSL');
  assert.equal(measuredRatesForTest(), undefined, 'not measured for it');
  const { key, want } = derive(LARGE, false);
  assert.deepEqual(key, want);
  const r = measuredRatesForTest();
  assert.ok(r != null && Number.isFinite(r.wasm) && Number.isFinite(r.openssl) && r.wasm > 0 && r.openssl > 0, JSON.stringify(r));
});

test('after 8 small derivations in OpenSSL unmeasured, the 9th measures and the faster engine derives the small ones from then on (a run of many small VMs)', () => {
  const counter = new Int32Array(2);
  for (let i = 0; i < 8; i++) {
    const d = derive(10, true, counter);
    assert.deepEqual(d.key, d.want);
  }
  assert.deepEqual([...counter], [0, 8], 'OpenSSL, unmeasured');
  assert.equal(measuredRatesForTest(), undefined);
  const ninth = derive(10, true, counter);
  assert.deepEqual(ninth.key, ninth.want);
  const r = measuredRatesForTest();
  assert.ok(r != null && Number.isFinite(r.wasm) && Number.isFinite(r.openssl), 'measured at the 9th');
  assert.equal(counter[0]! + counter[1]!, 9);
  assert.deepEqual([...counter], r.wasm <= r.openssl ? [1, 8] : [0, 9], 'the 9th by the measured faster engine');
  // and what was measured decides the next small ones, either way (nothing kept)
  dropKeptMemory();
  resetKdfEngineForTest(FAST_MODULE);
  assert.equal(engineFor(10, 8, 1), 'wasm');
  resetKdfEngineForTest(FAST_OPENSSL);
  assert.equal(engineFor(10, 8, 1), 'openssl');
  // a fresh thread state counts from 0 again: 8 more before it measures
  dropKeptMemory();
  resetKdfEngineForTest(undefined);
  for (let i = 0; i < 8; i++) derive(9, true, counter);
  assert.equal(measuredRatesForTest(), undefined);
});

test('small derivations the measurement could not change do not count towards it: without keep (the module would not keep its memory), or with the engine fixed (review)', () => {
  const counter = new Int32Array(2);
  for (let i = 0; i < 12; i++) derive(9, false, counter);
  assert.equal(measuredRatesForTest(), undefined, 'no keep: never measured');
  setKdfEngineMode('openssl');
  for (let i = 0; i < 12; i++) derive(9, true, counter);
  setKdfEngineMode('auto');
  assert.equal(measuredRatesForTest(), undefined, 'QVMB_KDF=openssl: never measured');
  assert.deepEqual([...counter], [0, 24]);
  for (let i = 0; i < 8; i++) derive(9, true, counter);
  assert.equal(measuredRatesForTest(), undefined, 'the 8 that count');
  derive(9, true, counter);
  assert.notEqual(measuredRatesForTest(), undefined, 'measured at the 9th that counts');
});

test('the faster engine by the measurement derives; the keys are the same', () => {
  resetKdfEngineForTest(FAST_MODULE);
  let d = derive(11, true);
  assert.deepEqual(d.key, d.want);
  assert.deepEqual([...d.counter], [1, 0]);
  dropKeptMemory();
  resetKdfEngineForTest(FAST_OPENSSL);
  d = derive(11, true);
  assert.deepEqual(d.key, d.want);
  assert.deepEqual([...d.counter], [0, 1]);
  assert.equal(keptBytes(), 0, 'OpenSSL chosen: the module keeps nothing');
});

test('memory the thread already keeps, large enough, is used even where OpenSSL measured faster', () => {
  resetKdfEngineForTest(FAST_MODULE);
  derive(12, true); // keeps ~4 MiB
  const kept = keptBytes();
  assert.ok(kept >= romixBytes(2 ** 12, 8, 1));
  resetKdfEngineForTest(FAST_OPENSSL);
  assert.equal(engineFor(11, 8, 1), 'wasm');
  const d = derive(11, false);
  assert.deepEqual(d.key, d.want);
  assert.deepEqual([...d.counter], [1, 0]);
  assert.equal(keptBytes(), kept);
});

test('OpenSSL chosen for a larger derivation the budget counts as kept: the smaller kept memory is released first', () => {
  resetKdfEngineForTest(FAST_MODULE);
  derive(10, true);
  assert.ok(keptBytes() > 0);
  resetKdfEngineForTest(FAST_OPENSSL);
  const d = derive(12, true);
  assert.deepEqual(d.key, d.want);
  assert.deepEqual([...d.counter], [0, 1]);
  assert.equal(keptBytes(), 0, 'released, not kept beside node:crypto\'s memory');
  // not counted as kept (keep false): what is kept stays
  resetKdfEngineForTest(FAST_MODULE);
  derive(10, true);
  const kept = keptBytes();
  resetKdfEngineForTest(FAST_OPENSSL);
  derive(12, false);
  assert.equal(keptBytes(), kept);
});

/** A clock for OpenSSL's derivations that reports `ms` for each (the run itself is real). */
const reporting = (ms: () => number) => <T>(f: () => T): { value: T; ms: number } => ({ value: f(), ms: ms() });
// logN 15, r 8: 32 MiB + 3 KiB, the smallest size whose OpenSSL memory is fresh every time
const LARGE = 15;
const largeUnits = 2 ** LARGE * 8;

test('OpenSSL slower in a large derivation than the module would be (+30 %): that size and larger go to the module', () => {
  assert.ok(romixBytes(2 ** LARGE, 8, 1) > 32 * 2 ** 20);
  const rates = { wasm: 1e-3, openssl: 0.5e-3 }; // the module "would take" 262 ms at logN 15
  const moduleMs = rates.wasm * largeUnits;
  // 1.2x: within the margin, stays with OpenSSL however often
  resetKdfEngineForTest(rates, reporting(() => 1.2 * moduleMs));
  for (let i = 0; i < 3; i++) derive(LARGE, false);
  assert.equal(engineFor(LARGE, 8, 1), 'openssl');
  // 1.4x: one such derivation decides
  resetKdfEngineForTest(rates, reporting(() => 1.4 * moduleMs));
  const counter = new Int32Array(2);
  derive(LARGE, false, counter);
  const n = 1;
  assert.equal(engineFor(16, 8, 1), 'wasm', 'larger too');
  assert.equal(engineFor(14, 8, 1), 'openssl', 'smaller not');
  const d = derive(LARGE, true, counter);
  assert.deepEqual(d.key, d.want);
  assert.deepEqual([...counter], [1, n]);
});

/** A clock for every timed derivation (OpenSSL's, then the module's) reporting `times` in turn (the
 *  last one again after), with how many were asked. */
function inTurn(times: number[]): { timer: ReturnType<typeof reporting>; asked: () => number } {
  let n = 0;
  return { timer: reporting(() => times[Math.min(n++, times.length - 1)]!), asked: () => n };
}

test('the module, sent sizes by OpenSSL\'s timings, timed slower than OpenSSL in memory it keeps: every size it was sent goes back to OpenSSL for good, its memory released', () => {
  const rates = { wasm: 1e-3, openssl: 0.5e-3 };
  const moduleMs = rates.wasm * largeUnits; // "would take" 262 ms
  // OpenSSL takes 1.4x that (to the module), the module then 1.6x per unit of work (over 1.1 x
  // OpenSSL's 1.4x) at twice the size
  const c = inTurn([1.4 * moduleMs, 2 * 1.6 * moduleMs]);
  resetKdfEngineForTest(rates, c.timer);
  const counter = new Int32Array(2);
  derive(LARGE, true, counter); // OpenSSL, timed: the module from now on
  assert.equal(engineFor(LARGE, 8, 1), 'wasm');
  derive(LARGE + 1, true, counter); // the module's first of a larger size: faults its memory in, not timed
  assert.equal(c.asked(), 1, 'the module\'s first derivation of a size is not timed');
  assert.ok(keptBytes() >= romixBytes(2 ** (LARGE + 1), 8, 1));
  const d = derive(LARGE + 1, true, counter); // in kept memory, timed: slower
  assert.deepEqual(d.key, d.want);
  assert.equal(c.asked(), 2);
  assert.deepEqual([...counter], [2, 1]);
  assert.equal(keptBytes(), 0, 'its memory released');
  assert.equal(engineFor(LARGE + 1, 8, 1), 'openssl');
  assert.equal(engineFor(LARGE, 8, 1), 'openssl', 'the smaller size it was sent too');
  assert.equal(engineFor(LARGE + 2, 8, 1), 'openssl', 'and larger');
});

test('once the module was timed slower, OpenSSL timed slow at a smaller size does not send that size to it', () => {
  const rates = { wasm: 1e-3, openssl: 0.5e-3 };
  const units16 = 2 ** (LARGE + 1) * 8;
  // OpenSSL at logN 16 (64 MiB) 1.4x the module's probe time, the module then 2x: back to OpenSSL;
  // then OpenSSL at logN 16, r 7 (56 MiB, under the 64 MiB sent) far too slow (10 s)
  const c = inTurn([1.4 * rates.wasm * units16, 2 * rates.wasm * units16, 10_000]);
  resetKdfEngineForTest(rates, c.timer);
  for (let i = 0; i < 3; i++) derive(LARGE + 1, true);
  assert.equal(engineFor(LARGE + 1, 8, 1), 'openssl', 'sent back');
  const pass = randomBytes(12);
  const salt = randomBytes(32);
  const key = deriveScrypt(pass, salt, LARGE + 1, 7, 1, 64, true, MAXMEM);
  assert.deepEqual(key, scryptSync(pass, salt, 64, { N: 2 ** (LARGE + 1), r: 7, p: 1, maxmem: MAXMEM }));
  assert.equal(c.asked(), 3, 'that derivation was timed');
  assert.equal(engineFor(LARGE + 1, 7, 1), 'openssl', 'and 56 MiB was not sent to the module');
});

test('the module is compared with OpenSSL\'s fastest timed derivation (not their mean, the last one or the probe)', () => {
  const rates = { wasm: 1e-3, openssl: 0.5e-3 };
  const moduleMs = rates.wasm * largeUnits;
  // OpenSSL 1.25x and 1.0x (within the margin), then 1.4x (to the module); the module 1.2x: over
  // 1.1 x the fastest (1.0x), under 1.1 x the first (1.25x), their mean (1.22x) and the last (1.4x),
  // and under 1.3 x the probe's
  const c = inTurn([1.25 * moduleMs, 1.0 * moduleMs, 1.4 * moduleMs, 1.2 * moduleMs]);
  resetKdfEngineForTest(rates, c.timer);
  for (let i = 0; i < 5; i++) derive(LARGE, true);
  assert.equal(c.asked(), 4);
  assert.equal(engineFor(LARGE, 8, 1), 'openssl');
  assert.equal(keptBytes(), 0);
  // the module 1.05x: within 1.1 x 1.0x, it stays
  const c2 = inTurn([1.25 * moduleMs, 1.0 * moduleMs, 1.4 * moduleMs, 1.05 * moduleMs]);
  resetKdfEngineForTest(rates, c2.timer);
  for (let i = 0; i < 5; i++) derive(LARGE, true);
  assert.equal(c2.asked(), 4);
  assert.equal(engineFor(LARGE, 8, 1), 'wasm');
});

test('the module timed as fast as OpenSSL: it goes on deriving, and is not timed again; a sample under 100 ms says nothing', () => {
  const rates = { wasm: 1e-3, openssl: 0.5e-3 };
  const moduleMs = rates.wasm * largeUnits;
  // OpenSSL to the module; the module's first timed sample under 100 ms (timed again), then 1.1x,
  // then it would be slow: never asked
  const c = inTurn([1.4 * moduleMs, 99, 1.1 * moduleMs, 5 * moduleMs]);
  resetKdfEngineForTest(rates, c.timer);
  const counter = new Int32Array(2);
  for (let i = 0; i < 6; i++) derive(LARGE, true, counter);
  assert.deepEqual([...counter], [5, 1]);
  assert.equal(c.asked(), 3, 'OpenSSL once, the module twice (the first said nothing), then no more');
  assert.equal(engineFor(LARGE, 8, 1), 'wasm');
  assert.ok(keptBytes() >= romixBytes(2 ** LARGE, 8, 1));
});

test('a collector that throws as the module\'s memory is released: the key is right, the shared count of threads keeping memory goes down', async () => {
  // in a thread of its own: the collector is looked up once per thread (young-gc.ts)
  const code = `
    const { parentPort } = require('node:worker_threads');
    globalThis.gc = () => { throw new Error('collector failed'); };
    (async () => {
      const { countKeptMemoryIn, keptBytes } = await import(${JSON.stringify(new URL('../../src/workers/scrypt-romix.js', import.meta.url).href)});
      const { deriveScrypt, resetKdfEngineForTest, engineFor } = await import(${JSON.stringify(new URL('../../src/workers/kdf-engine.js', import.meta.url).href)});
      const { scryptSync } = require('node:crypto');
      const holders = new Int32Array(new SharedArrayBuffer(4));
      countKeptMemoryIn(holders);
      const units = 2 ** ${LARGE} * 8;
      const times = [1.4e-3 * units, 2e-3 * units];
      let n = 0;
      resetKdfEngineForTest({ wasm: 1e-3, openssl: 0.5e-3 }, (f) => ({ value: f(), ms: times[Math.min(n++, 1)] }));
      const pass = Buffer.from('pw');
      const salt = Buffer.alloc(32, 7);
      const keys = [];
      for (let i = 0; i < 3; i++) keys.push(deriveScrypt(pass, salt, ${LARGE}, 8, 1, 64, true, 2 ** 30));
      const want = scryptSync(pass, salt, 64, { N: 2 ** ${LARGE}, r: 8, p: 1, maxmem: 2 ** 30 });
      parentPort.postMessage({ same: keys.every((k) => k.equals(want)), holders: holders[0], kept: keptBytes(), engine: engineFor(${LARGE}, 8, 1), asked: n });
    })().catch((e) => parentPort.postMessage({ error: String(e && e.stack || e) }));
  `;
  const w = new Worker(code, { eval: true });
  try {
    const [r] = (await once(w, 'message')) as [{ same?: boolean; holders?: number; kept?: number; engine?: string; asked?: number; error?: string }];
    assert.equal(r.error, undefined, r.error);
    assert.deepEqual(r, { same: true, holders: 0, kept: 0, engine: 'openssl', asked: 2 });
  } finally {
    await w.terminate();
  }
});

test('not timed: sizes up to 32 MiB (OpenSSL reuses that memory), and derivations under 100 ms', () => {
  let asked = 0;
  resetKdfEngineForTest({ wasm: 1e-9, openssl: 0.5e-9 }, reporting(() => (asked++, 1e6)));
  for (let i = 0; i < 4; i++) derive(14, false);
  assert.equal(asked, 0, 'logN 14 (16 MiB) is never timed');
  assert.equal(engineFor(14, 8, 1), 'openssl');
  // far too slow against the module, but under 100 ms: says nothing
  resetKdfEngineForTest({ wasm: 1e-9, openssl: 0.5e-9 }, reporting(() => 99));
  for (let i = 0; i < 3; i++) derive(LARGE, false);
  assert.equal(engineFor(LARGE, 8, 1), 'openssl');
});

// Node 20 has no clock of a thread's own CPU time, and the wall clock cannot tell a slow OpenSSL
// from the other threads holding the cores (found by review): there the probe alone decides.
test('OpenSSL\'s large derivations are timed only where the runtime gives a thread CPU clock', () => {
  assert.equal(timesOpenSslForTest(), typeof (process as { threadCpuUsage?: unknown }).threadCpuUsage === 'function');
  resetKdfEngineForTest({ wasm: 1e-9, openssl: 0.5e-9 }); // the runtime's own clock
  // logN 17 (128 MiB): OpenSSL takes 0.2 s or more of CPU, the module "would take" 1 µs; so with a
  // thread clock it is found slower, without one it is never timed
  derive(17, false);
  assert.equal(engineFor(17, 8, 1), timesOpenSslForTest() ? 'wasm' : 'openssl');
});

// Waiting is not work: a derivation held off the core (here: a blocked wait before it) is timed by
// the thread's CPU time, not the wall clock (min(wall, cpu + tick)); only with a thread clock.
test('a derivation that waited is not counted slow for the wait', { skip: !timesOpenSslForTest() && 'no thread CPU clock in this runtime' }, () => {
  // the module's recorded cost is far above what OpenSSL's logN 15 costs on a slow, loaded machine
  // (~70 ms here; 200 ms was crossed once in CI), and the wait far above the module's cost
  const moduleMs = 1000;
  resetKdfEngineForTest({ wasm: moduleMs / largeUnits, openssl: moduleMs / largeUnits / 2 });
  const original = crypto.scryptSync;
  crypto.scryptSync = ((...a: Parameters<typeof crypto.scryptSync>) => {
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 2500); // off the core for 2.5 s
    return original(...a);
  }) as typeof crypto.scryptSync;
  syncBuiltinESMExports();
  try {
    deriveScrypt(Buffer.from('pw'), Buffer.alloc(32), LARGE, 8, 1, 64, false, MAXMEM);
  } finally {
    crypto.scryptSync = original;
    syncBuiltinESMExports();
  }
  assert.equal(engineFor(LARGE, 8, 1), 'openssl', 'the 2.5 s wait is not OpenSSL\'s cost');
});

test('OpenSSL as fast as measured keeps deriving', () => {
  resetKdfEngineForTest({ wasm: 1, openssl: 0.5 }); // the module "would take" minutes
  for (let i = 0; i < 3; i++) derive(LARGE, true);
  assert.equal(engineFor(LARGE, 8, 1), 'openssl');
});

test('a derivation the budget counts as kept: nothing is kept while OpenSSL runs it', () => {
  resetKdfEngineForTest(FAST_MODULE);
  derive(10, true);
  assert.ok(keptBytes() > 0);
  resetKdfEngineForTest(FAST_OPENSSL);
  const seen: number[] = [];
  const original = crypto.scryptSync;
  crypto.scryptSync = ((...a: Parameters<typeof crypto.scryptSync>) => (seen.push(keptBytes()), original(...a))) as typeof crypto.scryptSync;
  syncBuiltinESMExports();
  try {
    derive(12, true);
  } finally {
    crypto.scryptSync = original;
    syncBuiltinESMExports();
  }
  // the first call is deriveScrypt's own (the test's reference key comes after it)
  assert.equal(seen[0], 0, 'released before node:crypto allocated its own');
});

test('a small derivation OpenSSL refuses (no scrypt there, e.g. FIPS) measures then, and the module derives it', () => {
  const original = crypto.scryptSync;
  crypto.scryptSync = (() => {
    throw new Error('unsupported');
  }) as typeof crypto.scryptSync;
  syncBuiltinESMExports();
  let key: Buffer;
  const pass = Buffer.from('pw');
  const salt = Buffer.alloc(32, 5);
  const counter = new Int32Array(2);
  countDerivationsIn(counter);
  try {
    key = deriveScrypt(pass, salt, 10, 8, 1, 64, true, MAXMEM);
  } finally {
    crypto.scryptSync = original;
    syncBuiltinESMExports();
  }
  assert.deepEqual(key, scryptSync(pass, salt, 64, { N: 1024, r: 8, p: 1 }));
  assert.deepEqual([...counter], [1, 0], 'counted as the module\'s');
  const r = measuredRatesForTest();
  assert.ok(r != null && r.openssl === Infinity && Number.isFinite(r.wasm), JSON.stringify(r));
  assert.equal(engineFor(12, 8, 1), 'wasm', 'measured once: the module from now on');
});

test('the module failing in the probe leaves the module where it can run (as before the choice), the same key', () => {
  const pass = Buffer.from('pw');
  const salt = Buffer.alloc(32, 6);
  // a derivation the probe runs for: larger than 32 MiB
  const want = scryptSync(pass, salt, 64, { N: 2 ** LARGE, r: 8, p: 1, maxmem: MAXMEM });
  // the probe's module run fails (its PBKDF2 step throws once)
  const original = crypto.pbkdf2Sync;
  let calls = 0;
  crypto.pbkdf2Sync = ((...a: Parameters<typeof crypto.pbkdf2Sync>) => {
    if (calls++ === 0) throw new Error('one failure');
    return original(...a);
  }) as typeof crypto.pbkdf2Sync;
  syncBuiltinESMExports();
  const counter = new Int32Array(2);
  countDerivationsIn(counter);
  let key: Buffer;
  try {
    key = deriveScrypt(pass, salt, LARGE, 8, 1, 64, true, MAXMEM);
  } finally {
    crypto.pbkdf2Sync = original;
    syncBuiltinESMExports();
  }
  assert.equal(measuredRatesForTest(), null);
  assert.deepEqual(key, want);
  assert.deepEqual([...counter], [1, 0], 'the module derived');
  // the probe's instance failing to be made does not disable the module either (review: it did)
  dropKeptMemory();
  resetKdfEngineForTest(undefined);
  const wasm = (globalThis as unknown as { WebAssembly: { Instance: new (...a: unknown[]) => unknown } }).WebAssembly;
  const Instance = wasm.Instance;
  let made = 0;
  wasm.Instance = function (this: unknown, ...a: unknown[]) {
    if (made++ === 0) throw new RangeError('out of address space');
    return new Instance(...a);
  } as unknown as typeof Instance;
  try {
    assert.deepEqual(deriveScrypt(pass, salt, LARGE, 8, 1, 64, true, MAXMEM), want);
  } finally {
    wasm.Instance = Instance;
  }
  assert.equal(measuredRatesForTest(), null);
  assert.deepEqual([...counter], [2, 0], 'the module derived, and keeps its memory');
  assert.ok(keptBytes() > 0);
});

test('QVMB_KDF modes: openssl and wasm fix the engine whatever was measured', () => {
  setKdfEngineMode('openssl');
  resetKdfEngineForTest(FAST_MODULE);
  let d = derive(10, true);
  assert.deepEqual(d.key, d.want);
  assert.deepEqual([...d.counter], [0, 1]);
  setKdfEngineMode('wasm');
  resetKdfEngineForTest(FAST_OPENSSL);
  d = derive(10, true);
  assert.deepEqual(d.key, d.want);
  assert.deepEqual([...d.counter], [1, 0]);
});

test('parameters the module does not run go to OpenSSL in every mode (the same key)', () => {
  for (const m of ['auto', 'wasm'] as const) {
    setKdfEngineMode(m);
    resetKdfEngineForTest(FAST_MODULE);
    assert.equal(engineFor(16, 1, 1), 'openssl', 'N >= 2^(16r)');
    // B over 1 MiB (a huge p)
    assert.equal(engineFor(1, 2, 4097), 'openssl');
    const salt = randomBytes(32);
    assert.deepEqual(deriveScrypt(Buffer.from('pw'), salt, 1, 2, 4097, 64, true, MAXMEM), scryptSync('pw', salt, 64, { N: 2, r: 2, p: 4097, maxmem: MAXMEM }));
    assert.equal(scryptWasm(Buffer.from('pw'), salt, 1, 2, 4097, 64, true), null);
  }
});
