// The restore staging directory: `<qubesRoot>/.restore-XXXXXX/` (mode 0700), on the same filesystem
// as the VM directories so that installing a VM is a rename(). A run removes the directory it created,
// and (under the host lock) those that killed runs left behind.
import { constants as fsc } from 'node:fs';
import { lstat, mkdir, mkdtemp, open, readdir, realpath, rm, rmdir, stat, unlink } from 'node:fs/promises';
import path from 'node:path';
import { runShort } from '../../io/spawn.js';
import { processAlive } from '../../io/child-lifetime.js';
import { fail } from '../../errors.js';
import { isVmParent } from './install-vm.js';

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
  return stagingAt(dir);
}

/** The staging (or scratch) directory `dir`, which this run created. */
function stagingAt(dir: string): Staging {
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
 *  archive's, which tar still extracts relative to its directory) needs rm's openat walk; run
 *  without root, a directory the archive made read-only (mode 0555) is made writable first. */
async function removeTree(dir: string): Promise<void> {
  // bounded: a removal that takes longer is reported, and the next run removes what is left
  const rmRf = (): Promise<void> => runShort('rm', ['-rf', '--one-file-system', '--', dir], { timeout: 600_000, context: { file: dir } }).then(() => undefined);
  await rm(dir, { recursive: true, force: true, maxRetries: 3 }).catch(() =>
    rmRf().catch(async () => {
      // chmod -R changes no symbolic link and follows none below `dir`
      await runShort('chmod', ['-R', 'u+rwx', '--', dir], { timeout: 600_000, context: { file: dir } }).catch(() => undefined);
      await rmRf();
    }),
  );
}

/** Whether a file or directory belongs to the user running this (what a sweep may act on: never
 *  what another user put in a directory we share). */
const ours = (st: { uid: number }): boolean => st.uid === process.getuid?.();

/** A scratch directory of a dead PID untouched this long is removed by the next verification. */
const SCRATCH_ABANDONED_MS = 60 * 60 * 1000;

/** Prefix of a verification's scratch directories: `.qvm-verify-<pid>-XXXXXX`. */
const SCRATCH_PREFIX = '.qvm-verify-';

/**
 * A verification's private scratch directory, `<parent>/.qvm-verify-<pid>-XXXXXX` (mode 0700),
 * in an existing `parent` (never created: "nothing on the host is written"). Scratch directories
 * of this user's earlier verifications whose process is gone (kill -9, power loss) and that were
 * left alone for an hour are removed first: no restore's lock covers them, and they hold decrypted
 * data.
 */
export async function createScratch(parent: string, what: string): Promise<Staging> {
  const root = path.resolve(parent);
  const st = await stat(root).catch(() => null);
  if (st === null || !st.isDirectory()) fail('ERR_IO', `${what} ${root} is not an existing directory`, { file: root });
  for (const name of await readdir(root).catch(() => [] as string[])) {
    const pid = Number(/^\.qvm-verify-(\d+)-/.exec(name)?.[1]);
    if (!Number.isInteger(pid) || pid === process.pid || processAlive(pid)) continue;
    const old = await lstat(path.join(root, name)).catch(() => null);
    if (!old?.isDirectory() || !ours(old)) continue; // never through a symlink, never another user's
    // a PID of another PID namespace (a container sharing the directory) looks gone from here: a
    // live verification changes its directory with every file it extracts, so only one left
    // alone for an hour is taken as abandoned
    if (Date.now() - old.mtimeMs < SCRATCH_ABANDONED_MS) continue;
    await removeTree(path.join(root, name)).catch(() => undefined);
  }
  let dir: string;
  try {
    dir = await mkdtemp(path.join(root, `${SCRATCH_PREFIX}${process.pid}-`));
  } catch (e) {
    fail('ERR_IO', `cannot create a scratch directory in ${what} ${root}: ${(e as Error).message}`, { file: root }, e);
  }
  return stagingAt(dir);
}

/**
 * Remove staging directories that killed runs (kill -9, power loss) left in `qubesRoot`. Only
 * called under the host lock: every restore that stages holds it for its whole run, so none of
 * them is in use. Returns the names removed.
 */
export async function removeStaleStaging(qubesRoot: string, listed: ((vmName: string) => boolean) | undefined): Promise<{ staging: string[]; orphans: string[]; temps: string[] }> {
  const root = path.resolve(qubesRoot);
  const names = await readdir(root).catch(() => [] as string[]);
  const removed: string[] = [];
  const orphans: string[] = [];
  const temps: string[] = [];
  for (const name of names) {
    if (!name.startsWith(STAGING_PREFIX)) continue;
    const st = await lstat(path.join(root, name)).catch(() => null);
    // never through a symlink; never another user's (one who can write to the root must not make
    // our run remove what its journal would name)
    if (!st?.isDirectory() || !ours(st)) continue;
    const journal = path.join(root, name, INSTALL_JOURNAL);
    // what qubes.xml lists is unknown (it cannot be read): a journal is kept for a later run
    if (listed === undefined) {
      if (await lstat(journal).then(() => true, () => false)) continue;
    } else {
      const gone = await removeUnlisted(root, journal, listed);
      orphans.push(...gone.dirs);
      temps.push(...gone.temps);
    }
    const ok = await removeTree(path.join(root, name)).then(() => true, () => false);
    if (ok) removed.push(name);
  }
  return { staging: removed, orphans, temps };
}

/** Name of the installer's journal in its staging directory (installer.ts). */
export const INSTALL_JOURNAL = '.install-journal';

/**
 * The entries of an install journal: one JSON object per line, the last line of a target giving
 * its state (`abandoned`: none); lines that do not parse (cut short by a kill) are skipped. A
 * journal written whole as one JSON array (before 2026-12-07) is read as it is.
 */
export function journalEntries(text: string): unknown[] {
  try {
    const whole: unknown = JSON.parse(text);
    if (Array.isArray(whole)) return whole;
  } catch {
    // lines
  }
  const byTarget = new Map<string, unknown>();
  for (const line of text.split('\n')) {
    let entry: unknown;
    try {
      entry = JSON.parse(line);
    } catch {
      continue;
    }
    const { target, state } = (typeof entry === 'object' && entry !== null ? entry : {}) as { target?: unknown; state?: unknown };
    if (typeof target !== 'string') continue;
    byTarget.delete(target);
    if (state !== 'abandoned') byTarget.set(target, entry);
  }
  return [...byTarget.values()];
}

/** A journal larger than this is not one of ours (a line is ~150 bytes, two per VM installed). */
const MAX_JOURNAL_BYTES = 64 * 1024 * 1024;

/** The journal's text: only a regular file of this user's, opened without following a link or
 *  waiting for a writer (a FIFO put there must not hold the run, and the lock, for ever). */
async function readJournal(journal: string): Promise<string> {
  const fh = await open(journal, fsc.O_RDONLY | fsc.O_NOFOLLOW | fsc.O_NONBLOCK);
  try {
    const st = await fh.stat();
    if (!st.isFile() || !ours(st) || st.size > MAX_JOURNAL_BYTES) throw new Error('not a journal of ours');
    return await fh.readFile('utf8');
  } finally {
    await fh.close();
  }
}

/** Prefix of the temporary files write-file-atomic makes beside qubes.xml (`qubes.xml.<number>`). */
const QUBES_XML_TEMP_PREFIX = 'qubes.xml.';

/**
 * The VM directories a killed restore's journal names that qubes.xml does not list: removed
 * (never a VM directory that qubes.xml does not list) — one it had made whole, one it was about
 * to make only if empty. Only a VM directory of this root
 * (`appvms/X`, `vm-templates/X`, a real directory) is touched, whatever the journal says; and the
 * temporary file of a qubes.xml write the kill cut short (`temp`: a regular file of this user's,
 * `qubes.xml.<…>` in the root itself).
 */
async function removeUnlisted(root: string, journal: string, listed: (vmName: string) => boolean): Promise<{ dirs: string[]; temps: string[] }> {
  let targets: unknown[];
  try {
    targets = journalEntries(await readJournal(journal));
  } catch {
    return { dirs: [], temps: [] };
  }
  const out: string[] = [];
  const temps: string[] = [];
  // the killed run may have named the root another way (a path through a link): compared by
  // the real paths of the root and of each entry's parent directory
  const realRoot = await realpath(root).catch(() => root);
  for (const entry of targets) {
    const { target: t, state } = (typeof entry === 'object' && entry !== null ? entry : {}) as { target?: unknown; state?: unknown };
    if (typeof t !== 'string' || !path.isAbsolute(t) || (state !== 'made' && state !== 'intent' && state !== 'temp')) continue;
    const parent = await realpath(path.dirname(t)).catch(() => null);
    if (parent === null) continue;
    const rel = path.join(path.relative(realRoot, parent), path.basename(t));
    const parts = rel.split(path.sep);
    if (state === 'temp') {
      if (parts.length !== 1 || !rel.startsWith(QUBES_XML_TEMP_PREFIX)) continue;
      const file = path.join(realRoot, rel);
      const st = await lstat(file).catch(() => null);
      if (!st?.isFile() || !ours(st)) continue;
      if (await unlink(file).then(() => true, () => false)) temps.push(rel);
      continue;
    }
    if (parts.length !== 2 || !isVmParent(parts[0]!) || listed(parts[1]!)) continue;
    const dir = path.join(realRoot, rel);
    const st = await lstat(dir).catch(() => null);
    if (!st?.isDirectory()) continue;
    // an intent is only removed empty: a directory that was there before keeps whatever it holds
    if (state === 'intent') {
      if (await rmdir(dir).then(() => true, () => false)) out.push(rel);
    } else if (await removeTree(dir).then(() => true, () => false)) out.push(rel);
  }
  return { dirs: out, temps };
}
