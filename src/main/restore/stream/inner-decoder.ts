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
  if (filter.kind === 'gunzip') return createGunzip({ chunkSize: OUT_CHUNK });
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
