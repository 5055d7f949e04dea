// Hands the pages of a file we are writing back to the kernel once they are on disk (after each
// background flush: background-flush.ts), so that the next writes into the page cache reuse pages
// freed a moment before. On a VM whose freed memory goes back to the host, a page the guest has
// not touched lately costs a fault in the host on its first touch, inside the write that
// allocates it (the kernel runs a file's writes one at a time): 4 GiB written in 4 MiB writes took
// 7.7-9.6 s and 6-7.8 CPU-s here, against 3.9-4.4 s and 0.9-1.3 CPU-s with the written pages
// dropped every 64 MiB. It also keeps a restore from filling dom0's memory with the images. Used
// for a restored VM image with DROP_MIN_BYTES of data or more (image-extractor.ts; smaller ones
// keep the page-cache preparation, page-prefault.ts). Not for a backup's archive: measured there
// (1 GiB of data, gzip and -Z zstd) it saved nothing, and with zstd cost ~0.2 s.
//
// Node has no posix_fadvise, so a helper does it, started at the first drop (a file never flushed
// costs no process): a shell loop that runs GNU dd with `iflag=nocache count=0` on its fd 3 (our
// file, handed over open: dd never sees a path) for each line we write, and answers with a line.
// That is POSIX_FADV_DONTNEED over the whole file: the kernel starts the writeback of dirty pages
// and drops the clean ones; dirty pages and pages under writeback stay, so nothing written is lost
// or changed — a drop only ever costs a later read of the file a trip to the disk. One drop runs at
// a time; requests meanwhile become one more. When the helper cannot run (no dd, a dd without
// `nocache`, no file descriptors left) or dies, `onUnavailable` is called once and the file is
// written without it.
// Lifetime: the helper runs in a process group of its own, which kill() ends as a whole (SIGKILL:
// the shell, a dd, anything a dd started). If this process is killed first, the shell gets
// setpriv's death signal (where setpriv exists), SIGTERM, which its trap turns into a SIGKILL of
// that whole group, a dd running included. Each dd is not started through a setpriv of its own:
// a program start per drop cost more than the drop (~3 ms of CPU each, ~0.06 CPU-s per GiB
// restored; BENCHMARKS.md, 2026-12-08). (A dd stuck in the kernel, on a device that hangs, dies
// only once that call returns, whatever signal it gets.) A drop
// that takes longer than `waitMs` (5 s) ends the helper: the file goes on without it, prepared
// ahead (onUnavailable). dd is found by our own PATH lookup (findInPath: absolute entries only),
// not the shell's.
import type { ChildProcess } from 'node:child_process';
import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { findInPath, killGroup } from './child-lifetime.js';
import { spawnFdHelper } from './spawn.js';

const MiB = 1024 * 1024;
/** Files with less data than this are not worth a helper (its start: 10-30 ms of this thread,
 *  more in a larger process: a fork copies its page tables). */
export const DROP_MIN_BYTES = 128 * MiB;
/** Fixed text, never anything from an archive: one drop per line read, a line back after each; the
 *  command (absolute paths, ours) comes as the arguments. The drop runs in the background and is
 *  waited for, so that a SIGTERM (our death signal for the shell) runs the trap at once, even
 *  during a drop: it kills the helper's whole process group, the dd included. */
const SCRIPT = 'trap "kill -KILL 0" TERM; while read -r _; do "$@" <&3 & wait $! || exit 1; echo; done';
/** How long one drop, or the helper's exit after end(), may take before the helper is killed. */
export const WAIT_MS = 5000;
/** How long a SIGKILLed helper is waited for. */
const KILL_WAIT_MS = 1000;

export class DropBehind {
  /** null until the first drop, and when it could not be started */
  #child: ChildProcess | null = null;
  #exited: Promise<void> = Promise.resolve();
  #busy = false;
  #again = false;
  #ended = false;
  #gone = false;
  /** the helper's end after end(), once asked for */
  #ending: Promise<void> | null = null;
  /** when the drop running was asked for (performance.now()), and its watchdog */
  #askedAt = 0;
  #watchdog: NodeJS.Timeout | undefined;
  /** drops done (for tests and profiles) */
  drops = 0;
  /** the helper took too long (a drop, or its exit after end()) and was killed (tests) */
  killed = false;

  /** `fd`: the open file (the caller keeps it open until end() or kill() resolved); `onUnavailable`:
   *  called once if the helper fails before end(); `onDrop`: told each drop's time (ms, from the
   *  request to the answer). The helper starts at the first drop: a file never flushed costs nothing. */
  constructor(
    readonly fd: number,
    readonly onUnavailable: () => void = () => undefined,
    readonly onDrop?: (ms: number) => void,
    readonly o: { shell?: string; waitMs?: number } = {},
  ) {}

  /** the helper's process id (tests), while it was started */
  get pid(): number | undefined {
    return this.#child?.pid;
  }

  #lost(): void {
    if (this.#gone) return;
    this.#gone = true;
    clearTimeout(this.#watchdog);
    queueMicrotask(() => {
      if (!this.#ended) this.onUnavailable();
    });
  }

  /** SIGKILL to the helper's process group (the shell, its dd and whatever that started). */
  #killGroup(): void {
    if (this.#child) killGroup(this.#child);
  }

  /** The helper, started now; null (and reported) when it cannot be. Never throws. */
  #start(): ChildProcess | null {
    const dd = findInPath('dd');
    let child: ChildProcess | undefined;
    try {
      if (dd === null) throw new Error('no dd in PATH');
      child = spawnFdHelper(this.o.shell ?? '/bin/sh', ['-c', SCRIPT, 'drop-behind', dd, 'iflag=nocache', 'count=0', 'status=none'], this.fd, 'TERM');
      // out of file descriptors: node gives a child without its pipes (and 'error' later)
      if (child.stdin == null || child.stdout == null) throw new Error('no pipes');
    } catch {
      if (child !== undefined) this.#watch(child); // it may have started: its end is still waited for
      this.#lost();
      return null;
    }
    this.#watch(child);
    child.stdin.on('error', () => undefined); // EPIPE once it exited: 'exit' reports it
    // it never holds this process open: end() and kill() wait for it with a timer of their own,
    // and setpriv's death signal stops it when this process ends
    (child.stdin as Socket).unref();
    (child.stdout as Socket).unref();
    child.stdout.on('error', () => undefined); // its end is the exit's business
    child.stdout.on('data', (d: Buffer) => {
      for (const byte of d) if (byte === 0x0a) this.#answered();
    });
    return child;
  }

  /** Follow `child`'s end: its exit (not its pipes' close: nothing else may hold them, but a wait
   *  must not depend on it), or 'error' without a pid (it never started). */
  #watch(child: ChildProcess): void {
    this.#child = child;
    child.unref();
    this.#exited = new Promise<void>((resolve) => {
      child.once('exit', () => resolve());
      child.once('error', () => {
        if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) resolve();
      });
    });
    child.once('error', () => this.#lost());
    child.once('exit', () => this.#lost());
  }

  /** A flush ended: drop what is on disk now. */
  flushed(): void {
    if (this.#gone || this.#ended) return;
    if (this.#busy) {
      this.#again = true;
      return;
    }
    const child = this.#child ?? this.#start();
    if (child === null || this.#gone) return;
    this.#busy = true;
    this.#askedAt = performance.now();
    // a drop that hangs ends the helper (the file goes on without it, prepared ahead)
    this.#watchdog = setTimeout(() => {
      this.killed = true;
      this.#killGroup();
      this.#lost();
    }, this.o.waitMs ?? WAIT_MS);
    this.#watchdog.unref();
    child.stdin!.write('\n');
  }

  #answered(): void {
    clearTimeout(this.#watchdog);
    this.onDrop?.(performance.now() - this.#askedAt);
    this.drops++;
    this.#busy = false;
    if (this.#again) {
      this.#again = false;
      this.flushed();
    }
  }

  /** No more drops: the helper ends after the one running (killed if it takes over `waitMs`). */
  end(): Promise<void> {
    this.#ended = true;
    return (this.#ending ??= (async () => {
      const child = this.#child;
      if (child === null) return;
      child.stdin?.end();
      if (await this.#exitWithin(this.o.waitMs ?? WAIT_MS)) return;
      this.killed = true;
      this.#killGroup();
      await this.#exitWithin(KILL_WAIT_MS);
    })());
  }

  /** Stop now (a failed or cancelled file, also while end() waits): SIGKILL to the helper's group,
   *  then wait for its exit (bounded too). */
  async kill(): Promise<void> {
    this.#ended = true;
    clearTimeout(this.#watchdog);
    if (this.#child === null) return;
    this.#killGroup();
    await this.#exitWithin(KILL_WAIT_MS);
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
