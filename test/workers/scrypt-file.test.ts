// scrypt file v0 codec cross-checked with the `scrypt` 1.3.1 CLI both ways, and its failure values.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readScryptHeader, scryptDecryptInto, scryptDeriveKey, scryptEncryptInto, SCRYPT_OVERHEAD_BYTES } from '../../src/workers/scrypt-file.js';
import { assertSameBytes, hasTool, sampleData, tempDir } from './tools.js';

const PW = '20230405T123455-1234!vm123/private.img.000!hunter2 ü';
const PWB = Buffer.from(PW, 'utf8');
const P10 = { logN: 10, r: 8, p: 1 };
const LIMIT = { maxKdfBytes: 1 << 30 };
const HAVE_SCRYPT = hasTool('scrypt');

function scryptCli(args: string[], passphrase: string): { status: number | null; stdout: Buffer; stderr: string } {
  const r = spawnSync('scrypt', args, { input: passphrase + '\n', maxBuffer: 1 << 30 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr.toString() };
}

function encrypt(plain: Uint8Array, params = P10, pw = PWB): Uint8Array {
  const out = new Uint8Array(plain.length + SCRYPT_OVERHEAD_BYTES);
  assert.equal(scryptEncryptInto(pw, params, plain, out), out.length);
  return out;
}

test('ours → scrypt dec -P', (t) => {
  if (!HAVE_SCRYPT) return t.skip('scrypt CLI not installed');
  const { dir, cleanup } = tempDir();
  try {
    for (const n of [0, 1, 300_001]) {
      const plain = sampleData(n, 4);
      const f = path.join(dir, `ours-${n}.enc`);
      fs.writeFileSync(f, encrypt(plain));
      const r = scryptCli(['dec', '-P', f], PW);
      assert.equal(r.status, 0, r.stderr);
      assertSameBytes(r.stdout, plain, `scrypt dec of ${n} bytes`);
    }
  } finally {
    cleanup();
  }
});

test('scrypt enc -P --logN 10 -r 8 -p 1 → ours (also in place)', (t) => {
  if (!HAVE_SCRYPT) return t.skip('scrypt CLI not installed');
  const { dir, cleanup } = tempDir();
  try {
    const plain = sampleData(400_000, 6);
    const src = path.join(dir, 'plain');
    const enc = path.join(dir, 'plain.enc');
    fs.writeFileSync(src, plain);
    const r = scryptCli(['enc', '-P', '--logN', '10', '-r', '8', '-p', '1', src, enc], PW);
    assert.equal(r.status, 0, r.stderr);
    const file = fs.readFileSync(enc);
    const out = new Uint8Array(file.length - SCRYPT_OVERHEAD_BYTES);
    const res = scryptDecryptInto(PWB, file, out, LIMIT);
    assert.deepEqual(res, { ok: true, length: plain.length, logN: 10, r: 8, p: 1 });
    assertSameBytes(out, plain);
    const same = Uint8Array.from(file);
    const inPlace = scryptDecryptInto(PWB, same, same, LIMIT);
    assert.ok(inPlace.ok);
    assertSameBytes(same.subarray(0, plain.length), plain, 'in place');
  } finally {
    cleanup();
  }
});

test('in-place encrypt: output 96 bytes before the input in one shared buffer', () => {
  const plain = sampleData(600_000, 9);
  const sab = new SharedArrayBuffer(plain.length + 128);
  const all = new Uint8Array(sab);
  all.set(plain, 96);
  const n = scryptEncryptInto(PWB, P10, all.subarray(96, 96 + plain.length), all);
  assert.equal(n, plain.length + 128);
  const copy = new Uint8Array(plain.length);
  assert.ok(scryptDecryptInto(PWB, all, copy, LIMIT).ok);
  assertSameBytes(copy, plain);
  assert.throws(() => scryptEncryptInto(PWB, P10, all.subarray(50, 1000), all), /overlaps input unsafely/);
});

test('the bytes said final while encrypting are final: header first, then slice by slice, then the whole file', () => {
  const input = sampleData(5 * 65536 + 17, 3);
  const output = Buffer.alloc(input.length + SCRYPT_OVERHEAD_BYTES);
  const said: { at: number; bytes: Buffer }[] = [];
  const n = scryptEncryptInto(PWB, P10, input, output, undefined, undefined, (at) => said.push({ at, bytes: Buffer.from(output.subarray(0, at)) }));
  assert.equal(n, output.length);
  assert.equal(said[0]?.at, 96);
  assert.equal(said.at(-1)?.at, n);
  assert.ok(said.length >= 7, `${said.length} positions`);
  for (let i = 0; i < said.length; i++) {
    const s = said[i]!;
    if (i > 0) assert.ok(s.at > said[i - 1]!.at, 'positions only grow');
    assert.ok(s.bytes.equals(output.subarray(0, s.at)), `bytes said final at ${s.at} changed afterwards`);
  }
  const back = Buffer.alloc(input.length);
  const r = scryptDecryptInto(PWB, output, back, LIMIT);
  assert.ok(r.ok && back.equals(input));
});

test('failures: wrong passphrase, flipped body byte, truncated, bad magic, bad checksum, absurd params', () => {
  const plain = sampleData(70_000, 1);
  const file = encrypt(plain);
  const out = new Uint8Array(plain.length);
  const wrong = scryptDecryptInto(Buffer.from('nope'), file, out, LIMIT);
  assert.ok(!wrong.ok && wrong.reason === 'mac-mismatch' && /wrong passphrase/.test(wrong.message));

  const flipped = Uint8Array.from(file);
  flipped[5000] = (flipped[5000] ?? 0) ^ 1;
  out.fill(7);
  const f = scryptDecryptInto(PWB, flipped, out, LIMIT);
  assert.ok(!f.ok && f.reason === 'mac-mismatch');
  assert.ok(out.every((b) => b === 0), 'unauthenticated plaintext is wiped');

  for (const len of [0, 6, 50, 96, 127]) {
    const cut = scryptDecryptInto(PWB, file.subarray(0, len), out, LIMIT);
    assert.ok(!cut.ok && cut.reason === 'bad-format', `truncated to ${len}`);
  }
  const cutBody = scryptDecryptInto(PWB, file.subarray(0, file.length - 1), out, LIMIT);
  assert.ok(!cutBody.ok && cutBody.reason === 'mac-mismatch', 'a truncated body fails the trailer MAC');

  const magic = Uint8Array.from(file);
  magic[0] = 0x53;
  const m = scryptDecryptInto(PWB, magic, out, LIMIT);
  assert.ok(!m.ok && m.reason === 'bad-format');
  const version = Uint8Array.from(file);
  version[6] = 1;
  const v = scryptDecryptInto(PWB, version, out, LIMIT);
  assert.ok(!v.ok && v.reason === 'bad-format' && /version 1/.test(v.message));
  const header = readScryptHeader(file);
  assert.ok(!('ok' in header) && header.logN === 10 && header.r === 8 && header.p === 1);

  const sum = Uint8Array.from(file);
  sum[20] = (sum[20] ?? 0) ^ 0x80; // salt byte: the checksum no longer matches
  const s = scryptDecryptInto(PWB, sum, out, LIMIT);
  assert.ok(!s.ok && s.reason === 'bad-format' && /checksum/.test(s.message));
});

test('absurd parameters are refused before any KDF work', () => {
  const big = encrypt(new Uint8Array(10), { logN: 14, r: 8, p: 1 });
  const out = new Uint8Array(10);
  const limited = scryptDecryptInto(PWB, big, out, { maxKdfBytes: 8 * 1024 * 1024 });
  assert.ok(!limited.ok && limited.reason === 'too-large' && /over the limit/.test(limited.message));
  // logN 14, r 8: V is 128·r·(N+2) and B 128·r·p bytes, just over 16 MiB; work N·r·p = 2^17
  assert.ok(!scryptDecryptInto(PWB, big, out, { maxKdfBytes: 16 * 1024 * 1024 }).ok);
  assert.ok(scryptDecryptInto(PWB, big, out, { maxKdfBytes: 17 * 1024 * 1024 }).ok);
  const slow = scryptDecryptInto(PWB, big, out, { maxKdfBytes: 1 << 30, maxKdfWork: 2 ** 17 - 1 });
  assert.ok(!slow.ok && slow.reason === 'too-large' && /N\*r\*p = 131072 units of KDF work/.test(slow.message), JSON.stringify(slow));
  assert.ok(scryptDecryptInto(PWB, big, out, { maxKdfBytes: 1 << 30, maxKdfWork: 2 ** 17 }).ok);
  // forge headers with absurd parameters (valid checksum, so only the parameter check can refuse them)
  const forge = (logN: number, r: number, p: number): Uint8Array => {
    const f = Uint8Array.from(big);
    const dv = new DataView(f.buffer);
    f[7] = logN;
    dv.setUint32(8, r);
    dv.setUint32(12, p);
    const h = createHash('sha256').update(f.subarray(0, 48)).digest();
    f.set(h.subarray(0, 16), 48);
    return f;
  };
  for (const [logN, r, p] of [[40, 8, 1], [0, 8, 1], [14, 0, 1], [10, 2 ** 16, 2 ** 14]] as const) {
    const t0 = Date.now();
    const res = scryptDecryptInto(PWB, forge(logN, r, p), out, { maxKdfBytes: Number.MAX_SAFE_INTEGER });
    assert.ok(!res.ok && res.reason === 'bad-params', `logN ${logN} r ${r} p ${p}: ${JSON.stringify(res)}`);
    assert.ok(Date.now() - t0 < 1000);
  }
  assert.throws(() => encrypt(new Uint8Array(1), { logN: 40, r: 8, p: 1 }), /logN 40/);
});

test('a key derived ahead decrypts as the KDF would; a key for another salt or other parameters is refused', () => {
  const plain = sampleData(300_000, 11);
  const file = new Uint8Array(plain.length + SCRYPT_OVERHEAD_BYTES);
  scryptEncryptInto(PWB, P10, plain, file);
  const h = readScryptHeader(file);
  assert.ok(!('ok' in h));
  const derived = { key: new Uint8Array(scryptDeriveKey(PWB, h.salt, h)), salt: h.salt, logN: h.logN, r: h.r, p: h.p };
  const out = new Uint8Array(plain.length);
  const r = scryptDecryptInto(PWB, file, out, LIMIT, derived);
  assert.ok(r.ok);
  assertSameBytes(out, plain);
  // the key is checked against the header (a wrong passphrase's key fails its MAC, as without one)
  const wrong = { ...derived, key: new Uint8Array(scryptDeriveKey(Buffer.from('other'), h.salt, h)) };
  const w = scryptDecryptInto(PWB, file, new Uint8Array(plain.length), LIMIT, wrong);
  assert.ok('ok' in w && !w.ok && w.reason === 'mac-mismatch');
  const otherSalt = Uint8Array.from(derived.salt);
  otherSalt[0]! ^= 1;
  assert.throws(() => scryptDecryptInto(PWB, file, new Uint8Array(plain.length), LIMIT, { ...derived, salt: otherSalt }), /derived for another salt/);
  assert.throws(() => scryptDecryptInto(PWB, file, new Uint8Array(plain.length), LIMIT, { ...derived, logN: derived.logN + 1 }), /derived for another salt/);
});
