// The piscina worker module: one named export per task of `TaskMap` (selected by the `name` run
// option). Each adapts a task to the pure codecs, working on views of the shared slots (no copies);
// expected failures come back as `{ ok: false }` values, anything else is thrown (a bug).
import { CodecError, failure, failureFrom } from './codec-error.js';
import { compressBlockInto, gunzipInto, gunzipMemberInto, inflateInto, unzstdFrameInto } from './compress.js';
import { computeHmacHex, hexEqual, nodeDigestName } from './hmac.js';
import { decryptPiece, encryptPiece, opensslDecryptFile, opensslEncryptFile } from './openssl-enc.js';
import { checkScryptParams, scryptDecryptInto, scryptDeriveKey, scryptEncryptInto } from './scrypt-file.js';
import { dropKeptMemory } from './scrypt-romix.js';
import type {
  CipherPieceResult,
  CipherPieceTask,
  CompressBlockResult,
  CompressBlockTask,
  DropKdfMemoryResult,
  DropKdfMemoryTask,
  GunzipMemberResult,
  GunzipMemberTask,
  HmacResult,
  HmacTask,
  OpensslOpenResult,
  OpensslOpenTask,
  OpensslSealResult,
  OpensslSealTask,
  ScryptDecryptResult,
  ScryptDecryptTask,
  ScryptDeriveResult,
  ScryptDeriveTask,
  ScryptEncryptResult,
  ScryptEncryptTask,
  SharedSlice,
  TaskFailure,
  UnzstdFrameResult,
  UnzstdFrameTask,
} from './task-types.js';

/** A view of a shared slice (no copy). */
export function view(s: SharedSlice): Uint8Array {
  return new Uint8Array(s.sab, s.offset, s.length);
}

function utf8(s: string): Buffer {
  return Buffer.from(s, 'utf8');
}

/** HMAC hex of `data`, or throws CodecError('bad-params') for an unknown digest. */
function hmacOf(h: { algorithm: string; key: Uint8Array }, data: Uint8Array): string {
  if (nodeDigestName(h.algorithm) === null) throw new CodecError('bad-params', `unsupported HMAC digest: ${h.algorithm}`);
  return computeHmacHex(h.algorithm, h.key, data);
}

/** Check `expectHmacHex` over `data` when both an HMAC and an expectation are given. */
function verifyHmac(h: { algorithm: string; key: Uint8Array } | undefined, expect: string | undefined, data: Uint8Array): TaskFailure | null {
  if (expect === undefined) return null;
  if (h === undefined) throw new RangeError('expectHmacHex given without hmac algorithm and key');
  return hexEqual(hmacOf(h, data), expect) ? null : failure('mac-mismatch', `${h.algorithm} HMAC mismatch: wrong passphrase or corrupted chunk`);
}

/** Compress one block into one complete gzip member or zstd frame. */
export function compressBlock(task: CompressBlockTask): CompressBlockResult {
  try {
    const codec = task.codec ?? 'gzip';
    const n = compressBlockInto(codec, view(task.input), view(task.output), task.level);
    if (n === 'too-large') return failure('too-large', `${codec} output does not fit in ${task.output.length} bytes`);
    return { ok: true, length: n };
  } catch (e) {
    return failureFrom(e);
  }
}
export default compressBlock;

/** Decompress one gzip member of a restore's inner stream (exact bytes, exact output size). */
export function gunzipMember(task: GunzipMemberTask): GunzipMemberResult {
  try {
    return { ok: true, length: gunzipMemberInto(view(task.input), view(task.output)) };
  } catch (e) {
    return failureFrom(e);
  }
}

/** Decompress one zstd frame of a restore's inner stream (exact bytes, exact output size). */
export function unzstdFrame(task: UnzstdFrameTask): UnzstdFrameResult {
  try {
    return { ok: true, length: unzstdFrameInto(view(task.input), view(task.output)) };
  } catch (e) {
    return failureFrom(e);
  }
}

/** Encrypt a chunk into a scrypt file (v4). */
export function scryptEncrypt(task: ScryptEncryptTask): ScryptEncryptResult {
  const bad = checkScryptParams(task);
  if (bad) return failure('bad-params', bad);
  const p = task.progress;
  try {
    const length = scryptEncryptInto(utf8(task.passphrase), task, view(task.input), view(task.output), task.derived?.salt, task.derived?.key, p && progressNotifier(p));
    return { ok: true, length };
  } finally {
    if (p) Atomics.notify(p, 0); // the end, however it came: nobody waits for a word that no longer moves
  }
}

/** How far a task's output has come between two wake-ups of its reader (ScryptEncryptTask.progress). */
const PROGRESS_NOTIFY_BYTES = 4 * 1024 * 1024;

/** Stores each position in `p[0]`; wakes its waiters every PROGRESS_NOTIFY_BYTES. */
function progressNotifier(p: Int32Array): (bytes: number) => void {
  let told = 0;
  return (bytes) => {
    Atomics.store(p, 0, bytes);
    if (bytes - told >= PROGRESS_NOTIFY_BYTES) {
      told = bytes;
      Atomics.notify(p, 0);
    }
  };
}

/** Derive the 64-byte scrypt key for a chunk ahead of its encryption. */
export function scryptDerive(task: ScryptDeriveTask): ScryptDeriveResult {
  const bad = checkScryptParams(task);
  if (bad) return failure('bad-params', bad);
  if (task.salt.length !== 32) return failure('bad-params', 'scrypt salt must be 32 bytes');
  return { ok: true, key: new Uint8Array(scryptDeriveKey(utf8(task.passphrase), task.salt, task)) };
}

/** Verify and decrypt a scrypt file (v4). */
export function scryptDecrypt(task: ScryptDecryptTask): ScryptDecryptResult {
  return scryptDecryptInto(utf8(task.passphrase), view(task.input), view(task.output), task, task.derived);
}

/** Encrypt or decrypt one chained piece of a v3 `openssl enc` stream, with optional HMAC. */
export function cipherPiece(task: CipherPieceTask): CipherPieceResult {
  try {
    const input = view(task.input);
    const output = view(task.output);
    if (task.mode === 'encrypt') {
      const r = encryptPiece(task.cipher, task.key, task.iv, input, output, task.final);
      const hmacHex = task.hmac ? hmacOf(task.hmac, output.subarray(0, r.length)) : undefined;
      return hmacHex === undefined ? r : { ...r, hmacHex };
    }
    const bad = verifyHmac(task.hmac, task.expectHmacHex, input);
    if (bad) return bad;
    const hmacHex = task.hmac && task.expectHmacHex === undefined ? hmacOf(task.hmac, input) : undefined;
    const r = decryptPiece(task.cipher, task.key, task.iv, input, output, task.final);
    return hmacHex === undefined || !r.ok ? r : { ...r, hmacHex };
  } catch (e) {
    return failureFrom(e);
  }
}

/** Encrypt a whole chunk into an `openssl enc` file (v2), with optional HMAC of the file. */
export function opensslSeal(task: OpensslSealTask): OpensslSealResult {
  try {
    const file = opensslEncryptFile(task.cipher, utf8(task.passphrase), view(task.input), view(task.output));
    if (!task.hmac) return { ok: true, length: file.length };
    return { ok: true, length: file.length, hmacHex: hmacOf(task.hmac, file) };
  } catch (e) {
    return failureFrom(e);
  }
}

/** HMAC-verify, decompress and/or decrypt one v2 chunk.
 *  - `zlib` (R2-beta3 `openssl enc -e -z`): openssl's zlib BIO sits *below* the cipher BIO, so the file
 *    is zlib(`Salted__` ‖ salt ‖ ciphertext): it is inflated into `output` first, then decrypted there
 *    in place (output capacity: plaintext + 16 + one cipher block).
 *  - `gzip`: with a cipher (never written by Qubes) the input slice is decrypted in place as scratch,
 *    then gunzipped into `output`; without one it is gunzipped directly. */
export function opensslOpen(task: OpensslOpenTask): OpensslOpenResult {
  try {
    const input = view(task.input);
    const output = view(task.output);
    const bad = verifyHmac(task.hmac, task.expectHmacHex, input);
    if (bad) return bad;
    const pw = utf8(task.passphrase);
    if (task.decompress === 'zlib') {
      const n = inflateInto(input, output);
      if (n === 'too-large') return failure('too-large', `inflated chunk does not fit in ${output.length} bytes`);
      if (task.cipher === null) return { ok: true, length: n };
      const r = opensslDecryptFile(task.cipher, pw, output.subarray(0, n), output);
      return 'ok' in r ? r : { ok: true, length: r.length };
    }
    let plain = input;
    if (task.cipher !== null) {
      const r = opensslDecryptFile(task.cipher, pw, input, task.decompress === 'none' ? output : input);
      if ('ok' in r) return r;
      plain = r;
    }
    if (task.decompress === 'gzip') {
      const n = gunzipInto(plain, output);
      if (n === 'too-large') return failure('too-large', `decompressed chunk does not fit in ${output.length} bytes`);
      return { ok: true, length: n };
    }
    if (!(plain.buffer === output.buffer && plain.byteOffset === output.byteOffset)) {
      if (plain.length > output.length) return failure('too-large', `chunk of ${plain.length} bytes does not fit in ${output.length}`);
      output.set(plain);
    }
    return { ok: true, length: plain.length };
  } catch (e) {
    return failureFrom(e);
  }
}

/** HMAC of a slice (hex). */
export function hmacSlice(task: HmacTask): HmacResult {
  try {
    return { ok: true, hex: hmacOf(task, view(task.input)) };
  } catch (e) {
    return failureFrom(e);
  }
}

/** Release this worker's kept scrypt memory, then wait at the barrier (DropKdfMemoryTask). */
export function dropKdfMemory(task: DropKdfMemoryTask): DropKdfMemoryResult {
  dropKeptMemory();
  const b = task.barrier;
  Atomics.add(b, 0, 1);
  Atomics.notify(b, 0);
  const end = performance.now() + task.timeoutMs;
  for (;;) {
    const arrived = Atomics.load(b, 0);
    if (arrived >= task.workers || Atomics.load(b, 1) !== 0) return { ok: true, all: arrived >= task.workers };
    const left = end - performance.now();
    if (left <= 0) return { ok: true, all: false };
    Atomics.wait(b, 0, arrived, left);
  }
}
