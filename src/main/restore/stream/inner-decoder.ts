// The one streaming decompressor of an inner archive, for both consumers (GNU tar's stdin in
// file-extractor.ts, the in-process image writer in image-extractor.ts): none, gunzip or zstd
// (node:zlib). Errors, including data the decoder would otherwise skip silently, come out as the
// stream's 'error' event.
import { createGunzip } from 'node:zlib';
import type { Transform, TransformCallback } from 'node:stream';
import { QvmBackupError } from '../../errors.js';
import { ZSTD_WINDOW_LOG_MAX, zstdZlib } from '../../../workers/zstd-zlib.js';
import type { InnerFilter } from './filters.js';
import { ZstdFrameBounds } from './zstd-frame-bounds.js';

/** Output buffers of 1 MiB: streaming gunzip runs ~2x faster than with the 16 KiB default. */
const OUT_CHUNK = 1024 * 1024;

type ZlibStream = Transform & { bytesWritten: number };

function zstd(): NonNullable<typeof zstdZlib> {
  if (zstdZlib === null) throw new QvmBackupError('ERR_INTERNAL', 'zstd decoder requested on a runtime without zstd in node:zlib');
  return zstdZlib;
}

/** Decode a small zstd stream (qubes.xml) at once, output capped at `maxBytes` (RangeError /
 *  ERR_BUFFER_TOO_LARGE above). The one-shot API ignores bytes after the last frame that are no
 *  frame (and 1-3 bytes of a magic number); `zstd -d` refuses them, so the frame bounds must end
 *  with the data. */
export function zstdDecompressSmall(data: Uint8Array, maxBytes: number): Buffer {
  const z = zstd();
  const bounds = new ZstdFrameBounds();
  bounds.feed(data);
  if (!bounds.wholeFrames()) throw new Error('the bytes after the last zstd frame are not a whole frame (trailing data, or a frame cut off)');
  return z.zstdDecompressSync(data, { maxOutputLength: Math.max(1, maxBytes), params: { [z.c.windowLogMax]: ZSTD_WINDOW_LOG_MAX } });
}

/** A decoder for `filter`, or null when the inner stream is not compressed or a program runs it. */
export function createInnerDecoder(filter: InnerFilter): Transform | null {
  if (filter.kind === 'gunzip') {
    const g = createGunzip({ chunkSize: OUT_CHUNK }) as ZlibStream;
    refuseGzipTrailingData(g);
    return g;
  }
  if (filter.kind !== 'zstd') return null;
  const z = zstd();
  const d = z.createZstdDecompress({ chunkSize: OUT_CHUNK, params: { [z.c.windowLogMax]: ZSTD_WINDOW_LOG_MAX } }) as ZlibStream;
  refuseTrailingData(d);
  return d;
}

/**
 * node:zlib's zstd decoder stops at bytes after a frame that are not a frame, without an error: it
 * ends its output early and drops the rest (`zstd -d` fails on them, and gunzip does too). Count what
 * went in; an end of output while input is left unconsumed (`bytesWritten` < fed) fails the stream.
 * It also takes 1-3 bytes of a magic number after the last frame as the start of another and ends
 * without an error: the frame bounds followed beside it must end with the input too.
 */
function refuseTrailingData(d: ZlibStream): void {
  let fed = 0;
  const bounds = new ZstdFrameBounds();
  const transform = d._transform.bind(d);
  const push = d.push.bind(d);
  d._transform = (chunk: Buffer, encoding: BufferEncoding, cb: TransformCallback): void => {
    fed += chunk.length;
    bounds.feed(chunk);
    transform(chunk, encoding, cb);
  };
  d.push = (chunk: unknown, encoding?: BufferEncoding): boolean => {
    if (chunk === null) {
      const left = fed - d.bytesWritten;
      const partial = bounds.partial();
      if (left > 0 || partial > 0) {
        const why = left > 0 ? `${left} bytes after the last zstd frame are not zstd data` : `${partial} bytes after the last zstd frame are not a whole frame (trailing data, or a frame cut off)`;
        d.destroy(new Error(why));
        return false;
      }
    }
    return push(chunk, encoding);
  };
}

/** The offset in `b` of its last byte that is not zero, or -1 (compressed data seldom ends in one). */
function lastNonZero(b: Uint8Array): number {
  let i = b.length - 1;
  while (i >= 0 && b[i] === 0) i--;
  return i;
}

/**
 * node:zlib's gunzip ends its output without an error at bytes after a gzip member that do not
 * start a new member with 0x1f (a zero byte, then anything) and drops them. `gzip -d` accepts only
 * zero bytes there; anything else is trailing garbage (exit 2). The offset of the last non-zero
 * byte fed is followed: the bytes zlib did not consume (`bytesWritten`..fed) must all be zero, and
 * so must any fed later. So that no reader takes the output for whole before that is known, zlib's
 * early end is held back until the input ends.
 */
function refuseGzipTrailingData(d: ZlibStream): void {
  let fed = 0;
  let lastData = -1;
  /** zlib ended its output before the input ended */
  let endedEarly = false;
  let flushing = false;
  const trailing = (): Error => new Error(`${fed - d.bytesWritten} bytes after the end of the gzip stream are not gzip data (trailing garbage)`);
  const transform = d._transform.bind(d);
  const flush = d._flush.bind(d);
  const push = d.push.bind(d);
  d._transform = (chunk: Buffer, encoding: BufferEncoding, cb: TransformCallback): void => {
    const at = lastNonZero(chunk);
    if (at >= 0) lastData = fed + at;
    fed += chunk.length;
    if (!endedEarly) return transform(chunk, encoding, cb);
    // zlib would not look at these bytes
    cb(at >= 0 ? trailing() : null);
  };
  d._flush = (cb: TransformCallback): void => {
    flushing = true;
    if (endedEarly) cb();
    else flush(cb);
  };
  d.push = (chunk: unknown, encoding?: BufferEncoding): boolean => {
    if (chunk === null) {
      if (lastData >= d.bytesWritten) {
        d.destroy(trailing());
        return false;
      }
      if (!flushing) {
        endedEarly = true;
        return false;
      }
    }
    return push(chunk, encoding);
  };
}
