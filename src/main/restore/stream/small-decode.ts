// Decoding of the small authenticated pieces of the archive head (header copy, qubes.xml chunk):
// scrypt files through the worker pool, openssl/zlib/filters on the main thread (≤ ~1 MiB).
import { gunzipSync, inflateSync } from 'node:zlib';
import { QvmBackupError, fail, isQvmBackupError } from '../../errors.js';
import type { WorkerPool } from '../../pipeline/worker-pool.js';
import { CodecError } from '../../../workers/codec-error.js';
import { runFilterSync } from '../../io/filter-program.js';
import { opensslDecryptFile } from '../../../workers/openssl-enc.js';
import type { ScryptDecryptResult, TaskFailure } from '../../../workers/task-types.js';
import { readScryptHeader, scryptDecryptInto } from '../../../workers/scrypt-file.js';
import type { InnerFilter } from './filters.js';
import { zstdDecompressSmall } from './inner-decoder.js';
import type { KdfBudget } from './kdf-budget.js';

/** Decrypt a small scrypt file in the pool; returns the plaintext copy or the failure value. Its
 *  parameters are checked against `kdf` first (throws ERR_TOO_LARGE without deriving). */
export async function scryptDecryptSmall(
  pool: WorkerPool,
  passphrase: string,
  data: Uint8Array,
  kdf: KdfBudget,
  what: string,
  signal?: AbortSignal,
): Promise<{ ok: true; data: Buffer } | TaskFailure> {
  const cost = kdf.check(data, what, { file: what });
  const cap = Math.max(0, data.length - 128);
  const sab = new SharedArrayBuffer(data.length + cap + 1);
  new Uint8Array(sab, 0, data.length).set(data);
  const opts = signal ? { signal } : {};
  const task = { passphrase, input: { sab, offset: 0, length: data.length }, output: { sab, offset: data.length, length: cap + 1 }, ...kdf.limits };
  const r = await kdf.run(
    cost,
    async (memory) => (await decryptWhileLoading(pool, passphrase, sab, data.length, cap + 1, kdf, signal)) ?? pool.run('scryptDecrypt', { ...task, ...memory }, opts),
    signal,
  );
  if (!r.ok) return r;
  return { ok: true, data: Buffer.from(new Uint8Array(sab, data.length, r.length)) };
}

/** scryptDecrypt's work on this thread, its key by WorkerPool.deriveWhileLoading (the workers
 *  are not loaded yet); null when that does not derive it. The file is small (a header, qubes.xml). */
async function decryptWhileLoading(pool: WorkerPool, passphrase: string, sab: SharedArrayBuffer, length: number, capacity: number, kdf: KdfBudget, signal?: AbortSignal): Promise<ScryptDecryptResult | null> {
  const input = new Uint8Array(sab, 0, length);
  const h = readScryptHeader(input);
  if ('ok' in h) return null; // the worker reports the format error
  const pw = Buffer.from(passphrase, 'utf8');
  const derived = await pool.deriveWhileLoading(pw, h.salt, h);
  if (derived === null) return null;
  if (signal?.aborted) {
    derived.key.fill(0);
    throw new QvmBackupError('ERR_CANCELLED', 'scryptDecrypt cancelled', {}, signal.reason);
  }
  return scryptDecryptInto(pw, input, new Uint8Array(sab, length, capacity), kdf.limits, derived);
}

/** Turn a worker failure into the error of a chunk (`ERR_CHUNK_AUTH` for MAC problems). */
export function taskFailureError(f: TaskFailure, what: string, context: Record<string, unknown>): QvmBackupError {
  switch (f.reason) {
    case 'mac-mismatch':
    case 'bad-padding':
      return new QvmBackupError('ERR_CHUNK_AUTH', `${what}: authentication failed (${f.message})`, context);
    case 'too-large':
      return new QvmBackupError('ERR_TOO_LARGE', `${what}: ${f.message}`, context);
    case 'bad-params':
      return new QvmBackupError('ERR_UNSUPPORTED', `${what}: ${f.message}`, context);
    default:
      return new QvmBackupError('ERR_CORRUPT', `${what}: ${f.message}`, context);
  }
}

/** Decrypt a whole `openssl enc` file on the main thread (small data only). */
export function opensslDecryptSmall(cipher: string, passphrase: string, data: Uint8Array, what: string): Buffer {
  let r: Uint8Array | TaskFailure;
  try {
    r = opensslDecryptFile(cipher, Buffer.from(passphrase, 'utf8'), data);
  } catch (e) {
    throw codecToQvm(e, what);
  }
  if ('ok' in r) throw taskFailureError(r, what, { file: what });
  return Buffer.from(r);
}

/** Decompress a small buffer with the inner filter; the output is capped at `maxBytes`. */
export function decompressSmall(filter: InnerFilter | 'zlib', data: Uint8Array, maxBytes: number, what: string): Buffer {
  try {
    if (filter === 'zlib') return inflateSync(data, { maxOutputLength: maxBytes });
    if (filter.kind === 'none') return Buffer.from(data);
    if (filter.kind === 'gunzip') return gunzipSync(data, { maxOutputLength: maxBytes });
    if (filter.kind === 'zstd') return zstdDecompressSmall(data, maxBytes);
    return runFilterSync(filter.program, 'decompress', data, maxBytes);
  } catch (e) {
    if (isQvmBackupError(e)) throw e;
    if (e instanceof RangeError || (e as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') {
      fail('ERR_TOO_LARGE', `${what}: decompressed data over ${maxBytes} bytes`, { file: what }, e);
    }
    throw codecToQvm(e, what);
  }
}

function codecToQvm(e: unknown, what: string): QvmBackupError {
  if (isQvmBackupError(e)) return e;
  if (e instanceof CodecError) return taskFailureError({ ok: false, reason: e.reason, message: e.message }, what, { file: what });
  const msg = e instanceof Error ? e.message : String(e);
  return new QvmBackupError('ERR_CORRUPT', `${what}: ${msg}`, { file: what }, e);
}
