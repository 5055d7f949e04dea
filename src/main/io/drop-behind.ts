// Hands the pages of a file we are writing back to the kernel once they are on disk (after each
// background flush: background-flush.ts), so that the next writes into the page cache reuse pages
// freed a moment before. On a VM whose freed memory goes back to the host, a page the guest has
// not touched lately costs a fault in the host on its first touch, inside the write that
// allocates it (the kernel runs a file's writes one at a time): 4 GiB written in 4 MiB writes took
// 7.7-9.6 s and 6-7.8 CPU-s here, against 3.9-4.4 s and 0.9-1.3 CPU-s with the written pages
// dropped every 64 MiB. It also keeps a restore from filling dom0's memory with the images.
//
// Node has no posix_fadvise, so a helper does it: a shell loop that runs GNU dd with
// `iflag=nocache count=0` on its fd 3 (our file, handed over open: dd never sees a path) for each
// line we write, and answers with a line. That is POSIX_FADV_DONTNEED over the whole file: the
// kernel starts the writeback of dirty pages and drops the clean ones; dirty pages and pages under
// writeback stay, so nothing written is lost or changed — a drop only ever costs a later read of
// the file a trip to the disk. One drop runs at a time; requests meanwhile become one more. When
// the helper cannot run (no dd, a dd without `nocache`, spawn failure) or dies, `onUnavailable` is
// called once and the file is written without it.
import type { ChildProcess } from 'node:child_process';
import type { Socket } from 'node:net';
import { spawnFdHelper } from './spawn.js';

const MiB = 1024 * 1024;
/** Files with less data than this are not worth a helper (its start: ~15 ms of this thread). */
export const DROP_MIN_BYTES = 128 * MiB;
/** Fixed text, never anything from an archive: one drop per line read, a line back after each. */
const SCRIPT = 'while read -r _; do dd iflag=nocache count=0 status=none <&3 || exit 1; echo; done';
/** How long end() waits for the helper to exit once told to (it has at most one drop to finish). */
export const END_WAIT_MS = 5000;

export class DropBehind {
  /** null when it could not be started */
  readonly #child: ChildProcess | null = null;
  readonly #exited: Promise<void> = Promise.resolve();
  #busy = false;
  #again = false;
  #ended = false;
  #gone = false;
  /** ends the profile's interval of the drop running */
  #timing: (() => void) | null = null;
  /** drops done (for tests and profiles) */
  drops = 0;

  /** `fd`: the open file; `onUnavailable`: called once if the helper fails before end();
   *  `timeDrop`: opens a profile interval for a drop, returns its end. */
  constructor(fd: number, onUnavailable: () => void, readonly timeDrop?: () => () => void, shell = '/bin/sh') {
    const lost = (): void => {
      if (this.#gone) return;
      this.#gone = true;
      this.#timing?.(); // a drop it was running ends here
      this.#timing = null;
      if (!this.#ended) onUnavailable();
    };
    let child: ChildProcess;
    try {
      child = spawnFdHelper(shell, ['-c', SCRIPT], fd);
    } catch {
      // spawn itself threw: as if it had exited
      this.#gone = true;
      queueMicrotask(onUnavailable);
      return;
    }
    this.#child = child;
    // a child that never started (ENOENT, EAGAIN: 'error' without a pid) has no 'close' to wait for
    this.#exited = new Promise<void>((resolve) => {
      child.once('close', () => resolve());
      child.once('error', () => {
        if (child.pid === undefined) resolve();
      });
    });
    child.once('error', lost);
    child.once('exit', lost);
    child.stdin!.on('error', () => undefined); // EPIPE once it exited: 'exit' reports it
    // it never holds this process open: end() and kill() wait for it with a timer of their own,
    // and setpriv's death signal stops it when this process ends
    child.unref();
    (child.stdin as Socket).unref();
    (child.stdout as Socket).unref();
    child.stdout!.on('data', (d: Buffer) => {
      for (const byte of d) if (byte === 0x0a) this.#answered();
    });
  }

  /** the helper's process id (tests), while it was started */
  get pid(): number | undefined {
    return this.#child?.pid;
  }

  /** A flush ended: drop what is on disk now. */
  flushed(): void {
    if (this.#gone || this.#ended) return;
    if (this.#busy) {
      this.#again = true;
      return;
    }
    this.#busy = true;
    this.#timing = this.timeDrop?.() ?? null;
    this.#child!.stdin!.write('\n');
  }

  #answered(): void {
    this.#timing?.();
    this.#timing = null;
    this.drops++;
    this.#busy = false;
    if (this.#again) {
      this.#again = false;
      this.flushed();
    }
  }

  /** No more drops: the helper ends after the one running (killed if it takes over END_WAIT_MS). */
  async end(): Promise<void> {
    this.#ended = true;
    if (this.#child === null) return;
    this.#child.stdin!.end();
    if (!(await this.#exitWithin(END_WAIT_MS))) await this.kill();
  }

  /** Stop now (a failed or cancelled file): SIGKILL, then wait for its exit (bounded too). */
  async kill(): Promise<void> {
    this.#ended = true;
    if (this.#child === null) return;
    this.#child.kill('SIGKILL');
    await this.#exitWithin(END_WAIT_MS);
  }

  /** Whether the helper exited within `ms`. The timer holds this process open meanwhile (the
   *  child does not): a wait never ends in a silent exit. */
  async #exitWithin(ms: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
    try {
      return await Promise.race([this.#exited.then(() => true), late]);
    } finally {
      clearTimeout(timer);
    }
  }
}
