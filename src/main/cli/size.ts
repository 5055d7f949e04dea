// Parses human sizes for options like --max-memory and --chunk-size: 1048576, 64K, 100M, 1G, 1.5GiB.
import { fail } from '../errors.js';

const units: Record<string, number> = { '': 1, b: 1, k: 1024, kb: 1024, kib: 1024, m: 1024 ** 2, mb: 1024 ** 2, mib: 1024 ** 2, g: 1024 ** 3, gb: 1024 ** 3, gib: 1024 ** 3, t: 1024 ** 4, tb: 1024 ** 4, tib: 1024 ** 4 };

/** Parse a size with an optional binary unit suffix. Every bad value (not a number, an unknown unit,
 *  zero, negative, empty, too large) gets the same ERR_USAGE message naming the option. */
export function parseSize(text: string, option: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(text);
  const mult = m ? units[(m[2] ?? '').toLowerCase()] : undefined;
  const v = m && mult !== undefined ? Math.floor(Number(m[1]) * mult) : NaN;
  if (!Number.isSafeInteger(v) || v <= 0) fail('ERR_USAGE', `${option}: invalid size '${text}': expected a positive number of bytes with an optional unit K, M, G or T (powers of 1024), e.g. 512M`);
  return v;
}

/** Commander argument parser for a size option (its error reaches parseOrExit unchanged). */
export const sizeOption = (option: string) => (text: string): number => parseSize(text, option);

export { exactSize, formatBytes } from '../size-text.js';
