// Expected codec failures (bad data, wrong passphrase, unsupported parameters) as a typed error
// the worker entry turns into a `TaskFailure` value; anything else thrown is a bug.
import type { FailReason, TaskFailure } from './task-types.js';

/** An expected, data-dependent failure of a codec; carries the `FailReason` reported to the main thread. */
export class CodecError extends Error {
  readonly reason: FailReason;
  constructor(reason: FailReason, message: string) {
    super(message);
    this.reason = reason;
  }
}
Object.defineProperty(CodecError.prototype, 'name', { value: 'CodecError', enumerable: false });

/** Build a failure value. */
export function failure(reason: FailReason, message: string): TaskFailure {
  return { ok: false, reason, message };
}

/** Convert a thrown CodecError into a failure value; rethrow anything else. */
export function failureFrom(e: unknown): TaskFailure {
  if (e instanceof CodecError) return failure(e.reason, e.message);
  throw e;
}

/** Slice size for feeding crypto and copying (LIMITS §0: 64 KiB-1 MiB slices into reused memory).
 *  64 KiB: below glibc's mmap threshold (128 KiB), so each cipher output comes from malloc's heap,
 *  whose memory is reused once young-gc.ts collected the previous slices; a larger slice is mapped
 *  fresh and unmapped on every call (measured: 2-4x slower decryption in a worker). */
export const SLICE_BYTES = 64 * 1024;
