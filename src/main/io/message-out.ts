// Our own messages (stderr) and --json's lines (stdout), written so that a reader who stops
// reading never stops the run. Node writes to a pipe or a terminal synchronously: once its buffer
// is full (a `| less` at the end of its screen, a terminal paused with Ctrl-S, a log reader that
// hangs) every write blocks the one thread that runs everything, signal handlers and
// --stall-timeout included, and the run freezes holding the host lock and its half-made files.
//
// Here a pipe, a FIFO or a terminal is opened again through /proc/self/fd as a description of our
// own with O_NONBLOCK (the flag belongs to the open file description: setting it on fd 2 itself
// would make the writes of every other process sharing it fail with EAGAIN). A write that does not
// fit waits in a bounded queue and is retried on a timer; the status lines of the progress display
// are skipped while anything waits (ready()), other messages are kept up to MAX_WAITING bytes and
// dropped past it, counted, and said once the reader catches up (on stderr); the lines a reader
// must get — the run's final line, an error, a listing — are kept whatever waits (writeKept), and
// so is the rest of a line whose start went out. stdout and stderr on the same pipe or terminal
// share one queue (their lines in the order written, none spliced into another). What waits when
// the command ends gets a bounded time to go out (cli/common.ts exitAfterOutput). Anything else (a
// regular file, /dev/null, a socket, or no /proc) is written to as before, synchronously.
import { EventEmitter } from 'node:events';
import { closeSync, constants, fstatSync, openSync, writeSync, type Stats } from 'node:fs';
import { isatty } from 'node:tty';

/** Bytes of messages kept while the reader does not read; past it they are dropped (counted). */
export const MAX_WAITING = 8 << 20;
/** How often what waits is tried again. */
const RETRY_MS = 10;

/** The descriptor to write `fd`'s messages to (`st`: its fstat): a non-blocking description of our own where `fd` is
 *  a pipe, FIFO or terminal and /proc lets us open it again; else `fd` itself. */
function openOwnDescription(fd: number, st: Stats | undefined): { fd: number; own: boolean } {
  if (st === undefined || (!st.isFIFO() && !isatty(fd))) return { fd, own: false };
  try {
    const own = openSync(`/proc/self/fd/${fd}`, constants.O_WRONLY | constants.O_NONBLOCK | constants.O_NOCTTY); // libuv adds O_CLOEXEC
    const again = fstatSync(own);
    if (again.dev === st.dev && again.ino === st.ino) return { fd: own, own: true };
    closeSync(own);
  } catch {
    // no /proc, a FIFO without a reader (ENXIO: every write fails with EPIPE anyway), a closed fd
  }
  return { fd, own: false };
}

/** The line that says how much was dropped. */
export const droppedNotice = (bytes: number): string => `warning: ${bytes} bytes of messages were dropped: the output was not being read\n`;

/** One output of messages (see above). Emits 'error' (EPIPE, EIO, ENOSPC: the first failure, once;
 *  nothing is written after it) and 'drain' (what waited has gone out). */
export class MessageOut extends EventEmitter {
  readonly isTTY: boolean;
  readonly nonBlocking: boolean;
  /** the file behind it, to tell whether stdout and stderr are the same */
  readonly file: { dev: number; ino: number } | undefined;
  #fd: number;
  #max: number;
  #onDropped: (notice: string) => void;
  #waiting: Buffer[] = [];
  #waitingBytes = 0;
  #dropped = 0;
  #failed = false;
  #timer: NodeJS.Timeout | undefined;

  /** `maxWaiting`: bytes kept while the reader does not read (MAX_WAITING); `onDropped`: where the
   *  line saying how much was dropped goes (default: this output, after what was kept) */
  constructor(fd: number, o: { maxWaiting?: number; onDropped?: (notice: string) => void } = {}) {
    super();
    this.#max = o.maxWaiting ?? MAX_WAITING;
    this.#onDropped = o.onDropped ?? ((notice) => this.writeKept(`\n${notice}`));
    let st: Stats | undefined;
    try {
      st = fstatSync(fd);
    } catch {
      // a closed descriptor: its writes fail (EBADF), said as any output's failure
    }
    this.file = st && { dev: st.dev, ino: st.ino };
    this.isTTY = isatty(fd);
    const d = openOwnDescription(fd, st);
    this.#fd = d.fd;
    this.nonBlocking = d.own;
  }

  /** Whether a line written now goes out now: nothing waits (or was dropped) before it, and the
   *  output works. */
  ready(): boolean {
    return this.#waitingBytes === 0 && this.#dropped === 0 && !this.#failed;
  }

  /** Bytes dropped so far, because too much was waiting, and not yet said. */
  get dropped(): number {
    return this.#dropped;
  }

  /** Write `text` now, or queue it behind what waits; false when it did not go out now. */
  write(text: string | Uint8Array): boolean {
    return this.#put(text, false);
  }

  /** As write(), but never dropped: for the few lines a reader must get (the run's final line, an
   *  error, a listing), however much waits. */
  writeKept(text: string | Uint8Array): boolean {
    return this.#put(text, true);
  }

  #put(text: string | Uint8Array, mustKeep: boolean): boolean {
    if (this.#failed) return false;
    let keep = mustKeep;
    let b = typeof text === 'string' ? Buffer.from(text) : Buffer.from(text.buffer, text.byteOffset, text.byteLength);
    if (this.ready()) {
      const n = this.#writeSome(b);
      if (n === b.length) return true;
      if (this.#failed) return false;
      keep ||= n > 0; // the rest of a line already begun: never cut
      b = b.subarray(n);
    }
    // once one is dropped, so is every later one (but the kept) until the reader has caught up
    if (!keep && (this.#dropped > 0 || this.#waitingBytes + b.length > this.#max)) this.#dropped += b.length;
    else {
      // a copy: the caller's bytes may change after write() returns
      this.#waiting.push(Buffer.from(b));
      this.#waitingBytes += b.length;
    }
    if (this.#timer === undefined) {
      this.#timer = setInterval(() => this.flushNow(), RETRY_MS);
      this.#timer.unref(); // the command's end waits for the output itself (exitAfterOutput)
    }
    return false;
  }

  /** Bytes of `b` written (0 when the reader is full); a failure ends the output (see 'error'). */
  #writeSome(b: Buffer): number {
    try {
      return writeSync(this.#fd, b);
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      if (err.code === 'EAGAIN' || err.code === 'EWOULDBLOCK') return 0;
      this.#fail(err);
      return 0;
    }
  }

  #fail(err: NodeJS.ErrnoException): void {
    if (this.#failed) return;
    this.#failed = true;
    this.#waiting = [];
    this.#waitingBytes = 0;
    this.#stopTimer();
    // asynchronously, as a stream's 'error': the writer's caller is not the place to handle it
    process.nextTick(() => {
      if (this.listenerCount('error') > 0) this.emit('error', err);
    });
  }

  #stopTimer(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** Write what waits, as far as the reader takes it now (never blocks). */
  flushNow(): void {
    while (this.#waiting.length > 0 && !this.#failed) {
      const head = this.#waiting[0]!;
      const n = this.#writeSome(head);
      this.#waitingBytes -= n;
      if (n < head.length) {
        this.#waiting[0] = head.subarray(n);
        return;
      }
      this.#waiting.shift();
    }
    if (this.#failed) return;
    this.#stopTimer();
    if (this.#dropped > 0) {
      const n = this.#dropped;
      this.#dropped = 0;
      // said once the reader caught up, behind what was kept
      this.#onDropped(droppedNotice(n));
      if (!this.ready()) return;
    }
    this.emit('drain');
  }

  /** Resolves once nothing waits (at once when nothing does), or when the output failed. */
  drained(): Promise<void> {
    if (this.ready() || this.#failed) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        this.off('drain', done);
        this.off('error', done);
        resolve();
      };
      this.on('drain', done);
      this.on('error', done);
    });
  }
}

let stderrOut: MessageOut | undefined;
let stdoutOut: MessageOut | undefined;

/** The command's messages (stderr), made at first use. */
export function messages(): MessageOut {
  return (stderrOut ??= new MessageOut(2));
}

/** --json's lines and --list's listing (stdout), made at first use: never when stdout carries the
 *  archive (`-`), which is the destination's own stream. The messages' own output when both are
 *  the same pipe or terminal (one queue: lines in the order written). What is dropped from it is
 *  said on stderr (a line that is not JSON has no place among --json's). */
export function results(): MessageOut {
  if (stdoutOut !== undefined) return stdoutOut;
  const err = messages();
  let same = false;
  try {
    const st = fstatSync(1);
    same = err.file !== undefined && st.dev === err.file.dev && st.ino === err.file.ino;
  } catch {
    // no stdout: its writes fail (EBADF), said as any output's failure
  }
  return (stdoutOut = same ? err : new MessageOut(1, { onDropped: (notice) => err.writeKept(notice) }));
}

/** The outputs made so far (for the command's end). */
export function openOutputs(): MessageOut[] {
  return [...new Set([stderrOut, stdoutOut])].filter((o): o is MessageOut => o !== undefined);
}
