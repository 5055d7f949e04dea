// The host lock: an exclusive flock(2) on `<qubes-root>/qubes.xml.lock`, held by a restore for its
// whole run and by a backup while it records backup_timestamp, so that two runs never rewrite the
// host qubes.xml from stale copies. Node has no flock, so we open the lock file ourselves and let
// util-linux `flock(1)` lock that open file (it inherits it as fd 3) and exit: the lock belongs to
// the open file, which only this process holds from then on. It ends when we close it — on
// release, on exit, and when the process is killed — and no helper process outlives the wait.
import { closeSync, constants as fsc, fstatSync, lstatSync, openSync } from 'node:fs';
import { mkdir, rmdir, stat, unlink } from 'node:fs/promises';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { QvmBackupError, fail } from '../errors.js';
import { diesWithUs } from './child-lifetime.js';

export const LOCK_NAME = 'qubes.xml.lock';
/** flock's exit status when the lock is busy (`--conflict-exit-code`). */
const BUSY = 75;
/** Times we retry when the lock file was replaced while we waited for it. */
const MAX_RETRIES = 5;

export interface HostLock {
  readonly path: string;
  /** True until released: the lock lives in our own open file, nothing else can drop it. */
  held(): boolean;
  /** Release the lock; never throws, safe to call twice. */
  release(): Promise<void>;
  /** Whether this run created the qubes root (taking the lock made it: it did not exist). */
  readonly createdRoot: boolean;
  /** Remove the lock file and then the (otherwise empty) qubes root, still holding the lock —
   *  for a root this run created and left empty; waiting runs see the file is gone and retry.
   *  The directories above it that this run created go too, innermost first, while empty. */
  removeWithRoot(): Promise<void>;
}

export interface LockOptions {
  /** How long to wait for another run to release the lock (default 300 s). */
  waitSeconds?: number;
  /** Called once when the lock is busy and we start waiting. */
  onWait?: (message: string) => void;
  signal?: AbortSignal;
  /** false: never create the root; when it is not there (or goes away meanwhile), take nothing and
   *  resolve null (a restore taking the lock before it knows it will use the root) */
  createRoot?: boolean;
}

/** Take the exclusive lock of the collection at `qubesRoot` (created if missing). */
export function lockHost(qubesRoot: string, o?: LockOptions & { createRoot?: true }): Promise<HostLock>;
export function lockHost(qubesRoot: string, o: LockOptions): Promise<HostLock | null>;
export async function lockHost(qubesRoot: string, o: LockOptions = {}): Promise<HostLock | null> {
  const root = path.resolve(qubesRoot);
  const lockPath = path.join(root, LOCK_NAME);
  const wait = o.waitSeconds ?? 300;
  let told = false;
  // the outermost directory our own mkdir created (none: undefined), over every attempt
  let outermost: string | undefined;
  for (let attempt = 0; attempt < MAX_RETRIES; attempt++) {
    // (again after a holder removed a root it had created and left empty)
    if (o.createRoot === false) {
      if (!(await stat(root).then((st) => st.isDirectory(), () => false))) return null;
    } else {
      const made = await mkdir(root, { recursive: true, mode: 0o755 }).catch((e: unknown) => fail('ERR_IO', `cannot create ${root}: ${(e as Error).message}`, { file: root }, e));
      if (made !== undefined && (outermost === undefined || made.length < outermost.length)) outermost = made;
    }
    let fd: number;
    try {
      fd = openLockFile(lockPath);
    } catch (e) {
      // (the root went away since it was looked at)
      if (o.createRoot === false && ((e as QvmBackupError).cause as NodeJS.ErrnoException | undefined)?.code === 'ENOENT') return null;
      throw e;
    }
    try {
      let got = await flockFd(fd, lockPath, 0, o.signal);
      if (!got) {
        if (!told) o.onWait?.(`${lockPath} is held by another qvm-backup-restore or qvm-backup run; waiting up to ${wait} s for it (Ctrl-C to stop)`);
        told = true;
        got = await flockFd(fd, lockPath, wait, o.signal);
        if (!got) fail('ERR_LOCKED', `${lockPath} is still held by another run after ${wait} s; try again when it has finished`, { file: lockPath });
      }
      // the holder before us may have removed the file (a root it created and left empty)
      if (sameFile(fd, lockPath)) return heldLock(fd, lockPath, root, outermost);
    } catch (e) {
      // a stop (or a failure) while the lock was being taken in a root this run created: the
      // root goes again when nobody holds its lock (a run waiting beside us keeps it)
      if (outermost !== undefined) {
        const mine = await flockFd(fd, lockPath, 0, undefined).catch(() => false);
        if (mine && sameFile(fd, lockPath)) await removeLockAndRoot(lockPath, root, outermost);
      }
      closeSync(fd);
      throw e;
    }
    closeSync(fd);
  }
  return fail('ERR_LOCKED', `${lockPath} kept being replaced while we waited for it`, { file: lockPath });
}

function openLockFile(lockPath: string): number {
  try {
    // never through a symlink: the lock file is a plain file of the qubes root
    return openSync(lockPath, fsc.O_RDWR | fsc.O_CREAT | fsc.O_NOFOLLOW, 0o644); // libuv adds O_CLOEXEC
  } catch (e) {
    return fail('ERR_IO', `cannot open the lock file ${lockPath}: ${(e as Error).message}`, { file: lockPath }, e);
  }
}

function sameFile(fd: number, lockPath: string): boolean {
  try {
    const a = fstatSync(fd);
    const b = lstatSync(lockPath);
    return a.dev === b.dev && a.ino === b.ino;
  } catch {
    return false;
  }
}

/** flock(1) on our open file (its fd 3); false when busy (after `waitSeconds`, 0 = do not wait). */
async function flockFd(fd: number, lockPath: string, waitSeconds: number, signal: AbortSignal | undefined): Promise<boolean> {
  // stopped already: nothing started (a flock started and killed at once may still take the lock first)
  if (signal?.aborted) throw new QvmBackupError('ERR_CANCELLED', 'interrupted while waiting for the host lock', { file: lockPath }, signal.reason);
  const mode = waitSeconds > 0 ? ['--wait', String(waitSeconds)] : ['--nonblock'];
  // node's spawn, not execa: only it hands an open file to the child as an extra descriptor.
  // Own process group: a terminal's Ctrl-C reaches us, and we stop the wait ourselves.
  // (through setpriv's death signal where it exists: a wait never outlives a kill -9 of ours)
  const [file, args] = diesWithUs('flock', ['--exclusive', ...mode, '--conflict-exit-code', String(BUSY), '3']);
  const child = spawn(file, args, { stdio: ['ignore', 'ignore', 'pipe', fd], detached: true });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    if (stderr.length < 2000) stderr += d.toString('utf8');
  });
  const stop = (): void => {
    child.kill('SIGKILL');
  };
  signal?.addEventListener('abort', stop, { once: true });
  if (signal?.aborted) stop();
  process.once('exit', stop);
  const r = await new Promise<{ code: number | null; error?: Error }>((resolve) => {
    child.once('error', (error) => resolve({ code: null, error }));
    child.once('close', (code) => resolve({ code }));
  });
  signal?.removeEventListener('abort', stop);
  process.off('exit', stop);
  if (r.error) return fail('ERR_IO', `cannot run flock(1) to lock ${lockPath}: ${r.error.message}`, { file: lockPath, command: 'flock' }, r.error);
  if (r.code === 0) return true;
  if (signal?.aborted) throw new QvmBackupError('ERR_CANCELLED', 'interrupted while waiting for the host lock', { file: lockPath }, signal.reason);
  if (r.code === BUSY) return false;
  return fail('ERR_IO', `cannot lock ${lockPath}: flock exited with status ${r.code}: ${stderr.trim().slice(-500)}`, { file: lockPath, command: 'flock', ...(r.code !== null ? { exitCode: r.code } : {}) });
}

/** `outermost`: the first directory our mkdir -p of `root` created (root itself, or one above). */
function heldLock(fd: number, lockPath: string, root: string, outermost: string | undefined): HostLock {
  let open = true;
  const close = (): void => {
    if (!open) return;
    open = false;
    try {
      closeSync(fd);
    } catch {
      // already closed
    }
  };
  return {
    path: lockPath,
    held: () => open,
    createdRoot: outermost !== undefined,
    release: async () => close(),
    removeWithRoot: async () => {
      if (!open) return;
      await removeLockAndRoot(lockPath, root, outermost);
      close();
    },
  };
}

/** The lock file (held by us), then the root and up to the outermost directory our mkdir made;
 *  rmdir stops at one not empty (another run's root beside ours, a file someone put there). */
async function removeLockAndRoot(lockPath: string, root: string, outermost: string | undefined): Promise<void> {
  await unlink(lockPath).catch(() => undefined);
  for (let d = root; ; d = path.dirname(d)) {
    if (!(await rmdir(d).then(() => true, () => false))) break;
    if (outermost === undefined || d === outermost || d === path.dirname(d)) break;
  }
}
