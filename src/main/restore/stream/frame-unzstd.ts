// Parallel zstd decoding of an inner archive: the units of parallel-units.ts are zstd frames, found
// by walking their block headers (zstd-frame-walk.ts). Our backup writes one frame per 4 MiB block
// with its content size; a frame goes to a worker when it is complete, declares its content size
// (1 byte to 8 MiB), uses no dictionary and its window fits ZSTD_WINDOW_LOG_MAX. Skippable frames
// are skipped (they decode to nothing). Anything else — a stream of the zstd program, which knows no
// content size when it reads a pipe (Qubes' archives), or bytes that are no frame — hands the rest
// of the stream, from that frame on, to the streaming decoder, which decides about it.
import { zstdBound } from '../../../workers/compress.js';
import { zstdDirectAvailable } from '../../../workers/zlib-into.js';
import { ZSTD_WINDOW_LOG_MAX } from '../../../workers/zstd-zlib.js';
import { MAX_UNIT_OUT, type UnitFormat, type UnitMeasure } from './parallel-units.js';
import { readFrameHeader, walkFrame } from '../../../workers/zstd-frame.js';

/** Largest frame (compressed bytes) decoded in parallel: any frame of MAX_UNIT_OUT content. */
export const MAX_FRAME_IN = zstdBound(MAX_UNIT_OUT);

const OTHER: UnitMeasure = { kind: 'other' };

export const zstdFrames: UnitFormat = {
  unit: 'zstd frame',
  filter: 'zstd',
  task: 'unzstdFrame',
  maxIn: MAX_FRAME_IN,
  available: zstdDirectAvailable,
  measure(b: Uint8Array, resume: number): UnitMeasure {
    const r = readFrameHeader(b);
    if (r.kind === 'short') return { kind: 'short', need: r.need, resume: 0 };
    if (r.kind === 'skippable') return { kind: 'skip', size: r.size };
    if (r.kind === 'bad') return OTHER;
    const h = r.header;
    const fcs = h.contentSize;
    if (fcs === null || fcs === 0 || fcs > MAX_UNIT_OUT || h.dictId !== 0 || h.windowSize > 2 ** ZSTD_WINDOW_LOG_MAX) return OTHER;
    const w = walkFrame(b, h, resume, MAX_FRAME_IN);
    if (w.kind === 'bad') return OTHER;
    if (w.kind === 'short') return w;
    return { kind: 'unit', size: w.size, outSize: fcs };
  },
};
