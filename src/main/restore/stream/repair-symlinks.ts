// Undo a writer bug of R2/R3 whole-directory archives (templates, `<vmdir>/.`): their
// `--xform s:^.:<subdir>\0:` also matched the first character of every symlink target, so a link to
// `/usr/share/qubes/icons/black.png` was stored as `vm11//usr/share/qubes/icons/black.png`.
import { promises as fsp } from 'node:fs';
import path from 'node:path';

const MAX_ENTRIES = 100_000;

/**
 * Under `root` (the extracted `<staging>/<subdir>`), rewrite every symlink whose target starts with
 * `subdir` (e.g. `vm11/`) to the target without it. Never follows links; returns how many changed.
 */
export async function repairWholeDirSymlinks(root: string, subdir: string): Promise<number> {
  if (subdir === '' || !subdir.endsWith('/')) return 0;
  let changed = 0;
  let seen = 0;
  const dirs = [root];
  for (let dir = dirs.pop(); dir !== undefined; dir = dirs.pop()) {
    let entries;
    try {
      entries = await fsp.readdir(dir, { withFileTypes: true });
    } catch {
      continue;
    }
    for (const e of entries) {
      if (++seen > MAX_ENTRIES) return changed;
      const full = path.join(dir, e.name);
      if (e.isDirectory()) dirs.push(full);
      else if (e.isSymbolicLink()) {
        const target = await fsp.readlink(full);
        if (!target.startsWith(subdir) || target.length === subdir.length) continue;
        await fsp.unlink(full);
        await fsp.symlink(target.slice(subdir.length), full);
        changed++;
      }
    }
  }
  return changed;
}
