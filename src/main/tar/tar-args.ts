// Command-line arguments of the GNU tar drivers (FORMAT.md §4.1, §4.4): option types, the --xform
// expression with regex/replacement escaping, and the create/extract option lists.
import { fail } from '../errors.js';
import type { TarRunOptions } from './tar-process.js';

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
  if ((opts.name.includes('/') || opts.name === '..') && opts.name !== '.') fail('ERR_UNSAFE_NAME', `name ${JSON.stringify(opts.name)} must be a single path component`, { file: opts.name });
  const args = ['-Pc', '--sparse', '--no-unquote', '-C', opts.dir];
  if (opts.dereference) args.push('--dereference');
  args.push(`--xform=${xformExpression(opts.name, opts.archiveName)}`);
  if (opts.compressProgram !== undefined) args.push(`--use-compress-program=${opts.compressProgram}`);
  return args;
}

/** Arguments of `tar -x[t] --sparse -k --no-same-owner --no-same-permissions -C <dir> [...]` (no -f). */
export function extractOptionArgs(opts: TarExtractOptions): string[] {
  for (const m of opts.members) checkArg('member', m);
  return [opts.listOnly ? '-t' : '-x', '--sparse', '-k', '--no-same-owner', '--no-same-permissions', '--no-unquote', '-C', opts.dir];
}
