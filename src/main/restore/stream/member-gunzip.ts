// Parallel gunzip of an inner archive written by us: a scanner finds the gzip members by the size
// subfield our writer puts in each (src/workers/gzip-member.ts) and has each member decompressed by
// a worker task straight into an output slot; the outputs are handed on in stream order. The size
// field is only a hint: a worker must find exactly one member filling exactly those bytes and
// decoding to exactly the size its trailer names, else the restore fails (ERR_CORRUPT) — a wrong
// field can never change the output. The first member without the subfield (Qubes-made archives,
// pigz, our older archives) or one too big for the slots hands the rest of the stream, from that
// member on, back to the caller for its streaming decoder.
import { QvmBackupError } from '../../errors.js';
import type { Slot } from '../../pipeline/slot-pool.js';
import { SlotPool } from '../../pipeline/slot-pool.js';
import type { WorkerPool } from '../../pipeline/worker-pool.js';
import { gzipBound } from '../../../workers/compress.js';
import { MARKED_HEADER_BYTES, memberHead } from '../../../workers/gzip-member.js';
import type { SharedSlice } from '../../../workers/task-types.js';
import { zlibDirectAvailable } from '../../../workers/zlib-into.js';

/** Largest decompressed member decoded in parallel (ours hold 4 MiB). */
export const MAX_MEMBER_OUT = 8 * 1024 * 1024;
/** Largest compressed member decoded in parallel. */
export const MAX_MEMBER_IN = gzipBound(MAX_MEMBER_OUT);
/** Smallest possible marked member: header, an empty deflate block, the trailer. */
const MIN_MEMBER = MARKED_HEADER_BYTES + 2 + 8;
/** Members whose bytes straddle two chunks are copied into one of these. */
const SCRATCH_SLOTS = 2;

/** The restore's shared memory for member decoding (slots are allocated on first use, then reused). */
export interface MemberPools {
  pool: WorkerPool;
  /** decompressed members waiting to be written, MAX_MEMBER_OUT each */
  out: SlotPool;
  /** members copied together from two chunks, MAX_MEMBER_IN each */
  scratch: SlotPool;
}

/** Pools for a restore running `pool`, or undefined where parallel members do not pay: with one
 *  worker thread the streaming gunzip (in libuv's thread) already runs beside the worker's
 *  decryption; and the exact member decoder needs node:zlib's handle. */
export function memberPoolsFor(pool: WorkerPool): MemberPools | undefined {
  if (pool.threads < 2 || !zlibDirectAvailable()) return undefined;
  return {
    pool,
    out: new SlotPool({ slotBytes: MAX_MEMBER_OUT, slots: pool.threads + 2, name: 'decompressed members' }),
    scratch: new SlotPool({ slotBytes: MAX_MEMBER_IN, slots: SCRATCH_SLOTS, name: 'straddling members' }),
  };
}

/** Most memory the pools can take (the restore's memory plan counts it). */
export function memberPoolBytes(p: MemberPools | undefined): number {
  return p === undefined ? 0 : p.out.size * p.out.slotBytes + p.scratch.size * p.scratch.slotBytes;
}

/** A member's output in order: its bytes, and the release of its slot (call once, when written). */
export interface MemberOutput {
  bytes: Uint8Array;
  release(): void;
}

export interface MemberScannerOptions {
  /** the inner archive, for messages */
  what: string;
  signal: AbortSignal;
  /** called in stream order, once per member; the promise rejects (ERR_CORRUPT...) after its
   *  task ended and its slot was released */
  deliver(output: Promise<MemberOutput>): void;
}

/** A member being gathered from two or more writes. */
interface Carry {
  slot: Slot;
  fill: number;
  /** the member's size once its header was read, else 0 */
  size: number;
}

export class MemberScanner {
  readonly #p: MemberPools;
  readonly #o: MemberScannerOptions;
  #carry: Carry | null = null;
  #closed = false;

  constructor(p: MemberPools, o: MemberScannerOptions) {
    this.#p = p;
    this.#o = o;
  }

  /**
   * Scan and dispatch the members in `data` (the next bytes of the stream). Resolves once no task
   * reads `data` any more: with null when everything was taken, or with the bytes the streaming
   * decoder must take from here on (the first member that cannot be decoded in parallel, and all
   * that follows it; copies where they came from a scratch slot).
   */
  async write(data: Uint8Array): Promise<Uint8Array[] | null> {
    const reading: Promise<void>[] = [];
    try {
      let pos = 0;
      for (;;) {
        const c = this.#carry;
        if (c !== null) {
          if (c.size === 0) {
            pos = this.#fill(c, data, pos, MARKED_HEADER_BYTES);
            const head = memberHead(c.slot.bytes.subarray(0, c.fill), 0);
            if (head.kind === 'short') return null;
            if (head.kind === 'other' || !sane(head.size)) return this.#handOver(data, pos);
            c.size = head.size;
          }
          pos = this.#fill(c, data, pos, c.size);
          if (c.fill < c.size) return null;
          const isize = isizeOf(c.slot.bytes, c.size);
          if (isize === 0 || isize > MAX_MEMBER_OUT) return this.#handOver(data, pos);
          this.#carry = null;
          reading.push((await this.#dispatch(c.slot.slice(0, c.size), isize, c.slot)).settled);
          continue;
        }
        if (pos >= data.length) return null;
        const head = memberHead(data, pos);
        if (head.kind === 'other' || (head.kind === 'marked' && !sane(head.size))) return [data.subarray(pos)];
        const input = head.kind === 'marked' && pos + head.size <= data.length ? sliceOf(data, pos, head.size) : null;
        if (input !== null) {
          const isize = isizeOf(data, pos + input.length);
          if (isize === 0 || isize > MAX_MEMBER_OUT) return [data.subarray(pos)];
          reading.push((await this.#dispatch(input, isize, null)).settled);
          pos += input.length;
          continue;
        }
        // the member goes on in the next write (or `data` is not shared memory): gather it in a
        // scratch slot
        const slot = await this.#p.scratch.acquire(this.#o.signal);
        if (this.#closed) {
          this.#p.scratch.release(slot);
          throw this.#cancelled();
        }
        this.#carry = { slot, fill: 0, size: 0 };
      }
    } finally {
      await Promise.all(reading);
    }
  }

  /** End of the stream: a member still being gathered was cut off. */
  finish(): void {
    if (this.#carry === null) return;
    this.close();
    throw new QvmBackupError('ERR_CORRUPT', `${this.#o.what}: the inner archive ends inside a gzip member`, { file: this.#o.what });
  }

  /** Drop a member being gathered (abort); tasks already running end on their own. */
  close(): void {
    this.#closed = true;
    const c = this.#carry;
    this.#carry = null;
    if (c !== null) this.#p.scratch.release(c.slot);
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

  /** Start one member's task once an output slot is free (waiting for one is the back-pressure);
   *  `settled` resolves when the task no longer reads its input (`scratch`, if given, is released
   *  then). */
  async #dispatch(input: SharedSlice, isize: number, scratch: Slot | null): Promise<{ settled: Promise<void> }> {
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
    const run = pool.run('gunzipMember', { input, output: out.slice(0, isize) }, { signal: this.#o.signal, context: { file: what } });
    const output = run.then(
      (r): MemberOutput => {
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

const sane = (size: number): boolean => size >= MIN_MEMBER && size <= MAX_MEMBER_IN;

/** The ISIZE field of the member ending at `end` (its last 4 bytes). */
function isizeOf(b: Uint8Array, end: number): number {
  return (b[end - 4]! | (b[end - 3]! << 8) | (b[end - 2]! << 16) | (b[end - 1]! << 24)) >>> 0;
}

/** `data[pos, pos+len)` as a slice of shared memory for a worker, or null when `data` is not shared
 *  memory (the worker could not read it without a copy). */
function sliceOf(data: Uint8Array, pos: number, len: number): SharedSlice | null {
  if (!(data.buffer instanceof SharedArrayBuffer)) return null;
  return { sab: data.buffer, offset: data.byteOffset + pos, length: len };
}
