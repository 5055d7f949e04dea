// Disk usage of files and trees as `du` counts it (allocated blocks, so sparse images count only
// their data), without following symlinks. Used for size estimates, progress and backup-size.
import { lstat, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';

/** Entries of one directory looked at together (each lstat is a thread-pool round trip). */
const AT_ONCE = 32;

/** Allocated bytes of `path` (recursively for directories); with `follow`, of what its symlinks
 *  point to, as a backup that dereferences them (format 3) stores it. `check` is called for every
 *  directory (before it is listed) and regular file met (a plan's "can this user read it"), and
 *  for a directory a followed link points to. An entry that disappears while the tree is walked (a
 *  cache file, a lock) counts nothing; the top `path` must exist. */
export async function diskUsage(path: string, follow = false, check?: (path: string, dir: boolean) => Promise<void>): Promise<number> {
  const own = await lstat(path);
  // a link is followed to a file only: never into a directory (no cycles); GNU tar (format 3,
  // dereferencing) reads such a directory, so it is checked, not counted
  let st = own;
  if (follow && own.isSymbolicLink()) {
    const target = await stat(path).catch(() => null);
    if (target?.isDirectory() === true) await check?.(path, true);
    else if (target !== null) st = target;
  }
  let total = st.blocks * 512;
  if (own.isDirectory()) {
    await check?.(path, true);
    const names = await readdir(path);
    for (let i = 0; i < names.length; i += AT_ONCE) {
      const sizes = await Promise.all(names.slice(i, i + AT_ONCE).map((name) => diskUsage(join(path, name), follow, check).catch(gone)));
      for (const n of sizes) total += n;
    }
  } else if (st.isFile()) await check?.(path, false);
  return total;
}

/** An entry removed since its directory was listed counts nothing; any other error stands. */
function gone(e: unknown): number {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'ENOENT' || code === 'ENOTDIR') return 0;
  throw e;
}
