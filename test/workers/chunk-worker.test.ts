// The worker task adapters called directly (no pool) on shared slices: HMAC-before-decrypt,
// openssl -z chunks, failure values.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as zlib from 'node:zlib';
import { cipherPiece, hmacSlice, opensslOpen, opensslSeal, scryptEncrypt, view } from '../../src/workers/chunk-worker.js';
import { computeHmacHex } from '../../src/workers/hmac.js';
import { evpBytesToKey, opensslEncryptFile } from '../../src/workers/openssl-enc.js';
import { assertSameBytes, inShared, run, sampleData } from './tools.js';

const PW = 'qubes';
const KEY = Buffer.from(PW);
const SHA = { algorithm: 'SHA512', key: KEY };

function dgst(data: Uint8Array): string {
  return run('openssl', ['dgst', '-sha512', '-hmac', PW], data).toString().split('=')[1]?.trim() ?? '';
}

test('opensslOpen: HMAC-verify, inflate, then decrypt an `openssl enc -e -z` chunk (R2-beta3)', () => {
  const plain = sampleData(500_000, 1);
  // openssl enc pushes the zlib BIO below the cipher BIO: file = zlib(Salted__ ‖ salt ‖ ciphertext)
  let file: Buffer = zlib.deflateSync(opensslEncryptFile('aes-256-cbc', KEY, plain));
  const cli = run('openssl', ['enc', '-e', '-z', '-aes-256-cbc', '-md', 'MD5', '-pass', `pass:${PW}`], plain);
  if (cli[0] === 0x78) file = cli; // this openssl has zlib: use its real output
  const { sab } = inShared(file, file.length + plain.length + 32);
  const input = { sab, offset: 0, length: file.length };
  const output = { sab, offset: file.length, length: plain.length + 32 };
  const r = opensslOpen({ cipher: 'aes-256-cbc', passphrase: PW, input, output, decompress: 'zlib', hmac: SHA, expectHmacHex: dgst(file) });
  assert.deepEqual(r, { ok: true, length: plain.length });
  assertSameBytes(view(output).subarray(0, plain.length), plain);
  const small = opensslOpen({ cipher: 'aes-256-cbc', passphrase: PW, input, output: { sab, offset: file.length, length: plain.length }, decompress: 'zlib' });
  assert.ok(!small.ok && small.reason === 'too-large');
});

test('opensslOpen: HMAC mismatch is reported before anything is decrypted', () => {
  const plain = sampleData(100_000, 2);
  const file = opensslEncryptFile('aes-256-cbc', KEY, plain);
  const { sab, view: inView } = inShared(file, 2 * file.length);
  const r = opensslOpen({ cipher: 'aes-256-cbc', passphrase: PW, input: { sab, offset: 0, length: file.length }, output: { sab, offset: file.length, length: file.length }, decompress: 'gzip', hmac: SHA, expectHmacHex: '00'.repeat(64) });
  assert.ok(!r.ok && r.reason === 'mac-mismatch');
  assertSameBytes(inView, file, 'input untouched');
  const wrong = opensslOpen({ cipher: 'aes-256-cbc', passphrase: 'wrong', input: { sab, offset: 0, length: file.length }, output: { sab, offset: file.length, length: file.length }, decompress: 'none' });
  assert.ok(!wrong.ok && wrong.reason === 'bad-padding');
});

test('opensslOpen: unencrypted gzip chunk and plain chunk', () => {
  const plain = sampleData(300_000, 3);
  const gz = run('gzip', ['-c'], plain);
  const { sab } = inShared(gz, gz.length + plain.length);
  const r = opensslOpen({ cipher: null, passphrase: '', input: { sab, offset: 0, length: gz.length }, output: { sab, offset: gz.length, length: plain.length }, decompress: 'gzip', hmac: SHA, expectHmacHex: dgst(gz) });
  assert.deepEqual(r, { ok: true, length: plain.length });
  assertSameBytes(new Uint8Array(sab, gz.length, plain.length), plain);
  const small = opensslOpen({ cipher: null, passphrase: '', input: { sab, offset: 0, length: gz.length }, output: { sab, offset: gz.length, length: 10 }, decompress: 'gzip' });
  assert.ok(!small.ok && small.reason === 'too-large');
  const same = opensslOpen({ cipher: null, passphrase: '', input: { sab, offset: 0, length: gz.length }, output: { sab, offset: 0, length: gz.length }, decompress: 'none' });
  assert.deepEqual(same, { ok: true, length: gz.length });
});

test('opensslSeal: output decrypts with openssl and its HMAC matches openssl dgst', () => {
  const plain = sampleData(200_000, 4);
  const { sab } = inShared(plain, 2 * plain.length + 64);
  const output = { sab, offset: plain.length, length: plain.length + 64 };
  const r = opensslSeal({ cipher: 'aes-256-cbc', passphrase: PW, input: { sab, offset: 0, length: plain.length }, output, hmac: SHA });
  assert.ok(r.ok);
  const file = view(output).subarray(0, r.length);
  assert.equal(r.hmacHex, dgst(file));
  assertSameBytes(run('openssl', ['enc', '-d', '-aes-256-cbc', '-md', 'MD5', '-pass', `pass:${PW}`], file), plain);
  const bad = opensslSeal({ cipher: 'rot13-cbc', passphrase: PW, input: { sab, offset: 0, length: 10 }, output });
  assert.ok(!bad.ok && bad.reason === 'bad-params');
});

test('cipherPiece: decrypt checks the HMAC first; encrypt returns the HMAC of what it wrote', () => {
  const plain = sampleData(64 * 1024, 5);
  const { key, iv } = evpBytesToKey(KEY, Buffer.alloc(8, 1), 32, 16);
  const { sab } = inShared(plain, plain.length + 16);
  const slice = { sab, offset: 0, length: plain.length };
  const enc = cipherPiece({ mode: 'encrypt', cipher: 'aes-256-cbc', key, iv, final: false, input: slice, output: { sab, offset: 0, length: plain.length + 16 }, hmac: SHA });
  assert.ok(enc.ok && enc.length === plain.length);
  const ct = Uint8Array.from(view(slice));
  assert.equal(enc.hmacHex, computeHmacHex('SHA512', KEY, ct));
  const bad = cipherPiece({ mode: 'decrypt', cipher: 'aes-256-cbc', key, iv, final: false, input: slice, output: slice, hmac: SHA, expectHmacHex: 'ab'.repeat(64) });
  assert.ok(!bad.ok && bad.reason === 'mac-mismatch');
  assertSameBytes(view(slice), ct, 'not decrypted');
  const good = cipherPiece({ mode: 'decrypt', cipher: 'aes-256-cbc', key, iv, final: false, input: slice, output: slice, hmac: SHA, expectHmacHex: enc.hmacHex });
  assert.ok(good.ok);
  assertSameBytes(view(slice), plain);
  assert.deepEqual(Buffer.from(good.nextIv), Buffer.from(enc.nextIv));
});

test('failure values: unknown digest, absurd scrypt parameters', () => {
  const { sab } = inShared(Buffer.from('abc'), 1024);
  const h = hmacSlice({ algorithm: 'whirlpool-9000', key: KEY, input: { sab, offset: 0, length: 3 } });
  assert.ok(!h.ok && h.reason === 'bad-params');
  const s = scryptEncrypt({ passphrase: PW, logN: 40, r: 8, p: 1, input: { sab, offset: 0, length: 3 }, output: { sab, offset: 3, length: 200 } });
  assert.ok(!s.ok && s.reason === 'bad-params');
});

test('scryptEncrypt with a progress word: it ends at the file length, and its end wakes a waiter however it ends', async () => {
  const input = sampleData(3 * 65536, 5);
  const sab = new SharedArrayBuffer(96 + input.length + 32);
  new Uint8Array(sab).set(input, 96);
  const progress = new Int32Array(new SharedArrayBuffer(4));
  const woken = (Atomics as unknown as { waitAsync: (a: Int32Array, i: number, v: number, t: number) => { async: boolean; value: Promise<string> | string } }).waitAsync(progress, 0, 0, 10_000);
  const r = scryptEncrypt({ passphrase: PW, logN: 10, r: 8, p: 1, input: { sab, offset: 96, length: input.length }, output: { sab, offset: 0, length: sab.byteLength }, progress });
  assert.ok(r.ok && r.length === sab.byteLength);
  assert.equal(Atomics.load(progress, 0), sab.byteLength);
  assert.equal(await woken.value, 'ok');
  // an output too small throws in the worker: the word is woken all the same
  const stuck = new Int32Array(new SharedArrayBuffer(4));
  const w2 = (Atomics as unknown as { waitAsync: (a: Int32Array, i: number, v: number, t: number) => { async: boolean; value: Promise<string> | string } }).waitAsync(stuck, 0, 0, 10_000);
  assert.throws(() => scryptEncrypt({ passphrase: PW, logN: 10, r: 8, p: 1, input: { sab, offset: 96, length: input.length }, output: { sab, offset: 0, length: 100 }, progress: stuck }), RangeError);
  assert.equal(await w2.value, 'ok');
});
