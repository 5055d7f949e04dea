// scrypt with ROMix in WebAssembly SIMD (workers/scrypt-romix.ts): the RFC 7914 vectors, the same
// key as node:crypto (OpenSSL) over many parameters, kept memory zeroed after each derivation, and
// the fallbacks (null) the caller turns into node:crypto. The committed module is what
// scripts/scrypt-wasm.mjs assembles from its text.
import assert from 'node:assert/strict';
import { randomBytes, scryptSync } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { keptMemoryForTest, romixBytes, scryptWasm, WASM_SCRYPT_MAX_BYTES } from '../../src/workers/scrypt-romix.js';
import { scryptDeriveKey } from '../../src/workers/scrypt-file.js';

const b = (s: string): Buffer => Buffer.from(s, 'utf8');

test('RFC 7914 §12 test vectors', () => {
  const vectors: [string, string, number, number, number, string][] = [
    ['', '', 4, 1, 1, '77d6576238657b203b19ca42c18a0497f16b4844e3074ae8dfdffa3fede21442fcd0069ded0948f8326a753a0fc81f17e8d3e0fb2e0d3628cf35e20c38d18906'],
    ['password', 'NaCl', 10, 8, 16, 'fdbabe1c9d3472007856e7190d01e9fe7c6ad7cbc8237830e77376634b3731622eaf30d92e22a3886ff109279d9830dac727afb94a83ee6d8360cbdfa2cc0640'],
    ['pleaseletmein', 'SodiumChloride', 14, 8, 1, '7023bdcb3afd7348461c06cd81fd38ebfda8fbba904f8e3ea9b543f6545da1f2d5432955613f0fcf62d49705242a9af9e61e85dc0d651e40dfcf017b45575887'],
  ];
  for (const [pass, salt, logN, r, p, hex] of vectors) {
    assert.equal(scryptWasm(b(pass), b(salt), logN, r, p, 64, true)?.toString('hex'), hex, `${pass}/${salt} logN ${logN}`);
  }
});

test('the same key as node:crypto over logN 1..12, r 1..9, p 1..3, any key length', () => {
  for (let logN = 1; logN <= 12; logN++) {
    for (const r of [1, 2, 3, 8, 9]) {
      const p = 1 + ((logN + r) % 3);
      const pass = randomBytes(logN % 5 === 0 ? 0 : 1 + ((logN * 7) % 40));
      const salt = randomBytes(logN % 4 === 0 ? 0 : 32);
      const dkLen = [64, 1, 33, 100][logN % 4]!;
      const want = scryptSync(pass, salt, dkLen, { N: 2 ** logN, r, p, maxmem: 2 ** 30 });
      assert.deepEqual(scryptWasm(pass, salt, logN, r, p, dkLen, true), want, `logN ${logN} r ${r} p ${p}`);
    }
  }
});

test('scryptDeriveKey gives node:crypto\'s key whether its worker keeps the memory or not', () => {
  for (const keepKdfMemory of [true, false, undefined]) {
    const salt = randomBytes(32);
    const q = { logN: 13, r: 8, p: 1 };
    const want = scryptSync(b('backup-header!pw'), salt, 64, { N: 2 ** 13, r: 8, p: 1 });
    assert.deepEqual(scryptDeriveKey(b('backup-header!pw'), salt, { ...q, ...(keepKdfMemory === undefined ? {} : { keepKdfMemory }) }), want);
  }
});

test('kept memory is zeroed after every derivation and grows only as needed', () => {
  const key = scryptWasm(b('pw'), randomBytes(32), 12, 8, 1, 64, true);
  assert.ok(key !== null);
  const mem = keptMemoryForTest();
  assert.ok(mem !== null && mem.length >= romixBytes(2 ** 12, 8, 1));
  assert.ok(mem.every((x) => x === 0), 'the memory a derivation used is zeroed');
  // a smaller derivation without keep uses the kept instance (no new memory) and zeroes it too
  const small = scryptWasm(b('pw'), randomBytes(32), 10, 8, 1, 64, false);
  assert.ok(small !== null);
  assert.ok(keptMemoryForTest()!.every((x) => x === 0));
});

test('falls back (null) over the size limit and, without keep, when no kept memory is large enough', () => {
  // B over 1 MiB (huge p) and N >= 2^(16r) (OpenSSL refuses it): node:crypto's, whatever `keep` says;
  // a derivation the budget let keep its memory releases the memory kept so far instead (node:crypto's
  // must not come on top of what the budget counts as this thread's: found by review)
  const keepSome = (): void => void scryptWasm(b('pw'), randomBytes(32), 10, 8, 1, 64, true);
  for (const [logN, r, p] of [[1, 2, 4097], [16, 1, 1], [22, 8, 1]] as const) {
    keepSome();
    assert.ok(keptMemoryForTest() !== null, 'kept');
    assert.equal(scryptWasm(b('pw'), randomBytes(32), logN, r, p, 64, true), null);
    assert.equal(keptMemoryForTest(), null, `released for logN ${logN} r ${r} p ${p}`);
  }
  // 4 GiB of V: refused before any memory is taken
  assert.ok(romixBytes(2 ** 22, 8, 1) > WASM_SCRYPT_MAX_BYTES);
  keepSome();
  const kept = keptMemoryForTest()?.length ?? 0;
  // larger than what is kept, and not to be kept: left to node:crypto (its memory is freed at once)
  let logN = 10;
  while (romixBytes(2 ** logN, 8, 1) <= kept) logN++;
  assert.equal(scryptWasm(b('pw'), randomBytes(32), logN, 8, 1, 64, false), null);
  assert.equal(keptMemoryForTest()?.length ?? 0, kept, 'nothing grown');
  // and scryptDeriveKey still gives the key (by node:crypto)
  const salt = randomBytes(32);
  assert.deepEqual(scryptDeriveKey(b('pw'), salt, { logN, r: 8, p: 1 }), scryptSync(b('pw'), salt, 64, { N: 2 ** logN, r: 8, p: 1, maxmem: 2 ** 30 }));
});

test('the committed module is what scripts/scrypt-wasm.mjs assembles', () => {
  const r = spawnSync(process.execPath, ['scripts/scrypt-wasm.mjs', '--check'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
});

// A runtime that cannot compile the module (no WebAssembly under --jitless) derives with node:crypto,
// the same keys, also when the budget lets the worker keep its memory (found by review: untested).
test('without WebAssembly (node --jitless) every derivation falls back to node:crypto, same keys', () => {
  const here = new URL('.', import.meta.url);
  const script = `
    const { scryptDeriveKey } = await import(${JSON.stringify(new URL('../../src/workers/scrypt-file.js', here).href)});
    const { scryptWasm } = await import(${JSON.stringify(new URL('../../src/workers/scrypt-romix.js', here).href)});
    const { scryptSync } = await import('node:crypto');
    const salt = Buffer.alloc(32, 3);
    const same = [true, false].map((keep) => Buffer.from(scryptDeriveKey(Buffer.from('qubes'), salt, { logN: 10, r: 8, p: 1, ...(keep ? { keepKdfMemory: true } : {}) })).equals(scryptSync('qubes', salt, 64, { N: 1024, r: 8, p: 1 })));
    console.log(JSON.stringify({ wasm: typeof WebAssembly, same, direct: scryptWasm(Buffer.from('qubes'), salt, 10, 8, 1, 64, true) }));`;
  const r = spawnSync(process.execPath, ['--jitless', '--input-type=module', '-e', script], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout.trim()), { wasm: 'undefined', same: [true, true], direct: null });
});
