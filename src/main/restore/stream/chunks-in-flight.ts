// The restore's chunk slots, counting the archive bytes of the chunks read but not yet finished
// (authenticated, decoded and written, or dropped): the progress calls only the rest "processed",
// so that it does not reach 100 % while the last chunks' keys are still being derived.
import { SlotPool, type Slot } from '../../pipeline/slot-pool.js';

export class ChunkSlots extends SlotPool {
  readonly #sizes = new Map<Slot, number>();
  #inFlight = 0;
  /** called after every release (the progress is redrawn from it) */
  onRelease: () => void = () => {};

  /** archive bytes of the chunks held in slots */
  get inFlightBytes(): number {
    return this.#inFlight;
  }

  /** `slot` now holds a chunk of `archiveBytes` bytes of the archive */
  hold(slot: Slot, archiveBytes: number): void {
    this.#inFlight += archiveBytes - (this.#sizes.get(slot) ?? 0);
    this.#sizes.set(slot, archiveBytes);
  }

  override release(slot: Slot): void {
    this.#inFlight -= this.#sizes.get(slot) ?? 0;
    this.#sizes.delete(slot);
    super.release(slot);
    this.onRelease();
  }
}
