// Compression codecs: in-process gzip members / zstd frames and gunzip/inflate into caller memory,
// and the allow-list of compression filter names. (The external programs are run from src/main:
// worker code spawns nothing and touches no files.)
import { MEMBER_MARKER_BYTES, markMember } from './gzip-member.js';
import { CodecError } from './codec-error.js';
import { zlibInto } from './zlib-into.js';
import { readFrameHeader, walkFrame } from './zstd-frame.js';
import { zstdZlib } from './zstd-zlib.js';

/** The only compression programs ever run (the `compression-filter` values Qubes accepts). */
export const ALLOWED_FILTERS = ['gzip', 'pigz', 'bzip2', 'pbzip2', 'xz', 'lzma', 'zstd', 'zstdmt'] as const;
export type FilterName = (typeof ALLOWED_FILTERS)[number];

/** Upper bound of one gzip member's size for `n` input bytes (zlib's deflateBound plus slack, plus
 *  our size subfield). */
export function gzipBound(n: number): number {
  return n + Math.floor(n / 4096) + Math.floor(n / 16384) + Math.floor(n / 2 ** 25) + 64 + MEMBER_MARKER_BYTES;
}

/** Codecs that compress independent blocks in workers: each block is one gzip member or one zstd
 *  frame, and the blocks concatenated are one valid stream for `gzip -d` / `zstd -d`. */
export type BlockCodec = 'gzip' | 'zstd';

/** Whether this runtime compresses `codec` in-process (zstd needs Node >= 22.15). */
export function blockCodecAvailable(codec: BlockCodec): boolean {
  return codec === 'gzip' || zstdZlib !== null;
}

/** Upper bound of one zstd frame's size for `n` input bytes (ZSTD_COMPRESSBOUND, plus the frame
 *  header and checksum). */
export function zstdBound(n: number): number {
  return n + (n >>> 8) + (n < 128 * 1024 ? (128 * 1024 - n) >>> 11 : 0) + 64;
}

/** Output capacity that always holds one compressed block of `n` bytes, whatever the codec. */
export function blockBound(n: number): number {
  return Math.max(gzipBound(n), zstdBound(n));
}

/** Compress `input` into one zstd frame in `output` (level 1-19, content size and checksum in the
 *  frame); returns its length, or 'too-large' when `output` is below zstdBound(input.length). */
export function zstdBlockInto(input: Uint8Array, output: Uint8Array, level: number): number | 'too-large' {
  if (!Number.isInteger(level) || level < 1 || level > 19) throw new RangeError(`zstd level ${level} not in 1..19`);
  return zlibInto('zstd', input, output, level);
}

/** One block with `codec`: gzipBlockInto or zstdBlockInto. */
export function compressBlockInto(codec: BlockCodec, input: Uint8Array, output: Uint8Array, level: number): number | 'too-large' {
  return codec === 'zstd' ? zstdBlockInto(input, output, level) : gzipBlockInto(input, output, level);
}

/** Compress `input` into one complete gzip member in `output`, carrying its size in a FEXTRA
 *  subfield (gzip-member.ts); returns its length, or 'too-large' when `output` is smaller than
 *  needed (capacity gzipBound(input.length) always suffices). */
export function gzipBlockInto(input: Uint8Array, output: Uint8Array, level: number): number | 'too-large' {
  if (!Number.isInteger(level) || level < 0 || level > 9) throw new RangeError(`gzip level ${level} not in 0..9`);
  if (output.length < MEMBER_MARKER_BYTES) return 'too-large';
  // zlib writes the member behind room for the subfield; markMember moves its header to the front
  const n = zlibInto('gzip', input, output.subarray(MEMBER_MARKER_BYTES), level);
  return n === 'too-large' ? n : markMember(output, n);
}

/** Decompress a gzip stream (one or more members) into `output`; returns the length or 'too-large';
 *  throws CodecError('bad-data') on corrupt or truncated input. */
export function gunzipInto(input: Uint8Array, output: Uint8Array): number | 'too-large' {
  return zlibInto('gunzip', input, output);
}

/** Decompress exactly one gzip member that fills `input` to its last byte into `output`, whose
 *  length must be the member's exact decompressed size; throws CodecError('bad-data') otherwise
 *  (trailing bytes, even zeros, a second member, a shorter or longer output, corrupt data). Needs
 *  zlibDirectAvailable() (the public API cannot tell where the member ended). */
export function gunzipMemberInto(input: Uint8Array, output: Uint8Array): number {
  const n = zlibInto('gunzip', input, output, 6, { exact: true });
  if (n !== output.length) throw new CodecError('bad-data', `gzip member decodes to ${n === 'too-large' ? 'more' : n} bytes, not the ${output.length} its trailer names`);
  return n;
}

/** Decompress exactly one zstd frame that fills `input` to its last byte into `output`, whose length
 *  must be the content size its header declares; throws CodecError('bad-data') otherwise (bytes after
 *  the frame, a second frame, another output size, corrupt data, a bad checksum). The frame is walked
 *  here too (the caller's walk is not trusted), and the decoder must consume it all and fill `output`
 *  exactly. Needs zstdDirectAvailable(). */
export function unzstdFrameInto(input: Uint8Array, output: Uint8Array): number {
  const head = readFrameHeader(input);
  const walk = head.kind === 'frame' ? walkFrame(input, head.header, 0, Number.POSITIVE_INFINITY) : head;
  if (walk.kind !== 'frame' || walk.size !== input.length) {
    const why = walk.kind === 'bad' ? walk.why : walk.kind === 'frame' ? `it ends at byte ${walk.size} of ${input.length}` : walk.kind === 'skippable' ? 'a skippable frame' : 'truncated';
    throw new CodecError('bad-data', `the input is not exactly one zstd frame: ${why}`);
  }
  if (walk.header.contentSize !== output.length) throw new CodecError('bad-data', `the zstd frame declares ${walk.header.contentSize ?? 'no'} content size, not ${output.length}`);
  const n = zlibInto('unzstd', input, output, 0, { exact: true });
  if (n !== output.length) throw new CodecError('bad-data', `zstd frame decodes to ${n === 'too-large' ? 'more' : n} bytes, not the ${output.length} its header names`);
  return n;
}

/** Decompress a zlib stream (R2-beta3 `openssl enc -z`) into `output`; returns the length or 'too-large'. */
export function inflateInto(input: Uint8Array, output: Uint8Array): number | 'too-large' {
  return zlibInto('inflate', input, output);
}

/** The allow-list's own entry for `name`, or null: callers spawn only what this returns. */
export function allowedFilter(name: string): FilterName | null {
  return ALLOWED_FILTERS.find((f) => f === name) ?? null;
}

