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

/** Format bytes for humans: 1.2 GiB, 340 MiB, 12 KiB. */
export function formatBytes(n: number): string {
  const abs = Math.abs(n);
  if (abs < 1024) return `${n} B`;
  const u = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let i = 0;
  while (Math.abs(v) >= 1024 && i < u.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v >= 100 ? v.toFixed(0) : v.toFixed(1)} ${u[i]}`;
}

/** Bytes in the largest binary unit that divides them exactly: 64 KiB, 100 MiB, 100000 KiB, 1000 B. */
export function exactSize(n: number): string {
  for (const [unit, div] of [['GiB', 1024 ** 3], ['MiB', 1024 ** 2], ['KiB', 1024]] as const) if (n >= div && n % div === 0) return `${n / div} ${unit}`;
  return `${n} B`;
}
