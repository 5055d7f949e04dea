// Which scrypt engine derives (workers/kdf-engine.ts): the measured faster one, memory already kept
// whenever it is large enough, the module once OpenSSL's real derivations turn out slower than the
// module would be, QVMB_KDF's fixed modes; the key is node:crypto's whichever runs, and a thread the
// budget counts as keeping memory never keeps the module's beside OpenSSL's.
import assert from 'node:assert/strict';
import { randomBytes, scryptSync } from 'node:crypto';
import { afterEach, test } from 'node:test';
import { countDerivationsIn, deriveScrypt, engineFor, measuredRatesForTest, resetKdfEngineForTest, setKdfEngineMode } from '../../src/workers/kdf-engine.js';
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

test('the first derivation measures both engines on this thread (finite, positive rates)', () => {
  assert.equal(measuredRatesForTest(), undefined);
  const { key, want } = derive(10, true);
  assert.deepEqual(key, want);
  const r = measuredRatesForTest();
  assert.ok(r != null && Number.isFinite(r.wasm) && Number.isFinite(r.openssl) && r.wasm > 0 && r.openssl > 0, JSON.stringify(r));
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

test('OpenSSL slower in real derivations than the module would be: that size and larger go to the module', () => {
  // the module "measured" absurdly fast, OpenSSL faster still: every real OpenSSL derivation is too slow
  resetKdfEngineForTest({ wasm: 1e-12, openssl: 1e-13 });
  const counter = new Int32Array(2);
  // 1 MiB (below glibc's 32 MiB mmap threshold): two not counted (fresh memory), then two counted
  for (let i = 0; i < 4; i++) {
    assert.equal(engineFor(10, 8, 1), 'openssl', `derivation ${i + 1}`);
    derive(10, true, counter);
  }
  assert.equal(engineFor(10, 8, 1), 'wasm');
  assert.equal(engineFor(12, 8, 1), 'wasm', 'larger too');
  assert.equal(engineFor(9, 8, 1), 'openssl', 'smaller not');
  const d = derive(10, true, counter);
  assert.deepEqual(d.key, d.want);
  assert.deepEqual([...counter], [1, 4]);
});

test('above 32 MiB (fresh memory every time) one slow OpenSSL derivation decides', () => {
  resetKdfEngineForTest({ wasm: 1e-12, openssl: 1e-13 });
  assert.ok(romixBytes(2 ** 15, 8, 1) > 32 * 2 ** 20);
  assert.equal(engineFor(15, 8, 1), 'openssl');
  derive(15, false);
  assert.equal(engineFor(15, 8, 1), 'wasm');
});

test('OpenSSL as fast as measured keeps deriving', () => {
  resetKdfEngineForTest({ wasm: 1, openssl: 0.5 }); // the module "would take" seconds
  for (let i = 0; i < 6; i++) derive(10, true);
  assert.equal(engineFor(10, 8, 1), 'openssl');
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
