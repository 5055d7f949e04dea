// Fills the page cache of a file ahead of its writer, from another thread. A buffered write into
// a page the file does not have yet allocates that page and takes its first touch inside the
// write, and a file's writes are serialised by the kernel (one at a time under the inode lock); on
// a VM whose freed memory went back to the host that first touch is most of a write's cost (1 GiB:
// 2.6 s of writes, against 0.3-0.5 s into pages that already exist). Reading the ranges the writer
// is about to fill, while they are still holes, makes the kernel allocate and zero those pages in
// a libuv thread beside the writer; the write then only copies. Only the data runs are read (never
// the holes that stay holes), at most `window` bytes ahead of the writer, one read at a time. The
// reads change nothing in the file; a failed read only ends the prefaulting (the writes and the
// final fsync report the file's own errors).
// No read starts right where the previous read or the writer ended: the kernel takes such reads
// for a sequential stream and reads ahead of them by up to the device's read_ahead_kb (8 MiB
// here), past the end of a run into the hole after it, whose pages it then allocates and zeroes
// for nothing (a 2 MiB run before a 6 MiB hole: 4 MiB of zero pages in the page cache).
import type { promises as fsp } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { SpanList, type Span } from '../tar/single-member-reader.js';

const MiB = 1024 * 1024;
/** How far ahead of the writer pages are prepared. */
export const PREFAULT_WINDOW = 32 * MiB;
/** Bytes per read (into one scratch buffer whose contents are never used). */
export const PIECE = 1 * MiB;
/** Bytes left to the writer after its position and after each read: two pages, so that the next
 *  read is neither next to the last one nor next to cached pages, and the kernel reads no more. */
export const GAP = 8 * 1024;
/** A run, or the rest of one, shorter than this is left to the writer: a read costs more than the
 *  few pages it would prepare (a map of 4 KiB runs: +56% CPU). */
export const MIN_READ = 64 * 1024;

export class PagePrefault {
  readonly #fh: fsp.FileHandle;
  readonly #spans: SpanList;
  readonly #window: number;
  #span = 0;
  /** next file offset to prepare */
  #cursor = 0;
  /** where the writer is */
  #writer = 0;
  #inFlight: Promise<void> | null = null;
  #stopped = false;
  #scratch: Buffer | null = null;
  /** bytes read so far, the reads, and their time in ms (for tests and profiles) */
  prepared = 0;
  reads = 0;
  readMs = 0;

  constructor(fh: fsp.FileHandle, spans: SpanList | readonly Span[], window = PREFAULT_WINDOW) {
    this.#fh = fh;
    this.#spans = spans instanceof SpanList ? spans : SpanList.from(spans);
    this.#window = window;
  }

  /** The writer is about to write at `position` (positions only grow): keep the reads ahead of it. */
  ahead(position: number): void {
    if (position > this.#writer) this.#writer = position;
    this.#pump();
  }

  /** No read starts after this; resolves when the one in flight ended (before the handle closes). */
  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#inFlight;
  }

  #pump(): void {
    if (this.#inFlight !== null || this.#stopped) return;
    // a range the writer has reached is its own business now, and so are the GAP bytes after it
    if (this.#cursor < this.#writer + GAP) this.#cursor = this.#writer + GAP;
    const spans = this.#spans;
    // the first run with MIN_READ bytes at or after the cursor (runs are in order, no overlaps)
    for (; this.#span < spans.length; this.#span++) {
      const offset = spans.offsetAt(this.#span);
      if (this.#cursor < offset) this.#cursor = offset;
      if (offset + spans.lengthAt(this.#span) - this.#cursor >= MIN_READ) break;
    }
    if (this.#span >= spans.length) return;
    const limit = Math.min(spans.offsetAt(this.#span) + spans.lengthAt(this.#span), this.#writer + this.#window, this.#cursor + PIECE);
    const length = limit - this.#cursor;
    if (length < MIN_READ) return; // at the window's end: until the writer moves on
    const at = this.#cursor;
    this.#scratch ??= Buffer.allocUnsafeSlow(PIECE);
    const t0 = performance.now();
    this.#inFlight = this.#fh.read(this.#scratch, 0, length, at).then(
      () => {
        this.#inFlight = null;
        this.prepared += length;
        this.reads++;
        this.readMs += performance.now() - t0;
        if (this.#cursor < at + length + GAP) this.#cursor = at + length + GAP;
        this.#pump();
      },
      () => {
        this.#inFlight = null;
        this.#stopped = true;
      },
    );
  }
}
