// Installs a restored dom0 home the way Qubes R4 does (FORMAT.md §9.1 step 6): into a new
// `<home>/home-restore-%Y-%m-%d-%H%M%S/dom0-home/<user>/…`, never merged over the live home.
import { lchown, lstat, mkdir, mkdtemp, readdir, rename, rm, rmdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { runShort } from '../../io/spawn.js';
import { fail } from '../../errors.js';
import { flushTree, fsyncPath } from './safe-tree.js';

const pad = (n: number, w = 2): string => String(n).padStart(w, '0');
/** `home-restore-<timestamp>-99` is the last name tried */
const MAX_SUFFIX = 99;

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
export async function installDom0Home(stagedDom0Dir: string, dom0Home: string, now: Date, signal?: AbortSignal): Promise<string> {
  const staged = path.resolve(stagedDom0Dir);
  const home = path.resolve(dom0Home);
  const st = await lstat(staged).catch((e: unknown) =>
    fail('ERR_IO', `dom0 home: nothing was extracted at ${staged}`, { vm: 'dom0', file: staged }, e),
  );
  if (!st.isDirectory()) fail('ERR_UNSAFE_NAME', `dom0 home: ${staged} is not a directory`, { vm: 'dom0', file: staged });
  // the operator's home path (it may be a symlink to the real home); what is under it is the user's
  const homeSt = await stat(home).catch((e: unknown) => fail('ERR_IO', `dom0 home: cannot use ${home}: ${(e as Error).message}`, { vm: 'dom0', file: home }, e));
  if (!homeSt.isDirectory()) fail('ERR_IO', `dom0 home: ${home} is not a directory`, { vm: 'dom0', file: home });
  // a name no other restore took (two in the same second: `-1`, `-2`, … as for backup archives)
  const base = path.join(home, homeRestoreDirName(now));
  const free = async (from: number): Promise<{ dir: string; n: number }> => {
    for (let n = from; n <= MAX_SUFFIX; n++) {
      const dir = n === 0 ? base : `${base}-${n}`;
      if ((await lstat(dir).catch(() => null)) === null) return { dir, n };
    }
    return fail('ERR_IO', `dom0 home: ${base} and ${base}-1 … -${MAX_SUFFIX} all exist; not reusing any of them`, { vm: 'dom0', file: base });
  };
  let { dir: restoreDir, n: suffix } = await free(0);

  // The whole home-restore-… tree is built and handed to the user inside the private (0700,
  // root-owned) staging directory, then moved into the home with ONE rename: the home belongs to
  // the user, who could otherwise swap a directory we created there for a symlink between our
  // steps and make us move the tree (as root) wherever it points.
  const wrap = await mkdtemp(path.join(path.dirname(staged), '.home-')).catch((e: unknown) =>
    fail('ERR_IO', `dom0 home: cannot create a directory beside ${staged}: ${(e as Error).message}`, { vm: 'dom0', file: staged }, e),
  );
  await rename(staged, path.join(wrap, 'dom0-home'));
  const owner = homeOwner(homeSt);
  if (owner) await lchownTree(wrap, owner.uid, owner.gid); // lchown never follows a link
  // its files durable before it is handed over (the home gets no fsync of its own after that);
  // a stop meanwhile hands nothing over (the staging directory, which holds it, is removed)
  await flushTree(wrap, signal).catch((e: unknown) => {
    if (signal?.aborted === true) throw e;
    fail('ERR_IO', `dom0 home: cannot write the restored files to disk: ${(e as Error).message}`, { vm: 'dom0', file: staged }, e);
  });
  signal?.throwIfAborted();
  for (;;) {
    const moved = await rename(wrap, restoreDir).then(() => null, (e: unknown) => e as NodeJS.ErrnoException); // a symlink or a non-empty directory there: fails, never followed
    if (moved === null) break;
    // taken since it was found free (another restore into this home): the next name
    if ((moved.code === 'ENOTEMPTY' || moved.code === 'EEXIST' || moved.code === 'ENOTDIR') && suffix < MAX_SUFFIX) {
      ({ dir: restoreDir, n: suffix } = await free(suffix + 1));
      continue;
    }
    if (moved.code !== 'EXDEV') {
      await rename(path.join(wrap, 'dom0-home'), staged).catch(() => undefined);
      await rmdir(wrap).catch(() => undefined);
      fail('ERR_IO', `dom0 home: cannot move the restored home to ${restoreDir}: ${moved.message}`, { vm: 'dom0', file: restoreDir }, moved);
    }
    // another file system: the name is claimed first (mkdir fails when another restore took it
    // meanwhile; cp would merge into that one's), then the copy goes into it
    const claimed = await mkdir(restoreDir, { mode: 0o700 }).then(() => null, (e: unknown) => e as NodeJS.ErrnoException);
    if (claimed !== null) {
      if (claimed.code === 'EEXIST' && suffix < MAX_SUFFIX) {
        ({ dir: restoreDir, n: suffix } = await free(suffix + 1));
        continue;
      }
      fail('ERR_IO', `dom0 home: cannot create ${restoreDir}: ${claimed.message}`, { vm: 'dom0', file: restoreDir }, claimed);
    }
    await copyAcrossFilesystems(wrap, restoreDir);
    // (the home's owner could swap what is in it meanwhile: syncfs of the operator's home path, and
    // the tree walked without following a link; no stop from here, the copy is made)
    await flushTree(restoreDir, undefined, { syncfsOf: home }).catch((e: unknown) => fail('ERR_IO', `dom0 home: cannot write the copy in ${restoreDir} to disk: ${(e as Error).message}`, { vm: 'dom0', file: restoreDir }, e));
    break;
  }
  await fsyncPath(home);
  return restoreDir;
}

/** Like Qubes' `chown -R <user>`: when run as root, the restored files belong to the home's owner. */
function homeOwner(st: { uid: number; gid: number }): { uid: number; gid: number } | null {
  if (process.getuid?.() !== 0) return null;
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

/**
 * EXDEV fallback: `cp -a -T --sparse=always` (-T: a symlink already at `dest` is refused, not
 * followed), then remove the staged copy. cp works by path, so unlike the rename above this copy
 * is not safe from a home owner swapping directories while it runs.
 */
async function copyAcrossFilesystems(staged: string, dest: string): Promise<void> {
  try {
    // as long as the home is big: no timeout
    await runShort('cp', ['-a', '-T', '--sparse=always', '--', staged, dest], { timeout: null, what: `dom0 home: copying ${staged} to ${dest} failed`, context: { vm: 'dom0', file: dest } });
  } catch (e) {
    await rm(dest, { recursive: true, force: true }).catch(() => undefined);
    throw e;
  }
  await rm(staged, { recursive: true, force: true });
}
