// Small helpers for codecs that read an input range front to back while writing an output range
// that may be the same memory (in-place work on shared slots), plus slice-wise feeding of ciphers.
import { SLICE_BYTES } from './codec-error.js';
import { GarbagePacer } from './young-gc.js';

/** Throw unless `output` may be written while `input` is read front to back, when output byte
 *  `i + shift` is written only after input byte `i` was consumed: the ranges are disjoint, or on the
 *  same memory the output starts at least `shift` bytes before the input (shift < 0: may start later). */
export function assertSafeOverlap(input: Uint8Array, output: Uint8Array, shift: number, what: string): void {
  if (input.buffer !== output.buffer) return;
  const inStart = input.byteOffset;
  const outStart = output.byteOffset;
  const disjoint = outStart + output.byteLength <= inStart || inStart + input.byteLength <= outStart;
  if (disjoint || outStart + shift <= inStart) return;
  throw new RangeError(`${what}: output overlaps input unsafely (output must start ${shift} bytes before input or be disjoint)`);
}

/** Feed `input` to `update` in slices, writing each result into `output` from `at`; returns the new
 *  position. `written` is told the position after each slice is in `output`. */
export function pumpSlices(update: (part: Uint8Array) => Uint8Array, input: Uint8Array, output: Uint8Array, at: number, what: string, written?: (w: number) => void): number {
  let w = at;
  const pacer = new GarbagePacer(); // each `update` result is a fresh Buffer: see young-gc.ts
  for (let i = 0; i < input.length; i += SLICE_BYTES) {
    const part = update(input.subarray(i, Math.min(i + SLICE_BYTES, input.length)));
    w = put(output, w, part, what);
    written?.(w);
    pacer.allocated(part.length);
  }
  return w;
}

/** Copy `part` into `output` at `at`, checking capacity; returns the new position. */
export function put(output: Uint8Array, at: number, part: Uint8Array, what: string): number {
  if (at + part.length > output.length) throw new RangeError(`${what}: output capacity ${output.length} too small`);
  output.set(part, at);
  return at + part.length;
}

/** A Buffer view of the same memory as `u` (no copy). */
export function asBuffer(u: Uint8Array): Buffer {
  return Buffer.isBuffer(u) ? u : Buffer.from(u.buffer, u.byteOffset, u.byteLength);
}

/** A copy of `u[start, end)` (unlike `Buffer#slice`, which returns a view). */
export function copyOf(u: Uint8Array, start = 0, end = u.length): Uint8Array {
  return Uint8Array.prototype.slice.call(u, start, end);
}
