// Parallel decoding of an inner archive made of independent units (our size-marked gzip members,
// zstd frames): a format finds each unit's bounds and decoded size without decoding it, a worker
// task decodes the unit straight into an output slot, and the outputs are handed on in stream order.
// What the scan reads is a hint only: a worker must find exactly one unit filling exactly those
// bytes and decoding to exactly that size, else the restore fails (ERR_CORRUPT) — a lying header can
// never change the output. The first unit the format cannot vouch for (another writer's, or too big
// for the slots) hands the rest of the stream, from that unit on, back to the caller for its
// streaming decoder.
import { QvmBackupError } from '../../errors.js';
import type { Slot } from '../../pipeline/slot-pool.js';
import { SlotPool } from '../../pipeline/slot-pool.js';
import type { WorkerPool } from '../../pipeline/worker-pool.js';
import type { SharedSlice } from '../../../workers/task-types.js';

/** Largest decompressed unit decoded in parallel (ours hold 4 MiB). */
export const MAX_UNIT_OUT = 8 * 1024 * 1024;
/** Units whose bytes straddle two writes are copied into one of these. */
const SCRATCH_SLOTS = 2;

/** What a format reads at the start of a unit. */
export type UnitMeasure =
  /** more bytes are needed: `need` from the unit's start (measure is then called again with exactly
   *  that many, or the stream ended); `resume` is handed back then (where the format got to) */
  | { kind: 'short'; need: number; resume: number }
  /** a unit for the workers: `size` bytes, decoding to `outSize` (1..MAX_UNIT_OUT) bytes */
  | { kind: 'unit'; size: number; outSize: number }
  /** `size` bytes that decode to nothing (zstd skippable frames) */
  | { kind: 'skip'; size: number }
  /** not for the workers: the streaming decoder takes the stream from here */
  | { kind: 'other' };

/** One kind of independent unit. */
export interface UnitFormat {
  /** for messages: 'gzip member' */
  readonly unit: string;
  /** the inner filter whose streams are made of these units */
  readonly filter: 'gunzip' | 'zstd';
  /** the worker task that decodes one unit exactly */
  readonly task: 'gunzipMember' | 'unzstdFrame';
  /** largest unit (compressed bytes) measure ever accepts: the size of a scratch slot */
  readonly maxIn: number;
  /** whether this runtime has the exact decoder the task needs */
  available(): boolean;
  /** Read the unit starting at `b[0]` (`b`: what has arrived of it so far). */
  measure(b: Uint8Array, resume: number): UnitMeasure;
}

/** The restore's shared memory for unit decoding (slots are allocated on first use, then reused). */
export interface UnitPools {
  format: UnitFormat;
  pool: WorkerPool;
  /** decompressed units waiting to be written, MAX_UNIT_OUT each */
  out: SlotPool;
  /** units copied together from two writes, format.maxIn each */
  scratch: SlotPool;
}

/** Most output slots (128 MiB). */
const MAX_OUT_SLOTS = 16;

/**
 * Output slots for `threads` workers with `spareBytes` of --max-memory left for them: threads + 2 at
 * least (as many units decoding as workers, two waiting for the writer), up to 3 × threads + 6 when
 * the memory allows. Outputs are written in stream order, so with few slots one unit still being
 * decoded holds every finished one after it and the other workers wait for a slot (head-of-line);
 * and the writer, a serial stage, runs unevenly beside the workers. Measured on the bench restore
 * (two threads, seven rounds in turns): 4 slots 1.78 s and 0.50 core-s idle, 8 slots 1.74 s / 0.44,
 * 12 slots 1.71 s / 0.40, 16 no better than 12.
 */
export function outSlotCount(threads: number, spareBytes: number, format: UnitFormat): number {
  const least = threads + 2;
  const fit = Math.floor((spareBytes - SCRATCH_SLOTS * format.maxIn) / MAX_UNIT_OUT);
  return Math.max(least, Math.min(3 * threads + 6, MAX_OUT_SLOTS, fit));
}

/** Pools for a restore running `pool`, or undefined where parallel units do not pay: with one worker
 *  thread the streaming decoder (in libuv's thread) already runs beside the worker's decryption; and
 *  the exact unit decoder needs node:zlib's handle. `spareBytes`: what --max-memory leaves beside the
 *  chunk slots and the key derivations (more output slots when it allows; default: the least). */
export function unitPoolsFor(pool: WorkerPool, format: UnitFormat, spareBytes = 0): UnitPools | undefined {
  if (pool.threads < 2 || !format.available()) return undefined;
  return {
    format,
    pool,
    out: new SlotPool({ slotBytes: MAX_UNIT_OUT, slots: outSlotCount(pool.threads, spareBytes, format), name: `decompressed ${format.unit}s` }),
    scratch: new SlotPool({ slotBytes: format.maxIn, slots: SCRATCH_SLOTS, name: `straddling ${format.unit}s` }),
  };
}

/** Most memory the pools can take (the restore's memory plan counts it). */
export function unitPoolBytes(p: UnitPools | undefined): number {
  return p === undefined ? 0 : p.out.size * p.out.slotBytes + p.scratch.size * p.scratch.slotBytes;
}

/** A unit's output in order: its bytes, and the release of its slot (call once, when written). */
export interface UnitOutput {
  bytes: Uint8Array;
  release(): void;
}

export interface UnitScannerOptions {
  /** the inner archive, for messages */
  what: string;
  signal: AbortSignal;
  /** called in stream order, once per unit; the promise rejects (ERR_CORRUPT...) after its task
   *  ended and its slot was released */
  deliver(output: Promise<UnitOutput>): void;
}

/** A unit being gathered from two or more writes. */
interface Carry {
  slot: Slot;
  fill: number;
  need: number;
  resume: number;
}

export class UnitScanner {
  readonly #p: UnitPools;
  readonly #f: UnitFormat;
  readonly #o: UnitScannerOptions;
  #carry: Carry | null = null;
  /** bytes of a skipped unit still to come */
  #skip = 0;
  #closed = false;

  constructor(p: UnitPools, o: UnitScannerOptions) {
    this.#p = p;
    this.#f = p.format;
    this.#o = o;
  }

  /**
   * Scan and dispatch the units in `data` (the next bytes of the stream). Resolves once no task
   * reads `data` any more: with null when everything was taken, or with the bytes the streaming
   * decoder must take from here on (the first unit that cannot be decoded in parallel, and all that
   * follows it; copies where they came from a scratch slot).
   */
  async write(data: Uint8Array): Promise<Uint8Array[] | null> {
    const reading: Promise<void>[] = [];
    try {
      let pos = 0;
      for (;;) {
        if (this.#skip > 0) {
          const n = Math.min(this.#skip, data.length - pos);
          this.#skip -= n;
          pos += n;
          if (this.#skip > 0) return null;
        }
        const c = this.#carry;
        if (c !== null) {
          pos = this.#fill(c, data, pos, c.need);
          if (c.fill < c.need) return null;
          const m = this.#f.measure(c.slot.bytes.subarray(0, c.fill), c.resume);
          if (m.kind === 'short' && m.need > c.fill && m.need <= c.slot.bytes.length) {
            c.need = m.need;
            c.resume = m.resume;
            continue;
          }
          // a unit must end exactly where the format asked for bytes up to (else it is handed over)
          if (m.kind === 'skip' && m.size >= c.fill) {
            this.#carry = null;
            this.#p.scratch.release(c.slot);
            this.#skip = m.size - c.fill;
            continue;
          }
          if (m.kind !== 'unit' || m.size !== c.fill || !this.#fits(m)) return this.#handOver(data, pos);
          this.#carry = null;
          reading.push((await this.#dispatch(c.slot.slice(0, m.size), m.outSize, c.slot)).settled);
          continue;
        }
        if (pos >= data.length) return null;
        const m = this.#f.measure(data.subarray(pos), 0);
        if (m.kind === 'other' || (m.kind === 'unit' && !this.#fits(m)) || (m.kind === 'short' && m.need > this.#f.maxIn) || (m.kind === 'skip' && m.size <= 0)) {
          return [data.subarray(pos)];
        }
        if (m.kind === 'skip') {
          this.#skip = m.size;
          continue;
        }
        if (m.kind === 'unit') {
          const input = sliceOf(data, pos, m.size);
          if (input !== null) {
            reading.push((await this.#dispatch(input, m.outSize, null)).settled);
            pos += m.size;
            continue;
          }
        }
        // the unit goes on in the next write (or `data` is not shared memory): gather it in a
        // scratch slot
        const slot = await this.#p.scratch.acquire(this.#o.signal);
        if (this.#closed) {
          this.#p.scratch.release(slot);
          throw this.#cancelled();
        }
        this.#carry = m.kind === 'short' ? { slot, fill: 0, need: m.need, resume: m.resume } : { slot, fill: 0, need: m.size, resume: 0 };
      }
    } finally {
      await Promise.all(reading);
    }
  }

  /** End of the stream: a unit still being gathered (or skipped) was cut off. */
  finish(): void {
    if (this.#carry === null && this.#skip === 0) return;
    this.close();
    throw new QvmBackupError('ERR_CORRUPT', `${this.#o.what}: the inner archive ends inside a ${this.#f.unit}`, { file: this.#o.what });
  }

  /** Drop a unit being gathered (abort); tasks already running end on their own. */
  close(): void {
    this.#closed = true;
    const c = this.#carry;
    this.#carry = null;
    if (c !== null) this.#p.scratch.release(c.slot);
  }

  /** A unit the slots can take (the format promises it; checked, as a wrong size would loop or throw). */
  #fits(m: { size: number; outSize: number }): boolean {
    return m.size > 0 && m.size <= this.#f.maxIn && m.outSize > 0 && m.outSize <= MAX_UNIT_OUT;
  }

  /** Copy from `data[pos..]` into the carry until it holds `upTo` bytes; returns the new pos. */
  #fill(c: Carry, data: Uint8Array, pos: number, upTo: number): number {
    const n = Math.min(upTo - c.fill, data.length - pos);
    if (n <= 0) return pos;
    c.slot.bytes.set(data.subarray(pos, pos + n), c.fill);
    c.fill += n;
    return pos + n;
  }

  /** The carry and `data[pos..]` go to the streaming decoder. */
  #handOver(data: Uint8Array, pos: number): Uint8Array[] {
    const c = this.#carry!;
    const gathered = c.slot.bytes.slice(0, c.fill); // a copy: the slot is released now
    this.#carry = null;
    this.#p.scratch.release(c.slot);
    return pos < data.length ? [gathered, data.subarray(pos)] : [gathered];
  }

  /** Start one unit's task once an output slot is free (waiting for one is the back-pressure);
   *  `settled` resolves when the task no longer reads its input (`scratch`, if given, is released
   *  then). */
  async #dispatch(input: SharedSlice, outSize: number, scratch: Slot | null): Promise<{ settled: Promise<void> }> {
    const { pool, out: outSlots } = this.#p;
    let out: Slot;
    try {
      out = await outSlots.acquire(this.#o.signal);
      if (this.#closed) {
        outSlots.release(out);
        throw this.#cancelled();
      }
    } catch (e) {
      if (scratch !== null) this.#p.scratch.release(scratch);
      throw e;
    }
    const what = this.#o.what;
    const run = pool.run(this.#f.task, { input, output: out.slice(0, outSize) }, { signal: this.#o.signal, context: { file: what } });
    const output = run.then(
      (r): UnitOutput => {
        if (!r.ok) {
          outSlots.release(out);
          throw new QvmBackupError('ERR_CORRUPT', `${what}: cannot decompress the inner archive: ${r.message}`, { file: what });
        }
        let released = false;
        const bytes = out.bytes.subarray(0, r.length);
        return {
          bytes,
          release: () => {
            if (!released) outSlots.release(out);
            released = true;
          },
        };
      },
      (e: unknown) => {
        outSlots.release(out);
        throw e;
      },
    );
    output.catch(() => undefined); // observed by the consumer
    this.#o.deliver(output);
    const settled = run.then(
      () => undefined,
      () => undefined,
    );
    if (scratch !== null) void settled.then(() => this.#p.scratch.release(scratch));
    return { settled };
  }

  #cancelled(): QvmBackupError {
    return new QvmBackupError('ERR_CANCELLED', `${this.#o.what}: aborted`, { file: this.#o.what });
  }
}

/** `data[pos, pos+len)` as a slice of shared memory for a worker, or null when `data` is not shared
 *  memory (the worker could not read it without a copy). */
function sliceOf(data: Uint8Array, pos: number, len: number): SharedSlice | null {
  if (!(data.buffer instanceof SharedArrayBuffer)) return null;
  return { sab: data.buffer, offset: data.byteOffset + pos, length: len };
}
