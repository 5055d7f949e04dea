// Disk usage of files and trees as `du` counts it (allocated blocks, so sparse images count only
// their data), without following symlinks. Used for size estimates, progress and backup-size.
import { lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';

/** Allocated bytes of `path` (recursively for directories). */
export async function diskUsage(path: string): Promise<number> {
  const st = await lstat(path);
  let total = st.blocks * 512;
  if (st.isDirectory()) {
    for (const name of await readdir(path)) total += await diskUsage(join(path, name));
  }
  return total;
}
