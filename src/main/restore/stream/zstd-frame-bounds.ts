// Where the frames of a zstd stream end, followed as the compressed bytes pass by (frame headers and
// block headers only, nothing decoded), so the streaming decoder can tell whether its input ended
// between two frames. node:zlib's decoder keeps 1-3 bytes that begin a frame's magic number (or a
// skippable frame's) as the start of a next frame and ends without an error; `zstd -d` refuses them.
// It also says where each frame ends inside the bytes fed: Node 22's zlib decodes only the first of
// several frames given in one input (the rest is dropped, without an error; Node 24 decodes them
// all), so the decoders hand zlib one frame per input.
import { BLOCK_HEADER, CHECKSUM, readBlockHeader, readFrameHeader } from '../../../workers/zstd-frame.js';

/** The largest frame header (magic, descriptor, window, 4-byte dictionary id, 8-byte size). */
const HEADER_MAX = 18;
const MAGIC_BYTES = 4;

export class ZstdFrameBounds {
  readonly #head = new Uint8Array(HEADER_MAX);
  /** header bytes gathered in #head, and how many the header being read needs */
  #len = 0;
  #need = 1;
  /** reading block headers (of a frame) rather than a frame header */
  #inFrame = false;
  #checksum = false;
  /** bytes to pass over (block contents, a checksum, a skippable frame's data) */
  #skip = 0;
  /** bytes seen, and where the last whole frame ended */
  #seen = 0;
  #lastEnd = 0;
  /** bytes that are no frame: the decoder refuses those itself, nothing is followed any more */
  #lost = false;

  /** Follow the next bytes of the stream; with `ends`, the offsets in `b` where a frame (zstd or
   *  skippable) ends are appended to it. */
  feed(b: Uint8Array, ends?: number[]): void {
    let pos = 0;
    while (pos < b.length && !this.#lost) {
      if (this.#skip > 0) {
        const n = Math.min(this.#skip, b.length - pos);
        this.#skip -= n;
        pos += n;
      } else {
        const n = Math.min(this.#need - this.#len, b.length - pos);
        this.#head.set(b.subarray(pos, pos + n), this.#len);
        this.#len += n;
        pos += n;
        if (this.#len === this.#need) this.#header();
      }
      if (!this.#lost && this.#skip === 0 && this.#len === 0 && !this.#inFrame && this.#seen + pos > this.#lastEnd) {
        this.#lastEnd = this.#seen + pos;
        ends?.push(pos);
      }
    }
    this.#seen += b.length;
  }

  /** Bytes after the last whole frame, or 0 when the stream so far ends between frames (or holds
   *  bytes that are no frame, which the decoder refuses on its own). */
  partial(): number {
    return this.#lost ? 0 : this.#seen - this.#lastEnd;
  }

  /** Where bytes that begin no frame start (stream offset), or null while every byte is of a frame. */
  get lostAt(): number | null {
    return this.#lost ? this.#lastEnd : null;
  }

  /** True when everything fed so far is whole frames (zstd or skippable) and nothing else. */
  wholeFrames(): boolean {
    return !this.#lost && this.#seen === this.#lastEnd;
  }

  /** #head holds #need bytes: read the header they make. */
  #header(): void {
    const h = this.#head.subarray(0, this.#len);
    this.#len = 0;
    if (this.#inFrame) {
      const block = readBlockHeader(h, 0);
      if (block.reserved) {
        this.#lost = true;
        return;
      }
      this.#skip = block.stored;
      if (block.last) {
        this.#inFrame = false;
        this.#skip += this.#checksum ? CHECKSUM : 0;
        this.#need = 1;
      }
      return;
    }
    const r = readFrameHeader(h);
    if (r.kind === 'bad') this.#lost = true;
    else if (r.kind === 'short') {
      this.#len = h.length;
      // the magic number a byte at a time: a byte that begins no frame is known as soon as it comes
      this.#need = h.length < MAGIC_BYTES ? h.length + 1 : r.need;
    } else if (r.kind === 'skippable') {
      this.#skip = r.size - h.length;
      this.#need = 1;
    } else {
      this.#inFrame = true;
      this.#checksum = r.header.checksum;
      this.#need = BLOCK_HEADER;
    }
  }
}
