// Named FIFOs for GNU tar multi-volume runs (LIMITS.md §4): a private directory, mkfifo, and an
// open() that cannot hang when tar dies first (a blocked FIFO open is released with O_NONBLOCK).
import { boundedWait } from '../pipeline/waits.js';
import { constants as fsc, promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runShort } from '../io/spawn.js';
import { forgetAtExit, removeAtExit } from '../io/exit-cleanup.js';
import { QvmBackupError } from '../errors.js';

/** A new private (0700) directory for FIFOs; remove it with `removeFifoDir` (a forced exit or a
 *  crash removes it too: nothing else ever would). */
export async function makeFifoDir(): Promise<string> {
  const tmp = os.tmpdir();
  const dir = await fsp.mkdtemp(path.join(tmp, 'qvmb-fifo-')).catch((e: unknown) => {
    const code = (e as NodeJS.ErrnoException).code;
    throw new QvmBackupError(code === 'ENOSPC' || code === 'EDQUOT' ? 'ERR_NO_SPACE' : 'ERR_IO', `cannot make the format 2 FIFO directory in ${tmp} (TMPDIR): ${(e as Error).message}`, { file: tmp }, e);
  });
  removeAtExit(dir, { recursive: true });
  await fsp.chmod(dir, 0o700);
  return dir;
}

/** Remove a directory of makeFifoDir's and what is in it. */
export async function removeFifoDir(dir: string): Promise<void> {
  await fsp.rm(dir, { recursive: true, force: true });
  forgetAtExit(dir);
}

/** Create a FIFO (mode 0600) with the `mkfifo` program. */
export async function mkfifo(p: string): Promise<void> {
  await runShort('mkfifo', ['-m', '600', '--', p], { timeout: 10_000, what: `mkfifo ${p} failed`, context: { file: p } });
}

const GONE: unique symbol = Symbol('peer gone');

/**
 * Open our end of the FIFO `p`, waiting for the peer to open the other end. If `peerGone` settles
 * first (tar exited), the blocked open is released and null is returned instead.
 */
export async function openFifo(p: string, side: 'read' | 'write', peerGone: Promise<unknown>): Promise<fsp.FileHandle | null> {
  const opening = fsp.open(p, side === 'read' ? fsc.O_RDONLY : fsc.O_WRONLY);
  opening.catch(() => undefined);
  const first = await Promise.race([opening, peerGone.then((): typeof GONE => GONE, (): typeof GONE => GONE)]);
  if (first !== GONE) return first;
  if (side === 'read') {
    // The peer may have opened the FIFO, written its last small volume into the pipe buffer and
    // exited before our open was seen here: keep the handle, so those bytes are not lost. The
    // caller reads it to EOF (immediately EOF when we released the open ourselves).
    await releaseOpen(p, side, opening, true);
    return opening.catch(() => null);
  }
  await releaseOpen(p, side, opening);
  return null;
}

/**
 * Unblock our pending `open()` of `p` by briefly opening the other end non-blocking, retrying until
 * it settles (a write-side O_NONBLOCK open fails with ENXIO until our reader is in the kernel).
 */
async function releaseOpen(p: string, side: 'read' | 'write', opening: Promise<fsp.FileHandle>, keep = false): Promise<void> {
  let settled = false;
  const finished = opening.then(
    (fh) => (keep ? undefined : fh.close().catch(() => undefined)),
    () => undefined,
  );
  void finished.then(() => {
    settled = true;
  });
  const flags = (side === 'read' ? fsc.O_WRONLY : fsc.O_RDONLY) | fsc.O_NONBLOCK;
  const deadline = Date.now() + 10_000;
  for (let delay = 2; !settled && Date.now() < deadline; delay = Math.min(delay * 2, 100)) {
    try {
      const peer = await fsp.open(p, flags);
      await peer.close();
    } catch {
      // ENXIO: our open has not reached the kernel yet; try again shortly.
    }
    await boundedWait(finished, delay);
  }
}

/**
 * If some process is blocked opening FIFO `p` for reading, give it an empty volume (open the write
 * end non-blocking and close it at once). Returns whether there was such a reader.
 */
export async function releaseWaitingReader(p: string): Promise<boolean> {
  try {
    const fh = await fsp.open(p, fsc.O_WRONLY | fsc.O_NONBLOCK);
    await fh.close();
    return true;
  } catch {
    return false;
  }
}
