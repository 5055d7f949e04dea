// Test helper: a snapshot of everything under a directory (type, mode, owner, link count, size,
// content hash or link target), taken with lstat, to prove that a run changed nothing outside the
// places it may write.
import { createHash } from 'node:crypto';
import { lstatSync, readFileSync, readdirSync, readlinkSync } from 'node:fs';
import path from 'node:path';

export type Snapshot = Map<string, string>;

/** Every entry under `root` (relative path → description), not following links. */
export function snapshot(root: string): Snapshot {
  const out: Snapshot = new Map();
  const walk = (abs: string, rel: string): void => {
    const st = lstatSync(abs);
    const kind = st.isSymbolicLink() ? 'l' : st.isDirectory() ? 'd' : st.isFile() ? 'f' : 'o';
    let what = `${kind} mode=${(st.mode & 0o7777).toString(8)} uid=${st.uid} gid=${st.gid} nlink=${kind === 'd' ? '-' : st.nlink}`;
    if (kind === 'f') what += ` size=${st.size} sha=${createHash('sha256').update(readFileSync(abs)).digest('hex').slice(0, 16)}`;
    if (kind === 'l') what += ` -> ${readlinkSync(abs)}`;
    if (kind === 'o') what += ` rdev=${st.rdev}`;
    out.set(rel === '' ? '.' : rel, what);
    if (kind === 'd') for (const n of readdirSync(abs).sort()) walk(path.join(abs, n), rel === '' ? n : `${rel}/${n}`);
  };
  walk(root, '');
  return out;
}

/** Entries that differ between two snapshots (added, removed or changed), except where `allowed` says so. */
export function changes(before: Snapshot, after: Snapshot, allowed: (rel: string) => boolean = () => false): string[] {
  const out: string[] = [];
  for (const [rel, was] of before) {
    const now = after.get(rel);
    if (now !== was && !allowed(rel)) out.push(now === undefined ? `removed ${rel}` : `changed ${rel}: ${was} => ${now}`);
  }
  for (const [rel, now] of after) if (!before.has(rel) && !allowed(rel)) out.push(`added ${rel}: ${now}`);
  return out;
}
