// "The first error wins" for a run with many concurrent parts: the first real failure is the
// reported cause; the cancellations it triggers in the other parts (aborted worker tasks, killed
// programs, cancelled slot waits, a discarded output) are consequences and never replace it.
import { isQvmBackupError } from '../errors.js';

/** A consequence of stopping, not a cause: ERR_CANCELLED, an AbortError, or `reason` itself. */
export function isCancellation(e: unknown, reason?: unknown): boolean {
  if (reason !== undefined && e === reason) return true;
  if (isQvmBackupError(e)) return e.code === 'ERR_CANCELLED';
  return e instanceof Error && e.name === 'AbortError';
}

/** Records the errors of one run; `cause` is the first real one (else the first cancellation). */
export class FirstFailure {
  readonly #userSignal: AbortSignal | undefined;
  #first: { e: unknown } | undefined;
  #firstCancel: { e: unknown } | undefined;

  /** `userSignal`: the user's interrupt; its reason is a cancellation too. */
  constructor(userSignal?: AbortSignal) {
    this.#userSignal = userSignal;
  }

  record(e: unknown): void {
    if (isCancellation(e, this.#userSignal?.reason)) this.#firstCancel ??= { e };
    else this.#first ??= { e };
  }

  /** Whether a real (non-cancellation) failure was recorded. */
  get failed(): boolean {
    return this.#first !== undefined;
  }

  /** The first real failure, else the first cancellation, else undefined. */
  get cause(): unknown {
    return (this.#first ?? this.#firstCancel)?.e;
  }
}
