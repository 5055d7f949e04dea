// A bounded set of SharedArrayBuffer slots, each allocated the first time it is needed and then
// reused for every later chunk (LIMITS §0: fresh memory costs ~340 MB/s in page faults, reused
// memory is ~60× faster). Slots are created lazily, so a small backup never pays for slots it does
// not use. `acquire` blocks FIFO when all are busy: the pipeline's backpressure.
import { promises as fsp } from 'node:fs';
import { QvmBackupError } from '../errors.js';
import type { SharedSlice } from '../../workers/task-types.js';

const PAGE = 4096;
/** warmNext's reads of /dev/zero: an acquire waits for at most one of them */
const WARM_PIECE = 4 * 1024 * 1024;

/** One reusable slot. A chunk's slot is released only after its bytes were written to the
 *  destination (outer archive, fifo or file): the owner that finishes with it releases it. */
export interface Slot {
  index: number;
  sab: SharedArrayBuffer;
  /** view of the whole slot */
  bytes: Uint8Array;
  /** a range of this slot to hand to a worker task */
  slice(offset: number, length: number): SharedSlice;
}

export interface SlotPoolOptions {
  /** bytes per slot */
  slotBytes: number;
  /** number of slots (= chunks in flight) */
  slots: number;
  /** for messages */
  name?: string;
  /** fault every page in when a slot is created (default false: the first write does it anyway) */
  preTouch?: boolean;
  /** what warmNext reads from (tests); default /dev/zero */
  warmSource?: () => Promise<WarmSource>;
}

/** A source of bytes that warmNext reads into a slot to fault its pages in. */
export interface WarmSource {
  read(into: Uint8Array, offset: number, length: number): Promise<unknown>;
  close(): Promise<void>;
}

async function devZero(): Promise<WarmSource> {
  const fh = await fsp.open('/dev/zero', 'r');
  return { read: (into, offset, length) => fh.read(into, offset, length, null), close: () => fh.close() };
}

interface Waiter {
  resolve: (slot: Slot) => void;
  reject: (e: unknown) => void;
  signal: AbortSignal | undefined;
  onAbort: () => void;
}

function makeSlot(index: number, slotBytes: number, preTouch: boolean): Slot {
  const sab = new SharedArrayBuffer(slotBytes);
  const bytes = new Uint8Array(sab);
  if (preTouch) {
    for (let i = 0; i < slotBytes; i += PAGE) bytes[i] = 0; // fault every page in now
    if (slotBytes > 0) bytes[slotBytes - 1] = 0;
  }
  return {
    index,
    sab,
    bytes,
    slice(offset: number, length: number): SharedSlice {
      if (!Number.isInteger(offset) || !Number.isInteger(length) || offset < 0 || length < 0 || offset + length > slotBytes) {
        throw new RangeError(`slot slice ${offset}+${length} outside slot of ${slotBytes} bytes`);
      }
      return { sab, offset, length };
    },
  };
}

/** Pool of shared memory slots, each allocated on first use (pre-touched only with `preTouch`),
 *  with FIFO blocking acquire. */
export class SlotPool {
  readonly slotBytes: number;
  readonly size: number;
  readonly name: string;
  readonly #slots: Slot[] = [];
  readonly #free: number[] = [];
  readonly #busy: boolean[] = [];
  readonly #preTouch: boolean;
  readonly #warmSource: () => Promise<WarmSource>;
  readonly #waiters: Waiter[] = [];
  /** slots whose pages warmNext is faulting in: `stop` ends it after the read in flight, `done`
   *  resolves when no read writes into the slot any more */
  readonly #warming = new Map<number, { stop: () => void; done: Promise<void> }>();

  constructor(opts: SlotPoolOptions) {
    if (!Number.isInteger(opts.slotBytes) || opts.slotBytes <= 0) throw new RangeError(`slotBytes must be a positive integer, got ${opts.slotBytes}`);
    if (!Number.isInteger(opts.slots) || opts.slots <= 0) throw new RangeError(`slots must be a positive integer, got ${opts.slots}`);
    this.slotBytes = opts.slotBytes;
    this.size = opts.slots;
    this.name = opts.name ?? 'slots';
    this.#preTouch = opts.preTouch ?? false;
    this.#warmSource = opts.warmSource ?? devZero;
  }

  /** Slots allocated so far (≤ size). */
  created(): number {
    return this.#slots.length;
  }

  /** Number of slots currently acquired. */
  inUse(): number {
    return this.#slots.length - this.#free.length;
  }

  /** Number of callers blocked in `acquire`. */
  waiting(): number {
    return this.#waiters.length;
  }

  /** Get a free slot; waits (first come, first served) while all are in use; rejects with
   *  ERR_CANCELLED when `signal` aborts before a slot was handed over. */
  acquire(signal?: AbortSignal): Promise<Slot> {
    if (signal?.aborted) return Promise.reject(this.#cancelled(signal));
    if (this.#waiters.length === 0) {
      let i = this.#free.pop();
      if (i === undefined && this.#slots.length < this.size) {
        i = this.#slots.length;
        this.#slots.push(makeSlot(i, this.slotBytes, this.#preTouch));
        this.#busy.push(false);
      }
      if (i !== undefined) {
        this.#busy[i] = true;
        const slot = this.#slots[i] as Slot;
        const warm = this.#warming.get(i);
        if (warm === undefined) return Promise.resolve(slot);
        warm.stop(); // its pages not faulted in yet are the new user's to fault
        return warm.done.then(() => slot);
      }
    }
    return new Promise<Slot>((resolve, reject) => {
      const waiter: Waiter = {
        resolve,
        reject,
        signal,
        onAbort: () => {
          const at = this.#waiters.indexOf(waiter);
          if (at >= 0) this.#waiters.splice(at, 1);
          reject(this.#cancelled(signal));
        },
      };
      signal?.addEventListener('abort', waiter.onAbort, { once: true });
      this.#waiters.push(waiter);
    });
  }

  /**
   * Create the next slot now, if one is still to be created, and fault its pages in on libuv's
   * thread pool (reads of /dev/zero into it, WARM_PIECE at a time): its first user then does not
   * take the page faults itself (fresh memory: LIMITS §0; a restore's second chunk was read in
   * ~150 ms into a fresh slot against ~20 ms into a used one, with a worker idle until it was).
   * The slot is free meanwhile, handed out after the slots already used; an acquire that gets it
   * stops the faulting and waits for the read in flight to end (one WARM_PIECE, a few ms; a stop
   * signal is not heard during that wait), so no read of ours ever writes into a slot that was
   * handed out. Best effort: a failed read only ends it. Nothing is made while a slot is free or
   * one is being made ready already: a restore whose chunks go through one or two slots (a slow
   * source) never faults in the rest of the pool.
   */
  warmNext(): void {
    if (this.#slots.length >= this.size || this.#free.length > 0 || this.#warming.size > 0) return;
    const i = this.#slots.length;
    const slot = makeSlot(i, this.slotBytes, false);
    this.#slots.push(slot);
    this.#busy.push(false);
    this.#free.unshift(i); // acquire pops from the end: slots already used go first
    let stopped = false;
    // begun on the next microtask, so the entry below is there before the finally that removes it,
    // even when the source throws at once
    const done = Promise.resolve().then(async (): Promise<void> => {
      let src: WarmSource | undefined;
      try {
        src = await this.#warmSource();
        for (let off = 0; off < slot.bytes.length && !stopped; off += WARM_PIECE) {
          await src.read(slot.bytes, off, Math.min(WARM_PIECE, slot.bytes.length - off));
        }
      } catch {
        // no /dev/zero, or no memory to fault in: the first user faults its pages as it would have
      } finally {
        this.#warming.delete(i);
        await src?.close().catch(() => undefined);
      }
    });
    this.#warming.set(i, { stop: () => (stopped = true), done });
  }

  /** Ends every warmNext after its read in flight (a run that needs no more slots). */
  stopWarming(): void {
    for (const w of this.#warming.values()) w.stop();
  }

  /** Return a slot; hands it straight to the longest waiter if any. Throws on a double release. */
  release(slot: Slot): void {
    const i = slot.index;
    if (this.#slots[i] !== slot) throw new QvmBackupError('ERR_INTERNAL', `${this.name}: slot ${i} does not belong to this pool`);
    if (!this.#busy[i]) throw new QvmBackupError('ERR_INTERNAL', `${this.name}: slot ${i} released twice`);
    const w = this.#waiters.shift();
    if (w) {
      w.signal?.removeEventListener('abort', w.onAbort);
      w.resolve(slot);
      return;
    }
    this.#busy[i] = false;
    this.#free.push(i);
  }

  #cancelled(signal: AbortSignal | undefined): QvmBackupError {
    return new QvmBackupError('ERR_CANCELLED', `${this.name}: waiting for a free slot was cancelled`, {}, signal?.reason);
  }
}
