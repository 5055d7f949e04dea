// Checks and flushes an extracted (untrusted) VM directory before it is moved into place: only
// regular files and directories may stay, symlinks are dropped, hard links and device nodes are
// refused; every file and directory is fsynced.
import { lstat, open, readdir, unlink } from 'node:fs/promises';
import path from 'node:path';
import { fail } from '../../errors.js';
import { printable } from '../stream/extraction.js';

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
  await walk(dir, '', vm, report, 0, flush, signal);
  return report;
}

const MAX_DEPTH = 64;

async function walk(abs: string, rel: string, vm: string, report: TreeReport, depth: number, flush: boolean, signal: AbortSignal | undefined): Promise<void> {
  if (depth > MAX_DEPTH) fail('ERR_UNSAFE_NAME', `${vm}: directory tree too deep at ${printable(rel)}`, { vm, file: rel });
  for (const name of await readdir(abs)) {
    signal?.throwIfAborted(); // (a stop: the tree is about to be removed)
    const childAbs = path.join(abs, name);
    const childRel = rel === '' ? name : `${rel}/${name}`;
    const st = await lstat(childAbs);
    if (st.isSymbolicLink()) {
      await unlink(childAbs);
      report.removedSymlinks.push(childRel);
    } else if (st.isDirectory()) {
      await walk(childAbs, childRel, vm, report, depth + 1, flush, signal);
    } else if (st.isFile()) {
      if (st.nlink > 1) {
        fail('ERR_UNSAFE_NAME', `${vm}: ${printable(childRel)} is a hard link; refusing to install it as VM data`, { vm, file: childRel });
      }
      if (flush) await fsyncPath(childAbs, 'r');
      report.files++;
      report.bytes += st.size;
    } else {
      fail('ERR_UNSAFE_NAME', `${vm}: ${printable(childRel)} is not a regular file or directory; refusing to install it`, { vm, file: childRel });
    }
  }
  if (flush) await fsyncPath(abs, 'r');
}

/** fsync a file or directory by path. */
export async function fsyncPath(p: string, flags: 'r' | 'r+' = 'r'): Promise<void> {
  const fh = await open(p, flags);
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
