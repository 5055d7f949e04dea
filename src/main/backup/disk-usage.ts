// Disk usage of files and trees as `du` counts it (allocated blocks, so sparse images count only
// their data), without following symlinks. Used for size estimates, progress and backup-size.
import { lstat, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';

/** Allocated bytes of `path` (recursively for directories); with `follow`, of what its symlinks
 *  point to, as a backup that dereferences them (format 3) stores it. `check` is called for every
 *  directory (before it is listed) and regular file met (a plan's "can this user read it"). */
export async function diskUsage(path: string, follow = false, check?: (path: string, dir: boolean) => Promise<void>): Promise<number> {
  const own = await lstat(path);
  // a link is followed to a file only: never into a directory (no cycles)
  const st = follow && own.isSymbolicLink() ? await stat(path).then((t) => (t.isDirectory() ? own : t), () => own) : own;
  let total = st.blocks * 512;
  if (own.isDirectory()) {
    await check?.(path, true);
    for (const name of await readdir(path)) total += await diskUsage(join(path, name), follow, check);
  } else if (st.isFile()) await check?.(path, false);
  return total;
}
