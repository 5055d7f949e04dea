// Installs a restored dom0 home the way Qubes R4 does (FORMAT.md §9.1 step 6): into a new
// `<home>/home-restore-%Y-%m-%d-%H%M%S/dom0-home/<user>/…`, never merged over the live home.
import { lchown, lstat, mkdir, readdir, rename, rm, rmdir } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { fail } from '../../errors.js';
import { fsyncPath } from './safe-tree.js';

const pad = (n: number, w = 2): string => String(n).padStart(w, '0');

/** `home-restore-%Y-%m-%d-%H%M%S` for `now` in local time (as Python's strftime). */
export function homeRestoreDirName(now: Date): string {
  const date = `${pad(now.getFullYear(), 4)}-${pad(now.getMonth() + 1)}-${pad(now.getDate())}`;
  const time = `${pad(now.getHours())}${pad(now.getMinutes())}${pad(now.getSeconds())}`;
  return `home-restore-${date}-${time}`;
}

/**
 * Move the extracted `stagedDom0Dir` (`<staging>/dom0-home`, holding `<user>/…`) to
 * `<dom0Home>/home-restore-<timestamp>/dom0-home`, copying (`cp -a --sparse=always`) when they are
 * on different filesystems; returns the new `home-restore-<timestamp>` directory.
 */
export async function installDom0Home(stagedDom0Dir: string, dom0Home: string, now: Date): Promise<string> {
  const staged = path.resolve(stagedDom0Dir);
  const home = path.resolve(dom0Home);
  const st = await lstat(staged).catch((e: unknown) =>
    fail('ERR_IO', `dom0 home: nothing was extracted at ${staged}`, { vm: 'dom0', file: staged }, e),
  );
  if (!st.isDirectory()) fail('ERR_UNSAFE_NAME', `dom0 home: ${staged} is not a directory`, { vm: 'dom0', file: staged });

  // ownership first, while the tree is still in the private (0700, root-owned) staging directory:
  // nobody else can swap an entry for a link while we walk it, and lchown never follows one
  const owner = await homeOwner(home);
  if (owner) await lchownTree(staged, owner.uid, owner.gid);

  const restoreDir = path.join(home, homeRestoreDirName(now));
  try {
    await mkdir(restoreDir, { mode: 0o700 }); // not recursive: fails if it exists, never reuses one
  } catch (e) {
    fail('ERR_IO', `dom0 home: cannot create ${restoreDir}: ${(e as Error).message}`, { vm: 'dom0', file: restoreDir }, e);
  }
  const dest = path.join(restoreDir, 'dom0-home');
  try {
    await rename(staged, dest);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EXDEV') {
      await rmdir(restoreDir).catch(() => undefined);
      fail('ERR_IO', `dom0 home: cannot move ${staged} to ${dest}: ${(e as Error).message}`, { vm: 'dom0', file: dest }, e);
    }
    await copyAcrossFilesystems(staged, dest);
  }
  if (owner) await lchown(restoreDir, owner.uid, owner.gid);
  await fsyncPath(restoreDir);
  await fsyncPath(home);
  return restoreDir;
}

/** Like Qubes' `chown -R <user>`: when run as root, the restored files belong to the home's owner. */
async function homeOwner(home: string): Promise<{ uid: number; gid: number } | null> {
  if (process.getuid?.() !== 0) return null;
  const st = await lstat(home);
  return st.uid === 0 ? null : { uid: st.uid, gid: st.gid };
}

/** lchown every entry of a tree this run created and checked, children before their directory. */
async function lchownTree(root: string, uid: number, gid: number): Promise<void> {
  const walk = async (p: string, depth: number): Promise<void> => {
    const st = await lstat(p);
    if (st.isDirectory() && depth < 128) for (const name of await readdir(p)) await walk(path.join(p, name), depth + 1);
    try {
      await lchown(p, uid, gid);
    } catch (e) {
      fail('ERR_IO', `dom0 home: cannot give ${p} to uid ${uid}: ${(e as Error).message}`, { vm: 'dom0', file: p }, e);
    }
  };
  await walk(root, 0);
}

/** EXDEV fallback: `cp -a --sparse=always`, then remove the staged copy. */
async function copyAcrossFilesystems(staged: string, dest: string): Promise<void> {
  try {
    await execa('cp', ['-a', '--sparse=always', '--', staged, dest], { stdin: 'ignore', stdout: 'ignore' });
  } catch (e) {
    await rm(dest, { recursive: true, force: true }).catch(() => undefined);
    await rmdir(path.dirname(dest)).catch(() => undefined);
    const stderr = String((e as { stderr?: unknown }).stderr ?? '').slice(-2000);
    fail('ERR_IO', `dom0 home: copying ${staged} to ${dest} failed`, { vm: 'dom0', file: dest, command: 'cp -a', stderrTail: stderr }, e);
  }
  await rm(staged, { recursive: true, force: true });
}
