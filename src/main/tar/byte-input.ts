// Where the outer tar reader gets its bytes: a stream (stdin, a pipe, a --source-command), or a
// regular file read with positioned reads straight into the caller's buffer. The file path copies
// nothing through the event loop: each chunk lands in its slot by one read(2) in a libuv thread
// (the first touch of a fresh slot's pages happens there too, not on the main thread), no
// intermediate Buffers are allocated (no garbage to collect), and data that is skipped is not
// read at all (a selective restore seeks over the other VMs' chunks).
import { moved } from '../progress/activity.js';
import type { FileHandle } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { QvmBackupError, fail, isQvmBackupError } from '../errors.js';

export interface ByteInput {
  /** Copy up to `len` bytes into dst at `off` (dst null: discard them); resolves how many there
   *  were (fewer only at the end of the input). */
  take(dst: Uint8Array | null, off: number, len: number): Promise<number>;
  /** Stop: release the source; later takes fail. */
  close(): Promise<void>;
}

function readError(e: unknown, offset: number): QvmBackupError {
  if (isQvmBackupError(e)) return e;
  return new QvmBackupError('ERR_IO', `reading the archive: ${(e as Error).message}`, { offset }, e);
}

/** Bytes of a Readable, consumed through its async iterator. */
export class StreamInput implements ByteInput {
  readonly #it: AsyncIterator<unknown>;
  #chunk: Uint8Array = new Uint8Array(0);
  #pos = 0;
  #eof = false;
  #offset = 0;

  constructor(source: Readable) {
    this.#it = source[Symbol.asyncIterator]();
  }

  async close(): Promise<void> {
    this.#eof = true;
    await this.#it.return?.();
  }

  /** Make the current chunk non-empty; false at end of input. */
  async #fill(): Promise<boolean> {
    while (this.#pos >= this.#chunk.length) {
      if (this.#eof) return false;
      let r: IteratorResult<unknown>;
      try {
        r = await this.#it.next();
      } catch (e) {
        this.#eof = true;
        throw readError(e, this.#offset);
      }
      if (r.done) {
        this.#eof = true;
        return false;
      }
      if (!(r.value instanceof Uint8Array)) fail('ERR_INTERNAL', 'archive source must yield bytes, not strings/objects');
      moved();
      this.#chunk = r.value;
      this.#pos = 0;
    }
    return true;
  }

  async take(dst: Uint8Array | null, off: number, len: number): Promise<number> {
    let done = 0;
    while (done < len) {
      if (!(await this.#fill())) break;
      const n = Math.min(len - done, this.#chunk.length - this.#pos);
      if (dst) dst.set(this.#chunk.subarray(this.#pos, this.#pos + n), off + done);
      this.#pos += n;
      done += n;
    }
    this.#offset += done;
    return done;
  }
}

/** Largest single read: keeps each libuv request short, so a close() is noticed soon. */
const MAX_READ = 16 * 1024 * 1024;

/** A regular file, read from its start with positioned reads (it is never seeked by others). */
export class FileInput implements ByteInput {
  readonly #fh: FileHandle;
  #pos = 0;
  #closed = false;
  #size = -1;
  /** ends the read in progress at close(): on a dead mount it may never end by itself (its bytes
   *  may still land in `dst` later, which only a run being stopped gives up) */
  #giveUp: (() => void) | null = null;

  constructor(fh: FileHandle) {
    this.#fh = fh;
  }

  /** `fh.read`, given up by close(). */
  #read(dst: Uint8Array, off: number, len: number, pos: number): Promise<{ bytesRead: number }> {
    return new Promise<{ bytesRead: number }>((resolve, reject) => {
      this.#giveUp = () => reject(new Error('closed'));
      this.#fh.read(dst, off, len, pos).then(resolve, reject);
    }).finally(() => {
      this.#giveUp = null;
    });
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#giveUp?.();
    // not waited for: the close waits for a read in progress, which on a dead mount may never end
    void this.#fh.close().catch(() => undefined);
  }

  #check(): void {
    if (this.#closed) throw new QvmBackupError('ERR_IO', 'reading the archive: interrupted', { offset: this.#pos });
  }

  async take(dst: Uint8Array | null, off: number, len: number): Promise<number> {
    if (dst === null) return this.#skip(len);
    let done = 0;
    while (done < len) {
      this.#check();
      let n: number;
      try {
        ({ bytesRead: n } = await this.#read(dst, off + done, Math.min(MAX_READ, len - done), this.#pos));
      } catch (e) {
        this.#check();
        throw readError(e, this.#pos);
      }
      if (n === 0) break;
      moved();
      done += n;
      this.#pos += n;
    }
    return done;
  }

  /** Advance without reading, never past the end (as reading would find it). */
  async #skip(len: number): Promise<number> {
    this.#check();
    if (this.#pos + len > this.#size) {
      // the file may have grown since it was last looked at (a copy still being written)
      try {
        this.#size = (await this.#fh.stat()).size;
      } catch (e) {
        this.#check();
        throw readError(e, this.#pos);
      }
    }
    const n = Math.max(0, Math.min(len, this.#size - this.#pos));
    this.#pos += n;
    return n;
  }
}

/** `input` with every take timed as one interval of `stage` (the stage profile's "waiting for the
 *  source"); the input itself when the profile is off. */
export function timedInput(input: ByteInput, stats: { enabled: boolean; time<T>(stage: string, fn: () => T): T }, stage: string): ByteInput {
  if (!stats.enabled) return input;
  return {
    take: (dst, off, len) => stats.time(stage, () => input.take(dst, off, len)),
    close: () => input.close(),
  };
}

