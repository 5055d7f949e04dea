// Parses human sizes for options like --max-memory and --chunk-size: 1048576, 64K, 100M, 1G, 1.5GiB.
import { fail } from '../errors.js';

const units: Record<string, number> = { '': 1, b: 1, k: 1024, kb: 1024, kib: 1024, m: 1024 ** 2, mb: 1024 ** 2, mib: 1024 ** 2, g: 1024 ** 3, gb: 1024 ** 3, gib: 1024 ** 3, t: 1024 ** 4, tib: 1024 ** 4 };

/** Parse a size with an optional binary unit suffix; throws ERR_USAGE naming the option. */
export function parseSize(text: string, option: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(text);
  const mult = m ? units[(m[2] ?? '').toLowerCase()] : undefined;
  if (!m || mult === undefined) fail('ERR_USAGE', `${option}: invalid size '${text}' (examples: 512M, 1G, 104857600)`);
  const v = Math.floor(Number(m[1]) * mult);
  if (!Number.isSafeInteger(v) || v <= 0) fail('ERR_USAGE', `${option}: size must be positive: '${text}'`);
  return v;
}

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
