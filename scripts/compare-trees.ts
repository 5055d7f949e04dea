// Compares a directory tree with its restored copy, entry by entry: every file's content (SHA-256),
// every symlink's target, every directory; what is missing and what is extra. Used by the demo.
import { createHash } from 'node:crypto';
import { createReadStream, lstatSync, readdirSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';

/** Every entry under `root` (relative path → 'dir', 'file', 'link:<target>' or 'other'), not following links. */
export function listTree(root: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (rel: string): void => {
    for (const name of readdirSync(join(root, rel)).sort()) {
      const r = rel === '' ? name : `${rel}/${name}`;
      const st = lstatSync(join(root, r));
      out.set(r, st.isSymbolicLink() ? `link:${readlinkSync(join(root, r))}` : st.isDirectory() ? 'dir' : st.isFile() ? 'file' : 'other');
      if (st.isDirectory()) walk(r);
    }
  };
  walk('');
  return out;
}

async function sha256(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const c of createReadStream(path)) h.update(c as Buffer);
  return h.digest('hex');
}

export interface TreeComparison {
  /** regular files compared by content */
  files: number;
  /** their apparent size */
  bytes: number;
  /** one line per difference: `MISSING x`, `EXTRA x`, `DIFFERENT x` */
  problems: string[];
  /** entries of `from` absent in `to` that `notCopied` allows */
  notCopied: string[];
}

/** Compare `from` with its copy `to`; entries matching `notCopied` may be missing from the copy. */
export async function compareTrees(from: string, to: string, notCopied?: RegExp): Promise<TreeComparison> {
  const a = listTree(from);
  const b = listTree(to);
  const r: TreeComparison = { files: 0, bytes: 0, problems: [], notCopied: [] };
  for (const [rel, kind] of a) {
    if (!b.has(rel)) {
      if (notCopied?.test(rel)) r.notCopied.push(rel);
      else r.problems.push(`MISSING    ${rel}`);
      continue;
    }
    let same = b.get(rel) === kind;
    if (same && kind === 'file') {
      r.files++;
      r.bytes += lstatSync(join(from, rel)).size;
      same = (await sha256(join(from, rel))) === (await sha256(join(to, rel)));
    }
    if (!same) r.problems.push(`DIFFERENT  ${rel}`);
  }
  for (const rel of b.keys()) if (!a.has(rel)) r.problems.push(`EXTRA      ${rel}`);
  return r;
}
