// GNU tar drivers for inner archives (FORMAT.md §4.1, §4.4): streaming create with --xform naming
// and streaming extract. Multi-volume (format 2) drivers live in gnu-tar-multivolume.ts.
import type { Readable, Writable } from 'node:stream';
import { fail } from '../errors.js';
import { spawnTar, type TarRunOptions } from './tar-process.js';

export { checkGnuTar, findTar, type TarRunOptions } from './tar-process.js';
export { tarCreateMultiVolume, tarExtractMultiVolume, type MultiVolumeExtractor } from './gnu-tar-multivolume.js';

export interface TarCreateOptions extends TarRunOptions {
  /** Directory tar changes into (`-C`); the process cwd is never changed. */
  dir: string;
  /** The entry inside `dir` to archive: a basename, or '.' for the whole directory. */
  name: string;
  /** What `name` becomes in the archive, e.g. `vm3/private.img` or `vm9/.`. */
  archiveName: string;
  dereference?: boolean;
  /** `--use-compress-program=<p>` (compression inside tar, formats 3/4). */
  compressProgram?: string;
}

export interface TarExtractOptions extends TarRunOptions {
  /** Target directory (`-C`). */
  dir: string;
  /** Inner member names to extract, e.g. `vm3/private.img` (empty: everything). */
  members: string[];
  compressProgram?: string;
  /** `tar -t` instead of `-x`: verify/list only. */
  listOnly?: boolean;
}

/** Escape a literal for a GNU tar (POSIX basic) regex between ':' delimiters. */
function escapeRegex(s: string): string {
  return s.replace(/[\\.[\]*^$:]/g, (c) => `\\${c}`);
}

/** Escape a literal for the replacement part of a tar `s:::` expression (`\`, `&`, delimiter). */
function escapeReplacement(s: string): string {
  return s.replace(/[\\&:]/g, (c) => `\\${c}`);
}

/** The `--xform` expression renaming `name` to `archiveName` at the start of every member name. */
export function xformExpression(name: string, archiveName: string): string {
  return `s:^${escapeRegex(name)}:${escapeReplacement(archiveName)}:`;
}

function checkArg(what: string, v: string): void {
  if (v === '' || /[\0\n]/.test(v)) fail('ERR_UNSAFE_NAME', `${what} ${JSON.stringify(v)} is empty or contains NUL/newline`, { file: v });
}

/** Options of `tar -Pc` shared by the single-stream and multi-volume create (no -f, no operands). */
export function createOptionArgs(opts: TarCreateOptions): string[] {
  checkArg('name', opts.name);
  checkArg('archive name', opts.archiveName);
  if (opts.name.includes('/') && opts.name !== '.') fail('ERR_UNSAFE_NAME', `name ${JSON.stringify(opts.name)} must be a single path component`, { file: opts.name });
  const args = ['-Pc', '--sparse', '--no-unquote', '-C', opts.dir];
  if (opts.dereference) args.push('--dereference');
  args.push(`--xform=${xformExpression(opts.name, opts.archiveName)}`);
  if (opts.compressProgram !== undefined) args.push(`--use-compress-program=${opts.compressProgram}`);
  return args;
}

/**
 * Start `tar -Pc --sparse -C <dir> [--dereference] --xform=s:^<name>:<archiveName>: [...] -f - -- <name>`;
 * read the inner archive from `stdout`, then await `done` (ERR_TAR_FAILED on a non-zero exit).
 */
export function tarCreateStream(opts: TarCreateOptions): { stdout: Readable; done: Promise<void> } {
  const args = [...createOptionArgs(opts), '-f', '-', '--', opts.name];
  const p = spawnTar(args, { ...opts, stdin: 'ignore', stdout: 'pipe', file: `${opts.dir}/${opts.name}` });
  if (!p.stdout) fail('ERR_INTERNAL', 'tar has no stdout');
  return { stdout: p.stdout, done: p.done };
}

/** Arguments of `tar -x[t] --sparse -k --no-same-owner --no-same-permissions -C <dir> [...]` (no -f). */
export function extractOptionArgs(opts: TarExtractOptions): string[] {
  for (const m of opts.members) checkArg('member', m);
  const args = [opts.listOnly ? '-t' : '-x', '--sparse', '-k', '--no-same-owner', '--no-same-permissions', '--no-unquote', '-C', opts.dir];
  if (opts.compressProgram !== undefined) args.push(`--use-compress-program=${opts.compressProgram}`);
  return args;
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
