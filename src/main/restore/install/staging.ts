// The restore staging directory: `<qubesRoot>/.restore-XXXXXX/` (mode 0700), on the same filesystem
// as the VM directories so that installing a VM is a rename(). A run removes the directory it created,
// and (under the host lock) those that killed runs left behind.
import { lstat, mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { runShort } from '../../io/spawn.js';
import { fail } from '../../errors.js';

/** A staging directory created by this run. */
export interface Staging {
  /** Absolute path of the directory. */
  dir: string;
  /** Remove the directory and everything in it; safe to call more than once. */
  remove(): Promise<void>;
}

/** Prefix of staging directory names; a leading '.' is never a valid VM name. */
export const STAGING_PREFIX = '.restore-';

/** Create a fresh private staging directory under `qubesRoot` (created if missing). */
export async function createStaging(qubesRoot: string): Promise<Staging> {
  const root = path.resolve(qubesRoot);
  let dir: string;
  try {
    await mkdir(root, { recursive: true, mode: 0o755 });
    dir = await mkdtemp(path.join(root, STAGING_PREFIX)); // mkdtemp creates it with mode 0700
  } catch (e) {
    fail('ERR_IO', `cannot create the restore staging directory under ${root}: ${(e as Error).message}`, { file: root }, e);
  }
  let removed: Promise<void> | undefined;
  return {
    dir,
    remove(): Promise<void> {
      removed ??= removeTree(dir).catch((e: unknown) => {
        removed = undefined; // allow a later retry
        fail('ERR_IO', `cannot remove the staging directory ${dir}: ${(e as Error).message}`, { file: dir }, e);
      });
      return removed;
    },
  };
}

/** fs.rm, then rm(1): fs.rm works on whole paths, and a tree deeper than PATH_MAX (a hostile
 *  archive's, which tar still extracts relative to its directory) needs rm's openat walk. */
async function removeTree(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true, maxRetries: 3 }).catch(() =>
    // bounded: a removal that takes longer is reported, and the next run removes what is left
    runShort('rm', ['-rf', '--one-file-system', '--', dir], { timeout: 600_000, context: { file: dir } }).then(() => undefined),
  );
}

/**
 * Remove staging directories that killed runs (kill -9, power loss) left in `qubesRoot`. Only
 * called under the host lock: every restore that stages holds it for its whole run, so none of
 * them is in use. Returns the names removed.
 */
export async function removeStaleStaging(qubesRoot: string): Promise<string[]> {
  const root = path.resolve(qubesRoot);
  const names = await readdir(root).catch(() => [] as string[]);
  const removed: string[] = [];
  for (const name of names) {
    if (!name.startsWith(STAGING_PREFIX)) continue;
    const st = await lstat(path.join(root, name)).catch(() => null);
    if (!st?.isDirectory()) continue; // never through a symlink
    const ok = await removeTree(path.join(root, name)).then(() => true, () => false);
    if (ok) removed.push(name);
  }
  return removed;
}
