// Compression codecs: in-process gzip members and gunzip/inflate into caller memory (the fast path),
// and the allow-listed external filter programs (`<filter>` / `<filter> -d`, the slow path).
import { spawnSync } from 'node:child_process';
import { accessSync, constants as fsConstants, statSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { CodecError } from './codec-error.js';
import { zlibInto } from './zlib-into.js';

/** The only compression programs ever run (the `compression-filter` values Qubes accepts). */
export const ALLOWED_FILTERS = ['gzip', 'pigz', 'bzip2', 'pbzip2', 'xz', 'lzma', 'zstd', 'zstdmt'] as const;
export type FilterName = (typeof ALLOWED_FILTERS)[number];

/** Upper bound of one gzip member's size for `n` input bytes (zlib's deflateBound plus slack). */
export function gzipBound(n: number): number {
  return n + Math.floor(n / 4096) + Math.floor(n / 16384) + Math.floor(n / 2 ** 25) + 64;
}

/** Compress `input` into one complete gzip member in `output`; returns its length, or 'too-large'
 *  when `output` is smaller than needed (capacity gzipBound(input.length) always suffices). */
export function gzipBlockInto(input: Uint8Array, output: Uint8Array, level: number): number | 'too-large' {
  if (!Number.isInteger(level) || level < 0 || level > 9) throw new RangeError(`gzip level ${level} not in 0..9`);
  return zlibInto('gzip', input, output, level);
}

/** Decompress a gzip stream (one or more members) into `output`; returns the length or 'too-large';
 *  throws CodecError('bad-data') on corrupt or truncated input. */
export function gunzipInto(input: Uint8Array, output: Uint8Array): number | 'too-large' {
  return zlibInto('gunzip', input, output);
}

/** Decompress a zlib stream (R2-beta3 `openssl enc -z`) into `output`; returns the length or 'too-large'. */
export function inflateInto(input: Uint8Array, output: Uint8Array): number | 'too-large' {
  return zlibInto('inflate', input, output);
}

/** The allow-list's own entry for `name`, or null: callers spawn only what this returns. */
export function allowedFilter(name: string): FilterName | null {
  return ALLOWED_FILTERS.find((f) => f === name) ?? null;
}

/** Full path of an allow-listed filter program found in PATH, or null. */
export function filterPath(filter: string, path = process.env['PATH'] ?? ''): string | null {
  const f = allowedFilter(filter);
  if (f === null) return null;
  for (const dir of path.split(delimiter)) {
    if (dir === '') continue;
    const full = join(dir, f);
    try {
      accessSync(full, fsConstants.X_OK);
      if (statSync(full).isFile()) return full;
    } catch {
      // not in this directory
    }
  }
  return null;
}

/** Whether an allow-listed filter program is installed (a `which`-style PATH lookup). */
export function filterAvailable(filter: string): boolean {
  return filterPath(filter) !== null;
}

/** Run `<filter>` (compress) or `<filter> -d` (decompress) over `input` and return its output.
 *  The slow path (spawn, whole-buffer pipes, fresh memory): for tests and non-gzip v2 volumes only.
 *  Refuses names not on the allow-list with CodecError('bad-params'); a failing program gives 'bad-data'. */
export function runFilterSync(filter: string, mode: 'compress' | 'decompress', input: Uint8Array, maxOutput = 1024 * 1024 * 1024): Buffer {
  const f = allowedFilter(filter);
  if (f === null) throw new CodecError('bad-params', `compression filter not allowed: ${JSON.stringify(filter)} (allowed: ${ALLOWED_FILTERS.join(', ')})`);
  const exe = filterPath(f);
  if (exe === null) throw new CodecError('bad-params', `compression filter ${f} is not installed`);
  const args = mode === 'decompress' ? ['-d'] : [];
  const r = spawnSync(exe, args, { input, maxBuffer: maxOutput, env: { ...process.env, LC_ALL: 'C' }, stdio: ['pipe', 'pipe', 'pipe'] });
  if (r.error) {
    if ((r.error as NodeJS.ErrnoException).code === 'ENOBUFS') throw new CodecError('too-large', `${f} ${args.join(' ')}: output over ${maxOutput} bytes`);
    throw new CodecError('bad-data', `${f} ${args.join(' ')} could not run: ${r.error.message}`);
  }
  if (r.status !== 0) {
    const tail = r.stderr.toString('utf8').trim().slice(-500);
    throw new CodecError('bad-data', `${f} ${args.join(' ')} exited with ${r.status ?? r.signal}: ${tail}`);
  }
  return r.stdout;
}
