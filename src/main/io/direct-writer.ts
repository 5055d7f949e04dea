// Writes a restored VM image around the page cache (O_DIRECT). A buffered write first allocates the
// file's page-cache pages, and on this kind of VM a fresh page costs ~15 µs to touch when the host
// took the memory back (a 1 GiB image: ~2 CPU-s of writes against ~0.2 s direct; LIMITS §0); the
// pages are then written to disk anyway (the install fsyncs the image), and they push everything
// else out of the page cache — in dom0, whose memory is small, that is the user's desktop. A direct
// write goes from our memory to the disk.
//
// O_DIRECT needs the memory, the file position and the length aligned to the device's block (512 B
// or 4 KiB): the data runs of a tar member are neither, so they are copied into aligned staging
// blocks (WebAssembly memory: page-aligned) that cover whole 4 KiB blocks of the file. A block that
// holds data is written whole — the bytes of it that no run covers are zeros, as a hole reads —
// and a block that holds none is never written: holes stay holes at the filesystem's block size, as
// with a buffered write. A range of fewer than DIRECT_MIN bytes (a fragmented sparse map) goes
// through the page cache instead: a small direct write waits for the disk (4 KiB: ~57 µs here).
// Positions must only grow (the tar reader checks the sparse map: in order, no overlaps).
//
// The direct handle is a second open of the file we created (O_EXCL|O_NOFOLLOW) through
// /proc/self/fd, never a path lookup. Where the filesystem refuses O_DIRECT (at the open or at a
// write: EINVAL), the buffered handle takes the rest of the file and nothing is lost.
import { constants as fsc, promises as fsp } from 'node:fs';
import { QvmBackupError } from '../errors.js';

const KiB = 1024;
const MiB = 1024 * KiB;
/** File block every direct write is aligned to (the largest logical block size in use). */
export const DIRECT_BLOCK = 4 * KiB;
/** One staging block: one write. */
export const STAGE_BYTES = 8 * MiB;
/** Ranges shorter than this are written through the page cache. */
export const DIRECT_MIN = 256 * KiB;
/** Staging memory one file writes with (two blocks: one filling while the other is written). */
export const DIRECT_STAGING_BYTES = 2 * STAGE_BYTES;

/** WebAssembly's memory (this project's TypeScript lib has no WebAssembly types). */
interface WasmMemoryCtor {
  new (d: { initial: number; maximum: number; shared: true }): { buffer: SharedArrayBuffer };
}
const WasmMemory = (globalThis as unknown as { WebAssembly: { Memory: WasmMemoryCtor } }).WebAssembly.Memory;

/** Staging pairs of files that ended, reused (fresh memory is what this module avoids). */
const freePairs: Uint8Array[][] = [];
/** Pairs in use or kept, at most: what --max-memory counts (DIRECT_STAGING_BYTES each). A file that
 *  finds none free (several files finishing at once) is written through the page cache. */
export const MAX_PAIRS = 2;
let pairsMade = 0;

function takePair(): Uint8Array[] | null {
  const kept = freePairs.pop();
  if (kept !== undefined) return kept;
  if (pairsMade >= MAX_PAIRS) return null;
  // WebAssembly memory starts on a page boundary; 64 KiB pages
  const mem = new WasmMemory({ initial: DIRECT_STAGING_BYTES / 65536, maximum: DIRECT_STAGING_BYTES / 65536, shared: true });
  const all = new Uint8Array(mem.buffer);
  pairsMade++;
  return [all.subarray(0, STAGE_BYTES), all.subarray(STAGE_BYTES, 2 * STAGE_BYTES)];
}

function givePair(pair: Uint8Array[]): void {
  freePairs.push(pair);
}

/** A writer for the open file `fh` of apparent size `size` (already set) that will be given
 *  `dataBytes` bytes, or null where that is too little to pay (under DIRECT_MIN), the filesystem (or
 *  the platform) has no O_DIRECT, or no staging memory is free or can be had: the caller then
 *  writes through the page cache as before. */
export async function openDirectWriter(fh: fsp.FileHandle, size: number, dataBytes = size): Promise<DirectWriter | null> {
  if (dataBytes < DIRECT_MIN) return null;
  let pair: Uint8Array[] | null;
  try {
    pair = takePair();
  } catch {
    // no memory for the staging (an address-space limit: WebAssembly reserves more than it uses)
    return null;
  }
  if (pair === null) return null;
  const direct = await openDirect(fh);
  if (direct === null) {
    givePair(pair);
    return null;
  }
  return new DirectWriter(fh, direct, size, pair);
}

/** A direct-I/O handle on the open file `fh`, or null where the filesystem (or the platform) has no
 *  O_DIRECT. */
export async function openDirect(fh: fsp.FileHandle): Promise<fsp.FileHandle | null> {
  const flag = fsc.O_DIRECT;
  if (process.platform !== 'linux' || flag === undefined) return null;
  try {
    // the same open file, reopened: /proc/self/fd/N names it, not a path someone could replace
    return await fsp.open(`/proc/self/fd/${fh.fd}`, fsc.O_WRONLY | flag);
  } catch {
    return null;
  }
}

/** Writes `block[at.off, len)` at file offset `start + at.off`; `at.off` keeps how far it got (a
 *  refused direct write goes on from there through the page cache). */
async function writeRange(fh: fsp.FileHandle, block: Uint8Array, len: number, start: number, at: { off: number }, what: string): Promise<void> {
  while (at.off < len) {
    const { bytesWritten } = await fh.write(block, at.off, len - at.off, start + at.off);
    if (bytesWritten <= 0) throw new QvmBackupError('ERR_IO', `${what} made no progress`);
    at.off += bytesWritten;
  }
}

const roundDown = (n: number): number => n - (n % DIRECT_BLOCK);
const roundUp = (n: number): number => roundDown(n + DIRECT_BLOCK - 1);

/** Counters of one file's writes (tests, profiles). */
export interface DirectWriteCounts {
  /** writes and bytes that went direct */
  direct: number;
  directBytes: number;
  /** writes and bytes through the page cache (short ranges, or the direct handle failed) */
  buffered: number;
  bufferedBytes: number;
}

export class DirectWriter {
  readonly #buffered: fsp.FileHandle;
  #direct: fsp.FileHandle | null;
  readonly #size: number;
  readonly #pair: Uint8Array[];
  /** the pair's block being filled (index), its file offset (aligned), bytes filled from there */
  #cur = 0;
  #start = -1;
  #fill = 0;
  /** the one write in flight (its block is the other of the pair) */
  #inFlight: Promise<void> | null = null;
  #error: unknown = undefined;
  #failed = false;
  /** end of the last block written (aligned): past the file's size, the file is cut back */
  #written = 0;
  #closed = false;
  #refused = false;
  readonly counts: DirectWriteCounts = { direct: 0, directBytes: 0, buffered: 0, bufferedBytes: 0 };

  /** `buffered`: the file (open for writing, its size set); `direct`: openDirect's handle on it,
   *  owned (closed) by this writer; `size`: the file's apparent size. */
  /** `pair`: its staging (openDirectWriter's; tests may give their own) */
  constructor(buffered: fsp.FileHandle, direct: fsp.FileHandle | null, size: number, pair?: Uint8Array[]) {
    const p = pair ?? takePair();
    if (p === null) throw new QvmBackupError('ERR_INTERNAL', 'direct writer: no staging memory free');
    this.#buffered = buffered;
    this.#direct = direct;
    this.#size = size;
    this.#pair = p;
  }

  /** Whether writes went direct (false once the filesystem refused one). */
  get direct(): boolean {
    return !this.#refused;
  }

  /** Stage `bytes` for file offset `position` (after everything staged before). Resolves once they
   *  are copied (the caller may reuse `bytes`), waiting for a write when both blocks are full. */
  async write(position: number, bytes: Uint8Array): Promise<void> {
    this.#check();
    if (this.#closed) throw new QvmBackupError('ERR_INTERNAL', 'direct writer: write after end');
    let pos = position;
    let off = 0;
    while (off < bytes.length) {
      if (this.#start >= 0) {
        const end = this.#start + this.#fill;
        if (pos < end) throw new QvmBackupError('ERR_INTERNAL', `direct writer: position ${pos} before ${end}`);
        // a whole block or more of hole: left unwritten (data that follows on without a gap stays in
        // the block, also when it ended on a block boundary)
        if (pos > end && pos >= roundUp(end)) {
          await this.#flush();
          this.#checkOpen();
        }
        else if (pos > end) {
          // a gap inside the last block: zeros, as the hole would read
          this.#pair[this.#cur]!.fill(0, this.#fill, pos - this.#start);
          this.#fill = pos - this.#start;
        }
      }
      if (this.#start < 0) {
        if (pos < this.#written) throw new QvmBackupError('ERR_INTERNAL', `direct writer: position ${pos} before ${this.#written}`);
        this.#start = roundDown(pos);
        this.#fill = pos - this.#start;
        this.#pair[this.#cur]!.fill(0, 0, this.#fill);
      }
      const n = Math.min(bytes.length - off, STAGE_BYTES - this.#fill);
      this.#pair[this.#cur]!.set(bytes.subarray(off, off + n), this.#fill);
      this.#fill += n;
      off += n;
      pos += n;
      if (this.#fill === STAGE_BYTES) await this.#flush();
    }
  }

  /** After an await: the writer was closed meanwhile (its staging may be another file's now). */
  #checkOpen(): void {
    if (this.#closed) throw new QvmBackupError('ERR_CANCELLED', 'direct writer: closed while writing');
  }

  /** Writes what is staged, waits for it, and cuts the file back to its size when the last block
   *  went past it. */
  async end(): Promise<void> {
    try {
      this.#check();
      if (this.#start >= 0) await this.#flush();
      await this.#drain();
      this.#check();
      if (this.#written > this.#size) await this.#buffered.truncate(this.#size);
    } finally {
      await this.close();
    }
  }

  /** Waits for the write in flight; closes the direct handle and gives the staging back. Nothing
   *  staged is written. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#drain();
    givePair(this.#pair);
    const d = this.#direct;
    this.#direct = null;
    await d?.close().catch(() => undefined);
  }

  /** Starts writing the block being filled (whole 4 KiB blocks, zeros after its last byte) once the
   *  write before it ended; the other block of the pair is filled meanwhile. */
  async #flush(): Promise<void> {
    const block = this.#pair[this.#cur]!;
    const start = this.#start;
    const len = roundUp(this.#fill);
    block.fill(0, this.#fill, len);
    this.#start = -1;
    this.#fill = 0;
    await this.#drain();
    this.#check();
    this.#checkOpen();
    this.#cur ^= 1;
    this.#written = start + len;
    const p = this.#writeOut(block, start, len);
    this.#inFlight = p.then(
      () => {
        this.#inFlight = null;
      },
      (e: unknown) => {
        this.#inFlight = null;
        if (!this.#failed) [this.#error, this.#failed] = [e, true];
      },
    );
  }

  async #writeOut(block: Uint8Array, start: number, len: number): Promise<void> {
    const at = { off: 0 };
    if (this.#direct !== null && len >= DIRECT_MIN) {
      try {
        await writeRange(this.#direct, block, len, start, at, 'direct write');
        this.counts.direct++;
        this.counts.directBytes += len;
        return;
      } catch (e) {
        // the filesystem takes no direct writes (or not at this alignment): the page cache takes
        // this one and the rest
        if ((e as NodeJS.ErrnoException).code !== 'EINVAL') throw e;
        this.#refused = true;
        const d = this.#direct;
        this.#direct = null;
        await d.close().catch(() => undefined);
      }
    }
    await writeRange(this.#buffered, block, len, start, at, 'write');
    this.counts.buffered++;
    this.counts.bufferedBytes += len;
  }

  async #drain(): Promise<void> {
    while (this.#inFlight !== null) await this.#inFlight;
  }

  #check(): void {
    if (this.#failed) throw this.#error;
  }
}
