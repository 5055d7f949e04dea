// Flushes a file we are writing while we go on writing it: a file that is fsynced at its end (the
// backup archive before its rename, a restored image before it is installed) would otherwise have
// all its disk writes start at that fsync — the kernel holds fresh dirty pages ~30 s — and add
// them to the run's wall time. One fdatasync in flight at a time, started every `every` bytes
// written (and at once when the one before ends with that much written meanwhile: a disk slower
// than our writes stays busy), overlaps the disk writes with the CPU work; the final fsync then has
// only the tail.
// A failed flush (EIO, or ENOSPC from delayed allocation) is kept and reported at the next write.
// When the file's length is known (a restored image: its data runs), the last `every` bytes are
// flushed in FLUSH_EVERY_NEAR_END steps, so that the final fsync (which nothing overlaps: it is
// the tail of the run) waits for a few MiB instead of up to 64 (restore of the bench image: its
// install 13-22 ms instead of 48-67 ms, ~0.13 core-s less idle on two cores).

/** What is flushed: an open file (a `FileHandle` is one). */
export interface Flushable {
  datasync(): Promise<void>;
}

/** Bytes written between two background flushes. */
export const FLUSH_EVERY = 64 * 1024 * 1024;
/** ... over the last `every` bytes of a file whose length is known. */
export const FLUSH_EVERY_NEAR_END = 8 * 1024 * 1024;

export class BackgroundFlush {
  #unflushed = 0;
  /** bytes still to come, when the caller said how many it will write */
  #remaining = Number.POSITIVE_INFINITY;
  #inFlight: Promise<void> | null = null;
  #error: unknown = undefined;
  #hasError = false;

  /** `expectedBytes`: how many bytes will be written in all, when known (a hint: only the flushes'
   *  timing depends on it). */
  constructor(
    private readonly fh: Flushable,
    private readonly every = FLUSH_EVERY,
    expectedBytes?: number,
    /** called after each flush that succeeded (drop-behind.ts hands the flushed pages back) */
    private readonly onFlushed?: () => void,
  ) {
    // 0 would chain flushes with nothing written, for ever
    if (!Number.isInteger(every) || every <= 0) throw new RangeError(`every must be a positive integer, got ${every}`);
    if (expectedBytes !== undefined) this.#remaining = expectedBytes;
  }

  /** Count `n` bytes just written; start a flush when due; throws a flush's error if one failed. */
  wrote(n: number): void {
    this.#unflushed += n;
    this.#remaining -= n;
    const due = this.#remaining < this.every ? Math.min(this.every, FLUSH_EVERY_NEAR_END) : this.every;
    if (this.#unflushed >= due) this.#start();
    this.check();
  }

  /** Starts a flush unless one is in flight or one failed. When it ends and at least
   *  `min(every, FLUSH_EVERY_NEAR_END)` bytes were written meanwhile, the next starts at once: a
   *  disk slower than our writes is kept busy with them, and what is left for the final fsync is
   *  only what it could not take (the bench image's restore: ~100 MiB were left when the next flush
   *  waited for a write to start it). */
  #start(): void {
    if (this.#inFlight !== null || this.#hasError) return;
    this.#unflushed = 0;
    this.#inFlight = this.fh.datasync().then(
      () => {
        this.#inFlight = null;
        try {
          this.onFlushed?.();
        } catch {
          // what it does is an optimisation (dropping flushed pages): it never fails the file
        }
        if (this.#unflushed >= Math.min(this.every, FLUSH_EVERY_NEAR_END)) this.#start();
      },
      (e: unknown) => {
        this.#inFlight = null;
        if (!this.#hasError) [this.#error, this.#hasError] = [e, true];
      },
    );
  }

  /** Throws the first flush error, if any. */
  check(): void {
    if (this.#hasError) throw this.#error;
  }

  /** Waits for the flush in flight (the handle must not be closed under it); then as check(). */
  async settle(): Promise<void> {
    await this.#drain();
    this.check();
  }

  /** Waits for the flush in flight, ignoring its outcome (before closing on a failure path). */
  async quiesce(): Promise<void> {
    await this.#drain();
  }

  /** Until no flush is in flight: one that ends may have started the next. */
  async #drain(): Promise<void> {
    while (this.#inFlight !== null) await this.#inFlight;
  }
}
