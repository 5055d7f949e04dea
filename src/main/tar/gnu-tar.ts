// GNU tar drivers for inner archives (FORMAT.md §4.1, §4.4): streaming create with --xform naming
// and streaming extract. Multi-volume (format 2) drivers live in gnu-tar-multivolume.ts.
import type { Readable, Writable } from 'node:stream';
import { fail } from '../errors.js';
import { createOptionArgs, extractOptionArgs, type TarCreateOptions, type TarExtractOptions } from './tar-args.js';
import { spawnTar } from './tar-process.js';
import { bytesReadBy } from '../io/proc-io.js';

export { checkGnuTar, findTar, type TarRunOptions } from './tar-process.js';
export { xformExpression, type TarCreateOptions, type TarExtractOptions } from './tar-args.js';
export { tarCreateMultiVolume, tarExtractMultiVolume, type MultiVolumeExtractor } from './gnu-tar-multivolume.js';

/**
 * Start `tar -Pc --sparse -C <dir> [--dereference] --xform=s:^<name>:<archiveName>: [...] -f - -- <name>`;
 * read the inner archive from `stdout`, then await `done` (ERR_TAR_FAILED on a non-zero exit).
 */
export function tarCreateStream(opts: TarCreateOptions): { stdout: Readable; done: Promise<void>; inputBytes: () => number | undefined } {
  const args = [...createOptionArgs(opts), '-f', '-', '--', opts.name];
  const p = spawnTar(args, { ...opts, stdin: 'ignore', stdout: 'pipe', file: `${opts.dir}/${opts.name}` });
  if (!p.stdout) fail('ERR_INTERNAL', 'tar has no stdout');
  // with a compression program, stdout says nothing of how much of the input tar has read
  return { stdout: p.stdout, done: p.done, inputBytes: () => (p.hasExited() ? undefined : bytesReadBy(p.pid)) };
}

/**
 * Start `tar -x[t] ... -C <dir> -f - -- <members>`; write the inner archive to `stdin` and end it,
 * then await `done`. A write error (EPIPE) on stdin means tar stopped: `done` says why.
 * `listing` holds tar's stdout lines (member names for `listOnly`).
 */
export function tarExtractStream(opts: TarExtractOptions): { stdin: Writable; done: Promise<void>; listing: Promise<string[]> } {
  const args = [...extractOptionArgs(opts), '-f', '-', '--', ...opts.members];
  const p = spawnTar(args, {
    ...opts,
    stdin: 'pipe',
    stdout: opts.listOnly ? 'pipe' : 'ignore',
    collectLines: opts.listOnly === true,
    file: opts.members.join(' '),
  });
  if (!p.stdin) fail('ERR_INTERNAL', 'tar has no stdin');
  return { stdin: p.stdin, done: p.done, listing: p.lines };
}
