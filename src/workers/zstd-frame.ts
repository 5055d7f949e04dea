// Where a zstd frame ends, found without decoding it (RFC 8878 §3.1): the frame header, then the
// 3-byte block headers (each names its block's size), then the optional checksum. Pure; reads only
// the bytes it is given and says how many more it needs. The walk is a hint for splitting the
// stream: the decoder of each frame checks it again (it must consume exactly these bytes).

const MAGIC = 0xfd2fb528;
/** Skippable frames: magic 0x184D2A50..0x184D2A5F, a 4-byte size, that many bytes of user data. */
const SKIPPABLE_MAGIC = 0x184d2a50;
const SKIPPABLE_HEADER = 8;
/** A block never holds more than 128 KiB (nor more than the window). */
const BLOCK_SIZE_MAX = 128 * 1024;
export const BLOCK_HEADER = 3;
export const CHECKSUM = 4;
const RESERVED_BLOCK = 3;
const RLE_BLOCK = 1;

export interface BlockHeader {
  last: boolean;
  /** the reserved block type: no valid frame holds one */
  reserved: boolean;
  /** the size the header declares (for an RLE block, the size it regenerates) */
  size: number;
  /** the bytes stored after the header (an RLE block stores one) */
  stored: number;
}

/** The 3-byte block header at `at` (RFC 8878 §3.1.1.2: bit 0 last block, bits 1-2 type, the rest its size). */
export function readBlockHeader(b: Uint8Array, at: number): BlockHeader {
  const bh = b[at]! | (b[at + 1]! << 8) | (b[at + 2]! << 16);
  const type = (bh >> 1) & 3;
  const size = bh >>> 3;
  return { last: (bh & 1) !== 0, reserved: type === RESERVED_BLOCK, size, stored: type === RLE_BLOCK ? 1 : size };
}

export interface FrameHeader {
  /** bytes of magic number and frame header: where the first block begins */
  headerSize: number;
  /** decoded size the header declares, or null (not given) */
  contentSize: number | null;
  /** bytes of history the decoder must keep */
  windowSize: number;
  /** 0: no dictionary */
  dictId: number;
  checksum: boolean;
}

export type HeaderRead =
  | { kind: 'short'; need: number }
  | { kind: 'frame'; header: FrameHeader }
  | { kind: 'skippable'; size: number }
  /** not a zstd or skippable frame, or a reserved bit set */
  | { kind: 'bad'; why: string };

export type FrameWalk =
  /** the frame goes on beyond `b`: `need` bytes are needed to go further; `resume` is where the
   *  walk got to (pass it back with the longer prefix) */
  | { kind: 'short'; need: number; resume: number }
  | { kind: 'frame'; size: number; header: FrameHeader }
  | { kind: 'bad'; why: string };

const u32 = (b: Uint8Array, o: number): number => (b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16) | (b[o + 3]! << 24)) >>> 0;

/** Whether `b` (fewer than 4 bytes) can still begin a zstd or skippable frame. */
function magicPrefix(b: Uint8Array): boolean {
  const zstd = [0x28, 0xb5, 0x2f, 0xfd];
  const skip = [0x50, 0x2a, 0x4d, 0x18];
  const isZstd = b.every((x, i) => x === zstd[i]);
  const isSkip = b.every((x, i) => (i === 0 ? (x & 0xf0) === skip[0] : x === skip[i]));
  return isZstd || isSkip;
}

/** Read the magic number and frame header at `b[0..]`. */
export function readFrameHeader(b: Uint8Array): HeaderRead {
  if (b.length < 4) return magicPrefix(b) ? { kind: 'short', need: 4 } : { kind: 'bad', why: 'not a zstd frame' };
  const magic = u32(b, 0);
  if ((magic & 0xfffffff0) >>> 0 === SKIPPABLE_MAGIC) {
    if (b.length < SKIPPABLE_HEADER) return { kind: 'short', need: SKIPPABLE_HEADER };
    return { kind: 'skippable', size: SKIPPABLE_HEADER + u32(b, 4) };
  }
  if (magic !== MAGIC) return { kind: 'bad', why: 'not a zstd frame' };
  if (b.length < 5) return { kind: 'short', need: 5 };
  const fhd = b[4]!;
  const fcsFlag = fhd >> 6;
  const singleSegment = (fhd & 0x20) !== 0;
  if ((fhd & 0x08) !== 0) return { kind: 'bad', why: 'reserved bit set in the frame header' };
  const checksum = (fhd & 0x04) !== 0;
  const dictBytes = [0, 1, 2, 4][fhd & 0x03]!;
  const fcsBytes = fcsFlag === 0 ? (singleSegment ? 1 : 0) : [0, 2, 4, 8][fcsFlag]!;
  const headerSize = 5 + (singleSegment ? 0 : 1) + dictBytes + fcsBytes;
  if (b.length < headerSize) return { kind: 'short', need: headerSize };
  let at = 5;
  let windowSize = 0;
  if (!singleSegment) {
    const wd = b[at++]!;
    const windowBase = 2 ** (10 + (wd >> 3));
    windowSize = windowBase + (windowBase / 8) * (wd & 7);
  }
  let dictId = 0;
  for (let i = 0; i < dictBytes; i++) dictId += b[at + i]! * 2 ** (8 * i);
  at += dictBytes;
  let contentSize: number | null = null;
  if (fcsBytes > 0) {
    contentSize = 0;
    for (let i = 0; i < fcsBytes; i++) contentSize += b[at + i]! * 2 ** (8 * i); // above 2^53 only rounded: still huge
    if (fcsBytes === 2) contentSize += 256;
  }
  if (singleSegment) windowSize = contentSize!;
  return { kind: 'frame', header: { headerSize, contentSize, windowSize, dictId, checksum } };
}

/**
 * Walk the zstd frame at `b[0..]` (its header already read as `h`) block by block from `resume`
 * (0: the first block), up to `limit` bytes in all: returns its size, that more bytes are needed, or
 * why it is not a well-formed frame (reserved block type, a block over its maximum size, larger than
 * `limit`).
 */
export function walkFrame(b: Uint8Array, h: FrameHeader, resume: number, limit: number): FrameWalk {
  const blockMax = Math.min(h.windowSize, BLOCK_SIZE_MAX);
  let at = Math.max(resume, h.headerSize);
  for (;;) {
    if (at + BLOCK_HEADER > limit) return { kind: 'bad', why: `frame larger than ${limit} bytes` };
    if (b.length < at + BLOCK_HEADER) return { kind: 'short', need: at + BLOCK_HEADER, resume: at };
    const { last, reserved, size, stored } = readBlockHeader(b, at);
    if (reserved) return { kind: 'bad', why: 'reserved block type' };
    if (size > blockMax) return { kind: 'bad', why: `block of ${size} bytes over the maximum ${blockMax}` };
    const end = at + BLOCK_HEADER + stored;
    // the next block header (or the checksum) is needed too before going on
    const next = last ? end + (h.checksum ? CHECKSUM : 0) : end + BLOCK_HEADER;
    if (next > limit) return { kind: 'bad', why: `frame larger than ${limit} bytes` };
    if (b.length < next) return { kind: 'short', need: next, resume: at };
    if (last) return { kind: 'frame', size: next, header: h };
    at = end;
  }
}
