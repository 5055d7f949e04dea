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
 *  with the data. Each frame is decoded on its own (Node 22 decodes only the first of several). */
export function zstdDecompressSmall(data: Uint8Array, maxBytes: number): Buffer {
  const z = zstd();
  const bounds = new ZstdFrameBounds();
  const ends: number[] = [];
  bounds.feed(data, ends);
  if (!bounds.wholeFrames()) throw new Error('the bytes after the last zstd frame are not a whole frame (trailing data, or a frame cut off)');
  const out: Buffer[] = [];
  let left = Math.max(1, maxBytes);
  let at = 0;
  for (const end of ends) {
    const part = z.zstdDecompressSync(data.subarray(at, end), { maxOutputLength: left, params: { [z.c.windowLogMax]: ZSTD_WINDOW_LOG_MAX } });
    out.push(part);
    left -= part.length;
    at = end;
    // the cap is on the whole output: a frame reaching it leaves nothing for the next
    if (left === 0 && at < data.length) throw new RangeError(`zstd output larger than ${maxBytes} bytes`);
  }
  return out.length === 1 ? out[0]! : Buffer.concat(out);
}

/** A decoder for `filter`, or null when the inner stream is not compressed or a program runs it. */
export function createInnerDecoder(filter: InnerFilter): Transform | null {
  if (filter.kind === 'gunzip') {
    const g = createGunzip({ chunkSize: OUT_CHUNK }) as ZlibStream;
    refuseTrailingData(g, gzipEnd());
    return g;
  }
  if (filter.kind !== 'zstd') return null;
  const z = zstd();
  const d = z.createZstdDecompress({ chunkSize: OUT_CHUNK, params: { [z.c.windowLogMax]: ZSTD_WINDOW_LOG_MAX } }) as ZlibStream;
  refuseTrailingData(d, zstdEnd());
  return d;
}

/**
 * What may follow the end of a stream, for `refuseTrailingData`: `see` is shown every chunk fed, at
 * its offset in the stream; `refuse` says why the stream may not end with `consumed` of the `fed`
 * bytes taken by zlib (null: it may).
 */
interface EndRule {
  /** returns where zlib's input must be cut (`cuts`, offsets in `chunk`) and from where none of it
   *  may reach zlib (`stop`); nothing: all of it, in one piece */
  see(chunk: Uint8Array, at: number): { cuts: number[]; stop: number } | void;
  refuse(consumed: number, fed: number): string | null;
}

/**
 * node:zlib's zstd decoder stops at bytes after a frame that are not a frame, without an error: it
 * ends its output early and drops the rest (`zstd -d` fails on them). Input left unconsumed fails
 * the stream. It also takes 1-3 bytes of a magic number after the last frame as the start of
 * another and ends without an error: the frame bounds followed beside it must end with the input.
 */
function zstdEnd(): EndRule {
  const bounds = new ZstdFrameBounds();
  return {
    // one frame per input to zlib (Node 22 drops the frames after the first of one input); bytes
    // that begin no frame never reach it (Node 22 fails on them, Node 24 stops): the end of the
    // input refuses them, the same on both
    see: (chunk, at) => {
      const ends: number[] = [];
      bounds.feed(chunk, ends);
      const lost = bounds.lostAt;
      const stop = lost === null ? chunk.length : Math.min(chunk.length, Math.max(0, lost - at));
      return { cuts: ends.filter((e) => e < stop), stop };
    },
    refuse: (consumed, fed) => {
      const left = fed - consumed;
      if (left > 0) return `${left} bytes after the last zstd frame are not zstd data`;
      const partial = bounds.partial();
      return partial > 0 ? `${partial} bytes after the last zstd frame are not a whole frame (trailing data, or a frame cut off)` : null;
    },
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
 * zero bytes there; anything else is trailing garbage (exit 2): the offset of the last non-zero
 * byte fed is followed, and the bytes zlib did not consume must all be zero.
 */
function gzipEnd(): EndRule {
  let lastData = -1;
  return {
    see: (chunk, at) => {
      const i = lastNonZero(chunk);
      if (i >= 0) lastData = at + i;
    },
    refuse: (consumed, fed) => (lastData >= consumed ? `${fed - consumed} bytes after the end of the gzip stream are not gzip data (trailing garbage)` : null),
  };
}

/**
 * Hold zlib decoder `d` to `rule` at the end of its stream (see zstdEnd, gzipEnd): when zlib ends
 * its output, and at the end of the input. An end of output before the input ended (zlib stopped at
 * bytes it does not take) is held back until the input ends, so that no reader takes the output for
 * whole before the rest is known; the bytes fed after it are not given to zlib, only to the rule.
 */
function refuseTrailingData(d: ZlibStream, rule: EndRule): void {
  let fed = 0;
  /** zlib ended its output before the input ended */
  let endedEarly = false;
  let flushing = false;
  /** bytes the rule kept from zlib (they begin no frame) */
  let withheld = 0;
  const refused = (): Error | null => {
    const why = rule.refuse(d.bytesWritten, fed);
    return why === null ? null : new Error(why);
  };
  const transform = d._transform.bind(d);
  const flush = d._flush.bind(d);
  const push = d.push.bind(d);
  d._transform = (chunk: Buffer, encoding: BufferEncoding, cb: TransformCallback): void => {
    // zlib's own end of input (its _flush) comes through here as an empty chunk: to zlib as it is
    if (chunk.length === 0) return endedEarly ? cb(refused()) : transform(chunk, encoding, cb);
    const { cuts, stop } = rule.see(chunk, fed) ?? { cuts: [], stop: chunk.length };
    fed += chunk.length;
    withheld += chunk.length - stop;
    // the pieces one after the other, each once zlib took the one before
    let at = 0;
    let cut = 0;
    const next = (e?: Error | null): void => {
      if (e) return cb(e);
      if (endedEarly) return cb(refused());
      if (at >= stop) return cb();
      const end = cut < cuts.length ? cuts[cut++]! : stop;
      const piece = at === 0 && end === chunk.length ? chunk : chunk.subarray(at, end);
      at = end;
      transform(piece, encoding, next);
    };
    next();
  };
  d._flush = (cb: TransformCallback): void => {
    flushing = true;
    if (endedEarly) cb();
    // bytes kept from zlib: the rule's verdict, not zlib's on an input that stopped short of them
    else if (withheld > 0) cb(refused());
    else flush(cb);
  };
  d.push = (chunk: unknown, encoding?: BufferEncoding): boolean => {
    if (chunk === null) {
      const e = refused();
      if (e !== null) {
        d.destroy(e);
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
