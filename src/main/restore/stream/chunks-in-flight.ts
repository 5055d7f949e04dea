// The restore's chunk slots. Large ones hold a chunk of up to a whole --chunk-size; a few small ones
// (formats 3 and 4, decoded in place) hold the chunks that fit in them — a VM's small files, the
// end of an image — so that reading those does not wait until a large chunk in flight is decoded:
// the reader goes on to the next members, and their keys are derived beside that work instead of
// after it (at the end of an image, its VM's small files were read, derived and decoded only after
// the image's last chunk). The reader is sequential, so every chunk before the one it waits for
// already holds a slot and the feeder can always go on: no wait between the two kinds can deadlock.
// Also counts the archive bytes of the chunks read but not yet finished (authenticated, decoded and
// written, or dropped): the progress calls only the rest "processed", so that it does not reach
// 100 % while the last chunks' keys are still being derived.
import { SlotPool, type Slot, type SlotPoolOptions } from '../../pipeline/slot-pool.js';

export interface LargeSlotOptions extends SlotPoolOptions {
  /** a chunk of at least this many archive bytes (a full one: seldom a file's last) faults the next
   *  large slot's pages in ahead of its first read (SlotPool.warmNext); default: never */
  warmAfter?: number;
}

export interface SmallSlotOptions extends SlotPoolOptions {
  /** the largest chunk (archive bytes) a small slot takes */
  maxChunkBytes: number;
}

export class ChunkSlots {
  readonly #large: SlotPool;
  readonly #small: SlotPool | null;
  readonly #smallMax: number;
  readonly #warmAfter: number;
  /** the pool of every slot handed out (a slot always belongs to the same one) */
  readonly #pool = new Map<Slot, SlotPool>();
  readonly #sizes = new Map<Slot, number>();
  #inFlight = 0;
  /** called after every release (the progress is redrawn from it) */
  onRelease: () => void = () => {};

  constructor(large: LargeSlotOptions, small?: SmallSlotOptions) {
    this.#large = new SlotPool(large);
    this.#warmAfter = large.warmAfter ?? Number.POSITIVE_INFINITY;
    this.#small = small === undefined ? null : new SlotPool(small);
    this.#smallMax = small?.maxChunkBytes ?? 0;
  }

  /** bytes of all slots, large and small (what --max-memory counts for them) */
  get capacityBytes(): number {
    return this.#large.size * this.#large.slotBytes + (this.#small === null ? 0 : this.#small.size * this.#small.slotBytes);
  }

  /** No slot is made ready any more (SlotPool.stopWarming): the reader is done. */
  stopWarming(): void {
    this.#large.stopWarming();
  }

  /** The first large slot's pages are faulted in now (SlotPool.warmNext), before a chunk needs
   *  it: for a run whose plan holds a VM with that much data, while the rest of its start goes on
   *  (on this VM a fresh page can cost a fault in the host on its first touch: the first 100 MiB
   *  chunk's read took 50-350 ms). */
  warmFirstLarge(): void {
    if (this.#large.created() === 0) this.#large.warmNext();
  }

  /** the size from which a chunk is taken for a full one of a large file (warmAfter) */
  get largeChunkBytes(): number {
    return this.#warmAfter;
  }

  /** large slots made so far (used, or being made ready: warmAfter) */
  get largeSlotsCreated(): number {
    return this.#large.created();
  }

  /** archive bytes of the chunks held in slots */
  get inFlightBytes(): number {
    return this.#inFlight;
  }

  /** A slot for a chunk of `chunkBytes` archive bytes: a small one when it fits in one. Waits
   *  (first come, first served within each kind) while all of that kind are in use; rejects with
   *  ERR_CANCELLED when `signal` aborts first. */
  async acquire(chunkBytes: number, signal?: AbortSignal): Promise<Slot> {
    const pool = this.#small !== null && chunkBytes <= this.#smallMax ? this.#small : this.#large;
    const slot = await pool.acquire(signal);
    this.#pool.set(slot, pool);
    // a full chunk is seldom a file's last: the next large slot's pages are faulted in while this
    // one is read and decoded, not in the next chunk's read (SlotPool.warmNext)
    if (pool === this.#large && chunkBytes >= this.#warmAfter) pool.warmNext();
    return slot;
  }

  /** `slot` now holds a chunk of `archiveBytes` bytes of the archive */
  hold(slot: Slot, archiveBytes: number): void {
    this.#inFlight += archiveBytes - (this.#sizes.get(slot) ?? 0);
    this.#sizes.set(slot, archiveBytes);
  }

  /** Give `slot` back to the pool it came from (throws on a double release). */
  release(slot: Slot): void {
    const pool = this.#pool.get(slot) ?? this.#large; // the large pool's own check refuses a stranger
    this.#inFlight -= this.#sizes.get(slot) ?? 0;
    this.#sizes.delete(slot);
    pool.release(slot);
    this.onRelease();
  }
}
