// A small unbounded FIFO with an async iterator: producers push values (or an error), one consumer
// awaits them in order. Bounds come from the slot pools, not from this queue.

/** FIFO of values with `close()`/`fail()`; iterate with `for await`. */
export class AsyncQueue<T> implements AsyncIterable<T> {
  #items: T[] = [];
  #closed = false;
  #error: unknown = undefined;
  #failed = false;
  #wake: (() => void) | undefined;

  push(item: T): void {
    if (this.#closed) throw new Error('push after close');
    this.#items.push(item);
    this.#notify();
  }

  close(): void {
    this.#closed = true;
    this.#notify();
  }

  fail(err: unknown): void {
    if (this.#failed) return;
    this.#failed = true;
    this.#error = err;
    this.#closed = true;
    this.#notify();
  }

  /** Remove and return everything still queued (used to release resources after a failure). */
  drain(): T[] {
    return this.#items.splice(0);
  }

  get length(): number {
    return this.#items.length;
  }

  #notify(): void {
    const w = this.#wake;
    this.#wake = undefined;
    w?.();
  }

  /** Next item, or `done` when closed and drained; rejects once fail() was called. */
  async next(): Promise<IteratorResult<T, undefined>> {
    for (;;) {
      if (this.#failed) throw this.#error;
      const item = this.#items.shift();
      if (item !== undefined) return { value: item, done: false };
      if (this.#closed) return { value: undefined, done: true };
      await new Promise<void>((r) => (this.#wake = r));
    }
  }

  [Symbol.asyncIterator](): AsyncIterator<T, undefined> {
    return { next: () => this.next() };
  }
}

/** Counting semaphore; `acquire` waits FIFO and rejects when `signal` aborts. A waiter's abort
 *  listener is removed as soon as it gets its permit (one shared run signal sees thousands of waits). */
export class Semaphore {
  #free: number;
  #waiters: { resolve: () => void; reject: (e: unknown) => void }[] = [];
  constructor(permits: number) {
    this.#free = permits;
  }
  async acquire(signal?: AbortSignal): Promise<void> {
    signal?.throwIfAborted();
    if (this.#free > 0) {
      this.#free--;
      return;
    }
    await new Promise<void>((resolve, reject) => {
      const onAbort = (): void => {
        const i = this.#waiters.indexOf(w);
        if (i >= 0) this.#waiters.splice(i, 1);
        reject(signal?.reason);
      };
      const w = {
        resolve: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
        reject,
      };
      this.#waiters.push(w);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }
  release(): void {
    const w = this.#waiters.shift();
    if (w) w.resolve();
    else this.#free++;
  }
  /** Callers blocked in `acquire`. */
  get waiting(): number {
    return this.#waiters.length;
  }
}
