// Checks and flushes an extracted (untrusted) VM directory before it is moved into place: only
// regular files and directories may stay, symlinks are dropped, hard links and device nodes are
// refused; every file and directory is made durable (flushEntries).
import { constants, type Stats } from 'node:fs';
import { lstat, open, readdir, unlink } from 'node:fs/promises';
import path from 'node:path';
import { fail } from '../../errors.js';
import { printable } from '../stream/extraction.js';
import { findInPath } from '../../io/child-lifetime.js';
import { runShort } from '../../io/spawn.js';

/** What prepareTree did besides flushing. */
export interface TreeReport {
  files: number;
  bytes: number;
  /** Relative paths of symlinks that were removed (e.g. R2 `icon.png` → /usr/share/…). */
  removedSymlinks: string[];
}

/** Sanitize and (with `flush`) fsync the tree under `dir` (itself a real directory); throws
 *  ERR_UNSAFE_NAME on refusal. */
export async function prepareTree(dir: string, vm: string, flush = true, signal?: AbortSignal): Promise<TreeReport> {
  const report: TreeReport = { files: 0, bytes: 0, removedSymlinks: [] };
  const entries: string[] = [];
  await walk(dir, '', vm, report, 0, entries, signal);
  if (flush) await flushEntries(dir, entries, signal);
  return report;
}

/** From this many entries on, a tree's writeback is started by one syncfs(2) of its file system. */
export const SYNCFS_FROM_ENTRIES = 64;
/** fsyncs in flight at once (the file system commits them together). */
const FSYNCS_AT_ONCE = 16;

/**
 * Make `entries` (the files and directories of the tree `dir`, `dir` included) durable before the
 * tree is moved into place: every entry is fsynced, several at once, and an entry whose data could
 * not be written fails with its own error. An fsync of a dirty file costs a journal commit (100 000
 * small files: 42 s one after the other), so a larger tree is first written back whole by one
 * syncfs(2) of the file system that holds it (`sync -f`, coreutils; `syncfsOf`: another directory
 * of that file system), after which each fsync finds its file clean. The syncfs only speeds things:
 * its result is not trusted (a write error is reported by syncfs once, to whichever process asks
 * first, any other's `sync` included; a file's own fsync reports its own).
 */
export async function flushEntries(dir: string, entries: readonly string[], signal?: AbortSignal, o: { syncfsOf?: string } = {}): Promise<void> {
  if (entries.length >= SYNCFS_FROM_ENTRIES) await writeBackFilesystemOf(o.syncfsOf ?? dir, signal);
  let next = 0;
  const one = async (): Promise<void> => {
    while (next < entries.length) {
      signal?.throwIfAborted(); // (a stop: the tree is about to be removed)
      await fsyncPath(entries[next++]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(FSYNCS_AT_ONCE, entries.length) }, one));
}

/** Make a tree (a restored dom0 home, which may hold symbolic links) durable as above: each of its
 *  regular files and directories, at any depth (a link is not followed, nor fsynced). */
export async function flushTree(dir: string, signal?: AbortSignal, o: { syncfsOf?: string } = {}): Promise<void> {
  const entries: string[] = [];
  const dirs = [dir];
  for (let d = dirs.pop(); d !== undefined; d = dirs.pop()) {
    signal?.throwIfAborted();
    entries.push(d);
    for (const e of await readdir(d, { withFileTypes: true })) {
      if (e.isDirectory()) dirs.push(path.join(d, e.name));
      else if (e.isFile()) entries.push(path.join(d, e.name));
    }
  }
  await flushEntries(dir, entries, signal, o);
}

/** Start writing back the file system holding `dir`: syncfs(2) through `sync -f`, where there is
 *  one (Linux; a `sync` without -f, or one that fails, only costs the time it took). */
async function writeBackFilesystemOf(dir: string, signal: AbortSignal | undefined): Promise<void> {
  if (process.platform !== 'linux') return;
  const bin = findInPath('sync');
  if (bin === null) return;
  try {
    // as long as the disk takes: no timeout (a stop ends the wait)
    await runShort(bin, ['-f', '--', dir], { timeout: null, ...(signal ? { signal } : {}) });
  } catch {
    signal?.throwIfAborted(); // else: the fsyncs that follow do it all
  }
}

const MAX_DEPTH = 64;
/** lstats started ahead of the entry being checked */
const LSTATS_AHEAD = 16;

/** Check the tree under `abs`; its files and directories (itself last) are added to `entries`. */
async function walk(abs: string, rel: string, vm: string, report: TreeReport, depth: number, entries: string[], signal: AbortSignal | undefined): Promise<void> {
  if (depth > MAX_DEPTH) fail('ERR_UNSAFE_NAME', `${vm}: directory tree too deep at ${printable(rel)}`, { vm, file: rel });
  const names = await readdir(abs);
  // the lstats of a directory's entries several at a time (libuv's threads); acted on in order
  const stats = new Array<Promise<Stats>>(names.length);
  const statAt = (i: number): Promise<Stats> => (stats[i] ??= lstat(path.join(abs, names[i]!)));
  for (let i = 0; i < names.length; i++) {
    signal?.throwIfAborted(); // (a stop: the tree is about to be removed)
    for (let k = i; k < Math.min(names.length, i + LSTATS_AHEAD); k++) void statAt(k).catch(() => undefined);
    const name = names[i]!;
    const childAbs = path.join(abs, name);
    const childRel = rel === '' ? name : `${rel}/${name}`;
    const st = await statAt(i);
    if (st.isSymbolicLink()) {
      await unlink(childAbs);
      report.removedSymlinks.push(childRel);
    } else if (st.isDirectory()) {
      await walk(childAbs, childRel, vm, report, depth + 1, entries, signal);
    } else if (st.isFile()) {
      if (st.nlink > 1) {
        fail('ERR_UNSAFE_NAME', `${vm}: ${printable(childRel)} is a hard link; refusing to install it as VM data`, { vm, file: childRel });
      }
      entries.push(childAbs);
      report.files++;
      report.bytes += st.size;
    } else {
      fail('ERR_UNSAFE_NAME', `${vm}: ${printable(childRel)} is not a regular file or directory; refusing to install it`, { vm, file: childRel });
    }
  }
  entries.push(abs);
}

/** fsync a file or directory by path; never through a symbolic link, never waiting on a FIFO
 *  (which then fails, as anything that cannot be fsynced). */
export async function fsyncPath(p: string): Promise<void> {
  const fh = await open(p, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** True if `child` (absolute, resolved) is strictly inside `parent` (absolute, resolved). */
export function isInside(parent: string, child: string): boolean {
  const rel = path.relative(parent, child);
  return rel !== '' && rel !== '..' && !rel.startsWith(`..${path.sep}`) && !path.isAbsolute(rel);
}
