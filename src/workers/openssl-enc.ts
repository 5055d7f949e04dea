// `openssl enc` compatibility (FORMAT §5.1): EVP_BytesToKey (MD5, one round), whole `Salted__`
// files (v2 chunks), and chained pieces of one continuous stream (v3). Pure functions that feed
// the cipher in slices and write into the caller's memory (in place allowed, see each function).
import { createCipheriv, createDecipheriv, createHash, getCipherInfo, randomBytes } from 'node:crypto';
import { assertSafeOverlap, copyOf, pumpSlices, put } from './buffers.js';
import { CodecError, failure } from './codec-error.js';
import type { TaskFailure } from './task-types.js';

/** Key, IV and block sizes of a cipher, as `openssl enc` uses them. */
export interface CipherParams {
  name: string;
  mode: string;
  keyLen: number;
  ivLen: number;
  blockSize: number;
}

/** Result of one chained piece. */
export interface PieceResult {
  ok: true;
  length: number;
  /** IV (or counter) that continues the stream in the next piece */
  nextIv: Uint8Array;
}

/** Size of the `Salted__` + 8-byte salt prefix. */
export const OPENSSL_HEADER_BYTES = 16;
const MAGIC = Buffer.from('Salted__', 'latin1');
/** Modes `openssl enc` accepts (it refuses AEAD, XTS and key-wrap modes). */
const ENC_MODES = new Set(['cbc', 'ecb', 'ctr', 'cfb', 'ofb', 'stream']);
/** Modes whose state at a piece boundary is known, so a stream can be cut into pieces. */
const PIECE_MODES = new Set(['cbc', 'ecb', 'ctr', 'cfb', 'ofb']);
const paramCache = new Map<string, CipherParams>();

/** Key and IV from a passphrase and salt, as OpenSSL's EVP_BytesToKey(MD5, count=1). */
export function evpBytesToKey(passphrase: Uint8Array, salt: Uint8Array, keyLen: number, ivLen: number): { key: Buffer; iv: Buffer } {
  const out = Buffer.alloc(keyLen + ivLen);
  let prev = Buffer.alloc(0);
  for (let off = 0; off < out.length; ) {
    prev = createHash('md5').update(prev).update(passphrase).update(salt).digest();
    off += prev.copy(out, off);
  }
  return { key: out.subarray(0, keyLen), iv: out.subarray(keyLen) };
}

/** Parameters of a cipher usable with `openssl enc`; throws CodecError('bad-params') for an unknown one. */
export function cipherParams(name: string): CipherParams {
  const lower = name.toLowerCase();
  const cached = paramCache.get(lower);
  if (cached) return cached;
  const info = getCipherInfo(lower);
  if (!info) throw new CodecError('bad-params', `unsupported cipher: ${name}`);
  if (!ENC_MODES.has(info.mode)) throw new CodecError('bad-params', `cipher ${name} (${info.mode} mode) cannot be used with openssl enc`);
  // OpenSSL's stitched TLS ciphers (aes-128-cbc-hmac-sha1, …) report plain cbc mode but work only
  // inside TLS records (`openssl enc` refuses them too): they fail at the first update
  if (/-hmac-/.test(lower)) throw new CodecError('bad-params', `cipher ${name} is a TLS-only composite cipher and cannot be used with openssl enc`);
  // an AEAD cipher whose mode node reports as a plain stream: `openssl enc` refuses it
  if (/poly1305/.test(lower)) throw new CodecError('bad-params', `cipher ${name} is an AEAD cipher and cannot be used with openssl enc`);
  const p: CipherParams = { name: lower, mode: info.mode, keyLen: info.keyLength, ivLen: info.ivLength ?? 0, blockSize: info.blockSize ?? 1 };
  try {
    createCipheriv(lower, Buffer.alloc(p.keyLen), p.ivLen > 0 ? Buffer.alloc(p.ivLen) : null);
  } catch (e) {
    throw new CodecError('bad-params', `cipher ${name} is not available in this OpenSSL: ${(e as Error).message}`);
  }
  paramCache.set(lower, p);
  return p;
}

/** Ciphertext length for `n` plaintext bytes (PKCS#7 padding for block modes). */
export function cipherTextLength(p: CipherParams, n: number): number {
  return p.blockSize > 1 ? (Math.floor(n / p.blockSize) + 1) * p.blockSize : n;
}

/** Size of the whole `openssl enc` file for `n` plaintext bytes. */
export function opensslEncryptedSize(cipher: string, n: number): number {
  return OPENSSL_HEADER_BYTES + cipherTextLength(cipherParams(cipher), n);
}

function ivArg(p: CipherParams, iv: Uint8Array): Uint8Array | null {
  if (p.ivLen === 0) return null;
  if (iv.length !== p.ivLen) throw new RangeError(`${p.name}: IV must be ${p.ivLen} bytes, got ${iv.length}`);
  return iv;
}

/** Encrypt `plaintext` into a whole `Salted__` file (into `out` if given: disjoint from the plaintext,
 *  or the same memory starting >= 16 bytes before it); returns the view of the file. */
export function opensslEncryptFile(cipher: string, passphrase: Uint8Array, plaintext: Uint8Array, out?: Uint8Array, salt?: Uint8Array): Uint8Array {
  const p = cipherParams(cipher);
  const s = salt ?? randomBytes(8);
  if (s.length !== 8) throw new RangeError('openssl enc salt must be 8 bytes');
  const total = OPENSSL_HEADER_BYTES + cipherTextLength(p, plaintext.length);
  const dst = out ?? new Uint8Array(total);
  if (dst.length < total) throw new RangeError(`opensslEncryptFile: output capacity ${dst.length} < ${total}`);
  assertSafeOverlap(plaintext, dst, OPENSSL_HEADER_BYTES, 'opensslEncryptFile');
  const { key, iv } = evpBytesToKey(passphrase, s, p.keyLen, p.ivLen);
  const c = createCipheriv(p.name, key, ivArg(p, iv));
  let w = put(dst, 0, MAGIC, 'opensslEncryptFile');
  w = put(dst, w, s, 'opensslEncryptFile');
  w = pumpSlices((x) => c.update(x), plaintext, dst, w, 'opensslEncryptFile');
  w = put(dst, w, c.final(), 'opensslEncryptFile');
  return dst.subarray(0, w);
}

/** Decrypt a whole `Salted__` file into `out` (disjoint, or the same memory starting no later than
 *  16 bytes after the file start); returns the plaintext view, or a failure value. */
export function opensslDecryptFile(cipher: string, passphrase: Uint8Array, data: Uint8Array, out?: Uint8Array): Uint8Array | TaskFailure {
  const p = cipherParams(cipher);
  if (data.length < OPENSSL_HEADER_BYTES || !MAGIC.equals(data.subarray(0, 8))) return failure('bad-format', 'not an openssl enc file (no Salted__ header)');
  const body = data.subarray(OPENSSL_HEADER_BYTES);
  if (p.blockSize > 1 && (body.length === 0 || body.length % p.blockSize !== 0)) {
    return failure('bad-format', `openssl enc ciphertext length ${body.length} is not a positive multiple of ${p.blockSize} (truncated?)`);
  }
  const dst = out ?? new Uint8Array(body.length);
  if (dst.length < body.length) throw new RangeError(`opensslDecryptFile: output capacity ${dst.length} < ${body.length}`);
  assertSafeOverlap(body, dst, 0, 'opensslDecryptFile');
  const { key, iv } = evpBytesToKey(passphrase, copyOf(data, 8, 16), p.keyLen, p.ivLen);
  const d = createDecipheriv(p.name, key, ivArg(p, iv));
  let w = pumpSlices((x) => d.update(x), body, dst, 0, 'opensslDecryptFile');
  try {
    w = put(dst, w, d.final(), 'opensslDecryptFile');
  } catch (e) {
    if (e instanceof RangeError) throw e;
    return failure('bad-padding', 'bad decrypt: wrong passphrase or corrupted chunk');
  }
  return dst.subarray(0, w);
}

/** Byte unit a non-final piece must be a multiple of, so that the stream state is a whole IV. */
function pieceUnit(p: CipherParams): number {
  if (!PIECE_MODES.has(p.mode)) {
    throw new CodecError('bad-params', `cipher ${p.name} (${p.mode} mode) cannot be split into chained pieces; use a CBC, ECB, CTR, CFB or OFB cipher`);
  }
  return p.mode === 'cbc' || p.mode === 'ecb' ? p.blockSize : p.ivLen;
}

/** Add `blocks` to a big-endian counter (CTR mode), wrapping at 2^(8*len). */
function addCounter(iv: Uint8Array, blocks: number): Uint8Array {
  const out = Uint8Array.from(iv);
  let carry = blocks;
  for (let i = out.length - 1; i >= 0 && carry > 0; i--) {
    const v = (out[i] ?? 0) + (carry % 256);
    out[i] = v & 0xff;
    carry = Math.floor(carry / 256) + (v >> 8);
  }
  return out;
}

function xor(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = (a[i] ?? 0) ^ (b[i] ?? 0);
  return out;
}

function nextIv(p: CipherParams, unit: number, iv: Uint8Array, lastCt: Uint8Array, lastPt: Uint8Array, inputLen: number): Uint8Array {
  if (inputLen === 0) return Uint8Array.from(iv);
  switch (p.mode) {
    case 'ecb':
      return new Uint8Array(0);
    case 'ctr':
      return addCounter(iv, Math.ceil(inputLen / unit));
    case 'ofb':
      return xor(lastCt, lastPt);
    default: // cbc, cfb: the last ciphertext block
      return Uint8Array.from(lastCt);
  }
}

function runPiece(dir: 'encrypt' | 'decrypt', cipher: string, key: Uint8Array, iv: Uint8Array, input: Uint8Array, output: Uint8Array, final: boolean): PieceResult {
  const p = cipherParams(cipher);
  const unit = pieceUnit(p);
  const what = `${dir}Piece(${p.name})`;
  if (!final && input.length % unit !== 0) {
    if (dir === 'decrypt') throw new CodecError('bad-format', `${what}: piece length ${input.length} is not a multiple of ${unit}`);
    throw new RangeError(`${what}: a non-final piece must be a multiple of ${unit} bytes, got ${input.length}`);
  }
  if (final && dir === 'decrypt' && p.blockSize > 1 && (input.length === 0 || input.length % p.blockSize !== 0)) {
    throw new CodecError('bad-format', `${what}: final piece length ${input.length} is not a positive multiple of ${p.blockSize} (truncated?)`);
  }
  assertSafeOverlap(input, output, 0, what);
  const lastIn = copyOf(input, Math.max(0, input.length - unit));
  const c = dir === 'encrypt' ? createCipheriv(p.name, key, ivArg(p, iv)) : createDecipheriv(p.name, key, ivArg(p, iv));
  c.setAutoPadding(final);
  let w = pumpSlices((x) => c.update(x), input, output, 0, what);
  try {
    w = put(output, w, c.final(), what);
  } catch (e) {
    if (e instanceof RangeError) throw e;
    throw new CodecError('bad-padding', `${what}: bad decrypt: wrong key or corrupted data`);
  }
  const lastOut = copyOf(output, Math.max(0, w - unit), w);
  const [lastCt, lastPt] = dir === 'encrypt' ? [lastOut, lastIn] : [lastIn, lastOut];
  return { ok: true, length: w, nextIv: nextIv(p, unit, iv, lastCt, lastPt, input.length) };
}

/** Encrypt one piece of a continuous `openssl enc` stream with a chained IV; PKCS#7 padding only when
 *  `final`. `output` may be the input memory (capacity +1 block on a final piece). */
export function encryptPiece(cipher: string, key: Uint8Array, iv: Uint8Array, input: Uint8Array, output: Uint8Array, final: boolean): PieceResult {
  return runPiece('encrypt', cipher, key, iv, input, output, final);
}

/** Decrypt one piece of a continuous `openssl enc` stream; checks and strips padding when `final`.
 *  `output` may be the input memory. Returns a failure value for bad padding or a misaligned piece. */
export function decryptPiece(cipher: string, key: Uint8Array, iv: Uint8Array, input: Uint8Array, output: Uint8Array, final: boolean): PieceResult | TaskFailure {
  try {
    return runPiece('decrypt', cipher, key, iv, input, output, final);
  } catch (e) {
    if (e instanceof CodecError && e.reason !== 'bad-params') return failure(e.reason, e.message);
    throw e;
  }
}
