// A bounded set of SharedArrayBuffer slots, each allocated the first time it is needed and then
// reused for every later chunk (LIMITS §0: fresh memory costs ~340 MB/s in page faults, reused
// memory is ~60× faster). Slots are created lazily, so a small backup never pays for slots it does
// not use. `acquire` blocks FIFO when all are busy: the pipeline's backpressure.
import { QvmBackupError } from '../errors.js';
import type { SharedSlice } from '../../workers/task-types.js';

const PAGE = 4096;

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
  readonly #waiters: Waiter[] = [];

  constructor(opts: SlotPoolOptions) {
    if (!Number.isInteger(opts.slotBytes) || opts.slotBytes <= 0) throw new RangeError(`slotBytes must be a positive integer, got ${opts.slotBytes}`);
    if (!Number.isInteger(opts.slots) || opts.slots <= 0) throw new RangeError(`slots must be a positive integer, got ${opts.slots}`);
    this.slotBytes = opts.slotBytes;
    this.size = opts.slots;
    this.name = opts.name ?? 'slots';
    this.#preTouch = opts.preTouch ?? false;
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
        return Promise.resolve(this.#slots[i] as Slot);
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
