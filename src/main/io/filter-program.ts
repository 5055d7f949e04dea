// The allow-listed external compression programs (`<filter>` / `<filter> -d`): found in PATH and
// run from the main thread only (worker code spawns nothing). GNU tar runs them for the data
// streams (`--use-compress-program`); the small pieces (qubes.xml) are run through them here.
import { spawnSync } from 'node:child_process';
import { CodecError } from '../../workers/codec-error.js';
import { ALLOWED_FILTERS, allowedFilter } from '../../workers/compress.js';
import { ZSTD_WINDOW_LOG_MAX } from '../../workers/zstd-zlib.js';
import { diesWithUs, findInPath } from './child-lifetime.js';
import { oneLine } from './tail-buffer.js';

/** Decoder memory the programs may take, as the in-process decoders allow: zstd's window as
 *  node:zlib's (2^ZSTD_WINDOW_LOG_MAX), xz/lzma enough for every preset (-9e: a 64 MiB dictionary);
 *  a hostile stream header asking for more fails the file instead of the machine's memory. */
const DECODER_LIMITS: Record<string, readonly string[]> = {
  zstd: [`--memory=${2 ** ZSTD_WINDOW_LOG_MAX / 1024 / 1024}MiB`],
  zstdmt: [`--memory=${2 ** ZSTD_WINDOW_LOG_MAX / 1024 / 1024}MiB`],
  xz: ['--memlimit-decompress=128MiB'],
  lzma: ['--memlimit-decompress=128MiB'],
};

/** The options that bound `<filter> -d`'s decoder memory (none for a program without such a bound):
 *  every way we run a decompression program passes them (image decoder, tar -I, qubes.xml). */
export function decoderLimitArgs(filter: string): readonly string[] {
  return DECODER_LIMITS[filter] ?? [];
}

/** Whether a line of stderr is `program` itself saying it ignored data after the end of its stream
 *  (bzip2 exits 0 after "bzip2: (stdin): trailing garbage after EOF ignored"; the other programs
 *  fail on such data). Only the program's own lines count: tar's warnings quote file names, which
 *  may say anything. An authenticated stream with bytes after its end is not what we wrote: the
 *  file fails as corrupt. */
function saysIgnoredTrailingData(line: string, program: string): boolean {
  return line.startsWith(`${program}: `) && /trailing garbage/i.test(line);
}

/** The error text for `command` (e.g. `bzip2 -d`) having said `line` of saysIgnoredTrailingData. */
export function trailingDataMessage(command: string, line: string): string {
  return `${command} found data after the end of its stream: ${line}`;
}

/** The first line of `stderr` (the program's own) for which saysIgnoredTrailingData holds, or null. */
export function ignoredTrailingData(stderr: string, program: string): string | null {
  return stderr.split('\n').map((l) => l.trim()).find((l) => saysIgnoredTrailingData(l, program)) ?? null;
}

/** Full path of an allow-listed filter program found in PATH, or null. */
export function filterPath(filter: string, path = process.env['PATH'] ?? ''): string | null {
  const f = allowedFilter(filter);
  return f === null ? null : findInPath(f, path);
}

/** Whether an allow-listed filter program is installed (a `which`-style PATH lookup). */
export function filterAvailable(filter: string): boolean {
  return filterPath(filter) !== null;
}

/** Run `<filter> [args]` (compress) or `<filter> -d` (decompress) over `input` and return its output.
 *  The slow path (spawn, whole-buffer pipes, fresh memory): for small pieces and tests only.
 *  Refuses names not on the allow-list with CodecError('bad-params'); a failing program gives 'bad-data'. */
export function runFilterSync(filter: string, mode: 'compress' | 'decompress', input: Uint8Array, maxOutput = 1024 * 1024 * 1024, compressArgs: string[] = []): Buffer {
  const f = allowedFilter(filter);
  if (f === null) throw new CodecError('bad-params', `compression filter not allowed: ${JSON.stringify(filter)} (allowed: ${ALLOWED_FILTERS.join(', ')})`);
  const exe = filterPath(f);
  if (exe === null) throw new CodecError('bad-params', `compression filter ${f} is not installed`);
  const args = mode === 'decompress' ? ['-d', ...decoderLimitArgs(f)] : compressArgs;
  const [file, argv] = diesWithUs(exe, args); // blocks our event loop: must not outlive a kill -9
  const r = spawnSync(file, argv, { input, maxBuffer: maxOutput, env: { ...process.env, LC_ALL: 'C' }, stdio: ['pipe', 'pipe', 'pipe'] });
  if (r.error) {
    if ((r.error as NodeJS.ErrnoException).code === 'ENOBUFS') throw new CodecError('too-large', `${f} ${args.join(' ')}: output over ${maxOutput} bytes`);
    throw new CodecError('bad-data', `${f} ${args.join(' ')} could not run: ${r.error.message}`);
  }
  if (r.status !== 0) {
    const tail = oneLine(r.stderr.toString('utf8').trim().slice(-500));
    throw new CodecError('bad-data', `${f} ${args.join(' ')} exited with ${r.status ?? r.signal}: ${tail}`);
  }
  const ignored = mode === 'decompress' ? ignoredTrailingData(r.stderr.toString('utf8'), f) : null;
  if (ignored !== null) throw new CodecError('bad-data', trailingDataMessage(`${f} -d`, ignored));
  return r.stdout;
}
