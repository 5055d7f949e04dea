// Tarsnap `scrypt enc` file format version 0 (FORMAT §5.2): scrypt KDF, AES-256-CTR (nonce 0)
// and HMAC-SHA256, encrypted and decrypted in slices into caller memory (in place allowed).
// Uses the SYNC KDF on purpose: in a worker thread the async one would queue on libuv's 4 threads.
import { createCipheriv, createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { assertSafeOverlap, copyOf, pumpSlices, put } from './buffers.js';
import { failure } from './codec-error.js';
import { deriveScrypt } from './kdf-engine.js';
import type { DerivedScryptKey, TaskFailure } from './task-types.js';

/** scrypt cost parameters: N = 2^logN. */
export interface ScryptParams {
  logN: number;
  r: number;
  p: number;
}

/** Successful decryption: plaintext length and the file's parameters. */
export interface ScryptDecryptOk extends ScryptParams {
  ok: true;
  length: number;
}

/** Header size (magic, params, salt, checksum, header HMAC). */
export const SCRYPT_HEADER_BYTES = 96;
/** Header plus the trailing HMAC. */
export const SCRYPT_OVERHEAD_BYTES = 128;
const MAGIC = Buffer.from('scrypt', 'latin1');
const MAX_LOGN = 30;
const ZERO_NONCE = new Uint8Array(16);
const MAXMEM_MARGIN = 64 * 1024 * 1024;

/** Why parameters are invalid (out of the ranges scrypt accepts), or null when they are valid. */
export function checkScryptParams(q: ScryptParams): string | null {
  const { logN, r, p } = q;
  if (!Number.isInteger(logN) || logN < 1 || logN > MAX_LOGN) return `scrypt logN ${logN} out of range 1..${MAX_LOGN}`;
  if (!Number.isInteger(r) || !Number.isInteger(p) || r < 1 || p < 1) return `scrypt r=${r} p=${p} must be positive integers`;
  if (r * p >= 2 ** 30) return `scrypt r*p = ${r * p} must be below 2^30`;
  return null;
}

/** What one derivation costs: `bytes` of memory (what OpenSSL allocates: B = 128·r·p plus
 *  V = 128·r·(N+2)) and `work` = N·r·p (time grows with it; N·r·8 ≈ 2.7 s here at logN 19). */
export function scryptCost(q: ScryptParams): { bytes: number; work: number } {
  const N = 2 ** q.logN;
  return { bytes: 128 * q.r * (N + 2 + q.p), work: N * q.r * q.p };
}

/** Bounds on one derivation of an untrusted file: memory (bytes) and work (N·r·p). */
export interface ScryptLimits extends KdfMemory {
  maxKdfBytes: number;
  maxKdfWork?: number;
}

/** Why valid parameters exceed `limits`, or null when they fit. */
export function scryptOverLimits(q: ScryptParams, limits: ScryptLimits): string | null {
  const { bytes, work } = scryptCost(q);
  const what = `scrypt parameters logN=${q.logN} r=${q.r} p=${q.p}`;
  if (bytes > limits.maxKdfBytes) return `${what} need ${Math.ceil(bytes / 2 ** 20)} MiB of KDF memory, over the limit of ${Math.floor(limits.maxKdfBytes / 2 ** 20)} MiB`;
  if (limits.maxKdfWork !== undefined && work > limits.maxKdfWork) return `${what} need N*r*p = ${work} units of KDF work, over the limit of ${limits.maxKdfWork}`;
  return null;
}

/** How a derivation may hold memory (scrypt-romix.ts). */
export interface KdfMemory {
  /** this worker may keep the derivation's memory for its next one: the caller's memory budget
   *  holds one derivation per thread (default: released) */
  keepKdfMemory?: boolean;
}

/** The 64-byte derived key: key_enc (32) ‖ key_hmac (32). In WebAssembly SIMD (scrypt-romix.ts) or
 *  by node:crypto (OpenSSL), whichever is faster on this thread (kdf-engine.ts); the same key either way. */
export function scryptDeriveKey(passphrase: Uint8Array, salt: Uint8Array, q: ScryptParams & KdfMemory): Buffer {
  return deriveScrypt(passphrase, salt, q.logN, q.r, q.p, 64, q.keepKdfMemory === true, scryptMaxmem(q));
}

/** node:crypto's `maxmem` for a derivation of these parameters (above what it allocates). */
export function scryptMaxmem(q: ScryptParams): number {
  return scryptCost(q).bytes + MAXMEM_MARGIN;
}

function hmacSha256(key: Uint8Array): ReturnType<typeof createHmac> {
  return createHmac('sha256', key);
}

/** Encrypt `input` into a scrypt file in `output` (capacity >= input + 128; disjoint, or the same
 *  memory starting >= 96 bytes before the input); returns the file length. `derivedKey` (the 64-byte
 *  scryptDeriveKey result for this passphrase and `salt`) skips the KDF: the pipeline derives keys
 *  early, while a chunk is still being filled. `written` is told how many bytes of the file are
 *  final in `output` (from its start) as they are: the header, then after every slice, then all. */
export function scryptEncryptInto(passphrase: Uint8Array, params: ScryptParams & KdfMemory, input: Uint8Array, output: Uint8Array, salt?: Uint8Array, derivedKey?: Uint8Array, written?: (bytes: number) => void): number {
  const bad = checkScryptParams(params);
  if (bad) throw new RangeError(bad);
  const total = input.length + SCRYPT_OVERHEAD_BYTES;
  if (output.length < total) throw new RangeError(`scryptEncryptInto: output capacity ${output.length} < ${total}`);
  assertSafeOverlap(input, output, SCRYPT_HEADER_BYTES, 'scryptEncryptInto');
  const s = salt ?? randomBytes(32);
  if (s.length !== 32) throw new RangeError('scrypt salt must be 32 bytes');
  if (derivedKey !== undefined && (salt === undefined || derivedKey.length !== 64)) throw new RangeError('a derived key needs its salt and must be 64 bytes');
  const dk = derivedKey !== undefined ? Buffer.from(derivedKey) : scryptDeriveKey(passphrase, s, params);
  const header = Buffer.alloc(SCRYPT_HEADER_BYTES);
  MAGIC.copy(header, 0);
  header[6] = 0;
  header[7] = params.logN;
  header.writeUInt32BE(params.r, 8);
  header.writeUInt32BE(params.p, 12);
  header.set(s, 16);
  createHash('sha256').update(header.subarray(0, 48)).digest().copy(header, 48, 0, 16);
  hmacSha256(dk.subarray(32)).update(header.subarray(0, 64)).digest().copy(header, 64);
  const mac = hmacSha256(dk.subarray(32)).update(header);
  const ctr = createCipheriv('aes-256-ctr', dk.subarray(0, 32), ZERO_NONCE);
  let w = put(output, 0, header, 'scryptEncryptInto');
  written?.(w);
  w = pumpSlices((x) => {
    const ct = ctr.update(x);
    mac.update(ct);
    return ct;
  }, input, output, w, 'scryptEncryptInto', written);
  w = put(output, w, mac.digest(), 'scryptEncryptInto');
  written?.(w);
  return w;
}

/** Read the parameters of a scrypt file header, or a failure when it is not one (no passphrase needed). */
export function readScryptHeader(input: Uint8Array): (ScryptParams & { salt: Uint8Array }) | TaskFailure {
  if (input.length < 7 || !MAGIC.equals(input.subarray(0, 6))) return failure('bad-format', 'not a scrypt file (bad magic)');
  if (input[6] !== 0) return failure('bad-format', `unsupported scrypt file version ${input[6]}`);
  if (input.length < SCRYPT_OVERHEAD_BYTES) return failure('bad-format', `scrypt file truncated: ${input.length} bytes < ${SCRYPT_OVERHEAD_BYTES}`);
  const sum = createHash('sha256').update(input.subarray(0, 48)).digest();
  if (!timingSafeEqual(sum.subarray(0, 16), input.subarray(48, 64))) return failure('bad-format', 'scrypt header checksum mismatch (corrupted header)');
  const view = new DataView(input.buffer, input.byteOffset, 16);
  return { logN: input[7] ?? 0, r: view.getUint32(8), p: view.getUint32(12), salt: copyOf(input, 16, 48) };
}

/** Verify and decrypt a scrypt file into `output` (capacity >= input - 128; disjoint, or the same memory
 *  starting no later than 96 bytes after the input). Parameters over `opts` are refused without
 *  deriving; the header MAC (passphrase) is checked before the body is touched; on a body MAC
 *  mismatch the output is zeroed. `derived`: the key already derived for this passphrase, salt and
 *  parameters (skips the KDF; a key for another salt or other parameters is a caller's bug: thrown). */
export function scryptDecryptInto(passphrase: Uint8Array, input: Uint8Array, output: Uint8Array, opts: ScryptLimits, derived?: DerivedScryptKey): ScryptDecryptOk | TaskFailure {
  const h = readScryptHeader(input);
  if ('ok' in h) return h;
  const params: ScryptParams = { logN: h.logN, r: h.r, p: h.p };
  const bad = checkScryptParams(params);
  if (bad) return failure('bad-params', bad);
  // the parameters are not authenticated yet: refuse what costs too much BEFORE deriving
  const over = scryptOverLimits(params, opts);
  if (over) return failure('too-large', over);
  const bodyLen = input.length - SCRYPT_OVERHEAD_BYTES;
  if (output.length < bodyLen) throw new RangeError(`scryptDecryptInto: output capacity ${output.length} < ${bodyLen}`);
  assertSafeOverlap(input.subarray(SCRYPT_HEADER_BYTES), output, 0, 'scryptDecryptInto');
  let dk: Buffer;
  if (derived !== undefined) {
    const same = derived.key.length === 64 && Buffer.from(derived.salt).equals(h.salt) && derived.logN === h.logN && derived.r === h.r && derived.p === h.p;
    if (!same) throw new Error('scryptDecryptInto: the key given was derived for another salt or other parameters');
    dk = Buffer.from(derived.key);
    derived.key.fill(0);
  } else {
    try {
      dk = scryptDeriveKey(passphrase, h.salt, { ...params, ...(opts.keepKdfMemory ? { keepKdfMemory: true } : {}) });
    } catch (e) {
      return failure('bad-params', `scrypt KDF refused the parameters: ${(e as Error).message}`);
    }
  }
  const headerMac = hmacSha256(dk.subarray(32)).update(input.subarray(0, 64)).digest();
  if (!timingSafeEqual(headerMac, input.subarray(64, 96))) return failure('mac-mismatch', 'scrypt header MAC mismatch: wrong passphrase (or corrupted header)');
  const trailer = copyOf(input, SCRYPT_HEADER_BYTES + bodyLen);
  const mac = hmacSha256(dk.subarray(32)).update(input.subarray(0, SCRYPT_HEADER_BYTES));
  const ctr = createCipheriv('aes-256-ctr', dk.subarray(0, 32), ZERO_NONCE);
  const body = input.subarray(SCRYPT_HEADER_BYTES, SCRYPT_HEADER_BYTES + bodyLen);
  const n = pumpSlices((x) => {
    mac.update(x);
    return ctr.update(x);
  }, body, output, 0, 'scryptDecryptInto');
  dk.fill(0);
  if (!timingSafeEqual(mac.digest(), trailer)) {
    output.fill(0, 0, n);
    return failure('mac-mismatch', 'scrypt file MAC mismatch: the data was modified or truncated');
  }
  return { ok: true, length: n, ...params };
}
