// The allow-listed external compression programs (`<filter>` / `<filter> -d`): found in PATH and
// run from the main thread only (worker code spawns nothing). GNU tar runs them for the data
// streams (`--use-compress-program`); the small pieces (qubes.xml) are run through them here.
import { spawnSync } from 'node:child_process';
import { CodecError } from '../../workers/codec-error.js';
import { ALLOWED_FILTERS, allowedFilter } from '../../workers/compress.js';
import { diesWithUs, findInPath } from './child-lifetime.js';

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
  const args = mode === 'decompress' ? ['-d'] : compressArgs;
  const [file, argv] = diesWithUs(exe, args); // blocks our event loop: must not outlive a kill -9
  const r = spawnSync(file, argv, { input, maxBuffer: maxOutput, env: { ...process.env, LC_ALL: 'C' }, stdio: ['pipe', 'pipe', 'pipe'] });
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
