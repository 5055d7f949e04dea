// The host lock: an exclusive flock(2) on `<qubes-root>/qubes.xml.lock`, held by a restore for its
// whole run and by a backup while it records backup_timestamp, so that two runs never rewrite the
// host qubes.xml from stale copies. Node has no flock, so util-linux `flock(1)` holds it for us:
// it takes the lock, then runs `cat` on a pipe from us; the lock lives exactly as long as that
// pipe, so it is released when we release it, when we exit, and when we are killed (EOF).
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { QvmBackupError, fail } from '../errors.js';

export const LOCK_NAME = 'qubes.xml.lock';
/** flock's exit status when the lock is busy (`--conflict-exit-code`). */
const BUSY = 75;
/** The child prints this once it holds the lock. */
const HELD = 'held';

export interface HostLock {
  readonly path: string;
  /** False once the holder process went away (the lock is no longer ours). */
  held(): boolean;
  /** Release the lock; never throws, safe to call twice. */
  release(): Promise<void>;
}

export interface LockOptions {
  /** How long to wait for another run to release the lock (default 300 s). */
  waitSeconds?: number;
  /** Called once when the lock is busy and we start waiting. */
  onWait?: (message: string) => void;
  signal?: AbortSignal;
}

/** Take the exclusive lock of the collection at `qubesRoot` (created if missing). */
export async function lockHost(qubesRoot: string, o: LockOptions = {}): Promise<HostLock> {
  const root = path.resolve(qubesRoot);
  const lockPath = path.join(root, LOCK_NAME);
  await mkdir(root, { recursive: true, mode: 0o755 }).catch((e: unknown) => fail('ERR_IO', `cannot create ${root}: ${(e as Error).message}`, { file: root }, e));
  const first = await tryLock(lockPath, 0, o.signal);
  if (first !== null) return first;
  const wait = o.waitSeconds ?? 300;
  o.onWait?.(`${lockPath} is held by another qvm-backup-restore or qvm-backup run; waiting up to ${wait} s for it (Ctrl-C to stop)`);
  const second = await tryLock(lockPath, wait, o.signal);
  if (second !== null) return second;
  return fail('ERR_LOCKED', `${lockPath} is still held by another run after ${wait} s; try again when it has finished`, { file: lockPath });
}

/** One attempt (waitSeconds 0: non-blocking); null when the lock stayed busy. */
async function tryLock(lockPath: string, waitSeconds: number, signal: AbortSignal | undefined): Promise<HostLock | null> {
  const mode = waitSeconds > 0 ? ['--wait', String(waitSeconds)] : ['--nonblock'];
  let child: ResultPromise;
  try {
    // own process group: a terminal's Ctrl-C must not release the lock before we have cleaned up
    child = execa('flock', ['--exclusive', ...mode, '--conflict-exit-code', String(BUSY), lockPath, 'sh', '-c', `echo ${HELD}; exec cat >/dev/null`], {
      stdin: 'pipe',
      stdout: 'pipe',
      stderr: 'pipe',
      buffer: false,
      reject: false,
      detached: true,
      cleanup: true,
    });
  } catch (e) {
    return fail('ERR_IO', `cannot run flock(1) to lock ${lockPath}: ${(e as Error).message}`, { file: lockPath, command: 'flock' }, e);
  }
  child.stdin?.on('error', () => undefined);
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    if (stderr.length < 2000) stderr += d.toString('utf8');
  });
  let exited = false;
  const exit = child.then((r) => {
    exited = true;
    return r;
  });
  // Ctrl-C stops the waiting, never a lock we hold (that is released by release() after cleanup)
  const onAbort = (): void => {
    child.kill('SIGKILL');
  };
  signal?.addEventListener('abort', onAbort, { once: true });
  if (signal?.aborted) onAbort();
  const got = await new Promise<boolean>((resolve) => {
    let out = '';
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString('utf8');
      if (out.includes(HELD)) resolve(true);
    });
    void exit.then(() => resolve(false));
  });
  signal?.removeEventListener('abort', onAbort);
  if (!got) {
    const r = await exit;
    if (signal?.aborted) throw new QvmBackupError('ERR_CANCELLED', 'interrupted while waiting for the host lock', { file: lockPath }, signal.reason);
    if (r.exitCode === BUSY) return null;
    const why = r.failed && r.exitCode === undefined ? String(r.message) : `flock exited with status ${r.exitCode}: ${stderr.trim()}`;
    return fail('ERR_IO', `cannot lock ${lockPath}: ${why}`, { file: lockPath, command: 'flock', ...(r.exitCode !== undefined ? { exitCode: r.exitCode } : {}) });
  }
  child.stdout?.resume();
  const killOnExit = (): void => {
    child.kill('SIGKILL');
  };
  process.once('exit', killOnExit);
  let released: Promise<void> | undefined;
  return {
    path: lockPath,
    held: () => !exited,
    release: () =>
      (released ??= (async () => {
        process.off('exit', killOnExit);
        child.stdin?.end();
        const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exit.catch(() => undefined);
        clearTimeout(timer);
      })()),
  };
}
