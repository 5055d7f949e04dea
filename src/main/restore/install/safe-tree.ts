// Checks and flushes an extracted (untrusted) VM directory before it is moved into place: only
// regular files and directories may stay, symlinks are dropped, hard links and device nodes are
// refused; every file and directory is made durable (flushEntries).
import { constants, type Stats } from 'node:fs';
import { lstat, open, readdir, unlink } from 'node:fs/promises';
import { release } from 'node:os';
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

/** From this many entries on, a tree is flushed by one syncfs(2) of its filesystem. */
export const SYNCFS_FROM_ENTRIES = 64;
/** fsyncs in flight at once otherwise (the file system commits them together). */
const FSYNCS_AT_ONCE = 8;

/**
 * Make `entries` (the files and directories of the tree `dir`, `dir` included) durable before the
 * tree is moved into place. An fsync each costs a journal commit per file (100 000 small files: 40 s
 * one after the other), so a larger tree gets one syncfs(2) of the file system that holds `dir`
 * (`sync -f`, coreutils), which writes back everything of it that is dirty, these files' data and
 * directory entries included; where that cannot be had or fails, every entry is fsynced (several
 * at once), whose own error then names what could not be written. syncfs reports writeback errors
 * only from Linux 5.8 (before, it returned 0 whatever happened): older kernels always fsync each.
 */
export async function flushEntries(dir: string, entries: readonly string[], signal?: AbortSignal, o: { syncfs?: boolean } = {}): Promise<void> {
  if (entries.length >= SYNCFS_FROM_ENTRIES && o.syncfs !== false && (await syncFilesystemOf(dir, signal))) return;
  let next = 0;
  const one = async (): Promise<void> => {
    while (next < entries.length) {
      signal?.throwIfAborted(); // (a stop: the tree is about to be removed)
      await fsyncPath(entries[next++]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(FSYNCS_AT_ONCE, entries.length) }, one));
}

/** Make a tree of ours (a restored dom0 home, which may hold symbolic links) durable: one syncfs(2)
 *  as above, or else an fsync of each of its regular files and directories. */
export async function flushTree(dir: string): Promise<void> {
  if (await syncFilesystemOf(dir, undefined)) return;
  const entries: string[] = [];
  const collect = async (p: string, depth: number): Promise<void> => {
    const st = await lstat(p);
    if (st.isDirectory()) {
      if (depth < 128) for (const name of await readdir(p)) await collect(path.join(p, name), depth + 1);
      entries.push(p);
    } else if (st.isFile()) entries.push(p);
  };
  await collect(dir, 0);
  await flushEntries(dir, entries, undefined, { syncfs: false });
}

/** Whether this kernel's syncfs(2) reports writeback errors (Linux >= 5.8). */
export function syncfsReportsErrors(kernel = release()): boolean {
  const m = /^(\d+)\.(\d+)/.exec(kernel);
  return m !== null && (Number(m[1]) > 5 || (Number(m[1]) === 5 && Number(m[2]) >= 8));
}

/** syncfs(2) of the file system holding `dir` through `sync -f`; false where that is not to be had
 *  (an old kernel, no `sync` in PATH, a `sync` without -f) or it failed. */
async function syncFilesystemOf(dir: string, signal: AbortSignal | undefined): Promise<boolean> {
  if (process.platform !== 'linux' || !syncfsReportsErrors()) return false;
  const bin = findInPath('sync');
  if (bin === null) return false;
  try {
    // as long as the disk takes: no timeout (a stop ends the wait)
    await runShort(bin, ['-f', '--', dir], { timeout: null, ...(signal ? { signal } : {}) });
    return true;
  } catch {
    signal?.throwIfAborted();
    return false;
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
