// Flushes a file we are writing while we go on writing it: a file that is fsynced at its end (the
// backup archive before its rename, a restored image before it is installed) would otherwise have
// all its disk writes start at that fsync — the kernel holds fresh dirty pages ~30 s — and add
// them to the run's wall time. One fdatasync in flight at a time, started every `every` bytes
// written, overlaps the disk writes with the CPU work; the final fsync then has only the tail.
// A failed flush (EIO, or ENOSPC from delayed allocation) is kept and reported at the next write.

/** What is flushed: an open file (a `FileHandle` is one). */
export interface Flushable {
  datasync(): Promise<void>;
}

/** Bytes written between two background flushes. */
export const FLUSH_EVERY = 64 * 1024 * 1024;

export class BackgroundFlush {
  #unflushed = 0;
  #inFlight: Promise<void> | null = null;
  #error: unknown = undefined;
  #hasError = false;

  constructor(
    private readonly fh: Flushable,
    private readonly every = FLUSH_EVERY,
  ) {}

  /** Count `n` bytes just written; start a flush when due; throws a flush's error if one failed. */
  wrote(n: number): void {
    this.#unflushed += n;
    if (this.#unflushed >= this.every && this.#inFlight === null && !this.#hasError) {
      this.#unflushed = 0;
      this.#inFlight = this.fh.datasync().then(
        () => {
          this.#inFlight = null;
        },
        (e: unknown) => {
          this.#inFlight = null;
          if (!this.#hasError) [this.#error, this.#hasError] = [e, true];
        },
      );
    }
    this.check();
  }

  /** Throws the first flush error, if any. */
  check(): void {
    if (this.#hasError) throw this.#error;
  }

  /** Waits for the flush in flight (the handle must not be closed under it); then as check(). */
  async settle(): Promise<void> {
    await this.#inFlight;
    this.check();
  }

  /** Waits for the flush in flight, ignoring its outcome (before closing on a failure path). */
  async quiesce(): Promise<void> {
    await this.#inFlight;
  }
}
