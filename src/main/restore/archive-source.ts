// Where a restore reads the archive from: a file, stdin, a named pipe or a --source-command. The
// format has no end marker, so a command's own exit status is the only sign of a short stream:
// finish() checks it (bounded); close() stops whatever is still running. Nothing here waits forever.
import { closeSync, constants as fsc, createReadStream, open as fsOpen, openSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { once } from 'node:events';
import { Socket } from 'node:net';
import type { Readable } from 'node:stream';
import { execa, type ResultPromise } from 'execa';
import { QvmBackupError, fail } from '../errors.js';
import { diesWithUs, timedSpawn } from '../io/child-lifetime.js';
import { TailBuffer } from '../io/tail-buffer.js';

export interface Source {
  stream: Readable;
  command?: ResultPromise;
  /**
   * The shell's own exit (not the end of its pipes: a process it left behind, e.g. an ssh
   * ControlPersist master, may keep stderr open for hours; nothing waits for that)
   */
  exited?: Promise<{ exitCode?: number; signal?: string }>;
  /** the last 4 KiB of the command's stderr (never buffered without bound) */
  stderr?: TailBuffer;
}

/** How long a --source-command may go on after its stdout ended (or after we stopped reading). */
const SOURCE_EXIT_WAIT_MS = 30_000;

/** Open the archive's source: a file, `-` (stdin), a named pipe, or `sh -c <sourceCommand>`. */
export async function openSource(o: { location: string; sourceCommand?: string | undefined; signal: AbortSignal }): Promise<Source> {

  if (o.sourceCommand !== undefined) {
    const [file, argv] = diesWithUs('sh', ['-c', o.sourceCommand]);
    const command = timedSpawn(() => execa(file, argv, { stdin: 'ignore', stdout: 'pipe', stderr: 'pipe', buffer: false, cancelSignal: o.signal, reject: false, forceKillAfterDelay: 3000 }));
    const stderr = new TailBuffer(4096);
    command.stderr?.on('data', (d: Buffer) => stderr.push(d));
    const exited = new Promise<{ exitCode?: number; signal?: string }>((res) => {
      command.once('exit', (code, sig) => res({ ...(code !== null ? { exitCode: code } : {}), ...(sig !== null ? { signal: sig } : {}) }));
      command.once('error', () => res({}));
    });
    return { stream: command.stdout, command, exited, stderr };
  }
  if (o.location === '-') return { stream: process.stdin };
  if ((await stat(o.location)).isFIFO()) return { stream: await openFifo(o.location, o.signal) };
  return { stream: createReadStream(o.location, { highWaterMark: 1024 * 1024 }) };
}

/**
 * A named pipe as the archive: opened (waiting for its writer) in a libuv worker, which a signal
 * releases by opening the other end itself, then read through the event loop: a read blocked in
 * a worker thread would keep the process from exiting after Ctrl-C.
 */
async function openFifo(path: string, signal: AbortSignal): Promise<Readable> {
  const opened = new Promise<number>((resolve, reject) => fsOpen(path, fsc.O_RDONLY, (e, fd) => (e ? reject(e) : resolve(fd))));
  const release = (): void => {
    try {
      closeSync(openSync(path, fsc.O_WRONLY | fsc.O_NONBLOCK));
    } catch {
      // nobody is waiting any more
    }
  };
  signal.addEventListener('abort', release, { once: true });
  try {
    const fd = await opened;
    if (signal.aborted) {
      closeSync(fd);
      throw new QvmBackupError('ERR_CANCELLED', 'interrupted while waiting for the writer of the archive pipe');
    }
    return new Socket({ fd, readable: true, writable: false });
  } finally {
    signal.removeEventListener('abort', release);
  }
}

/**
 * Wait for the --source-command: killed at once when we stopped reading early (the archive was
 * bad: it would block on a full pipe forever), bounded otherwise; a non-zero exit fails the run.
 */
export async function checkSourceCommand(source: Source, stoppedEarly: boolean): Promise<void> {
  const cmd = source.command!;
  if (stoppedEarly) {
    source.stream.destroy();
    cmd.kill();
    await boundedWait(source.exited!, 5000);
    return;
  }
  const r = await boundedWait(source.exited!, SOURCE_EXIT_WAIT_MS);
  // its last words, if it said any: stderr may stay open (a process it left behind), so briefly
  if (r !== 'timeout' && r.exitCode !== 0 && cmd.stderr && !cmd.stderr.readableEnded) await boundedWait(once(cmd.stderr, 'end').catch(() => undefined), 1000);
  const tail = source.stderr?.text() ?? '';
  const stderr = tail ? `; its stderr ends with: ${tail.slice(-500)}` : '';
  if (r === 'timeout') {
    cmd.kill();
    fail('ERR_CORRUPT', `--source-command did not exit within ${SOURCE_EXIT_WAIT_MS / 1000} s after its output ended; nothing was installed${stderr}`, { command: 'source' });
  }
  if (r.exitCode !== 0) {
    const how = r.exitCode !== undefined ? `exited with status ${r.exitCode}` : `was killed (${r.signal ?? 'unknown signal'})`;
    fail('ERR_CORRUPT', `--source-command ${how}: the archive it delivered may be incomplete, so nothing was installed${stderr}`, { command: 'source', ...(r.exitCode !== undefined ? { exitCode: r.exitCode } : {}), stderrTail: tail });
  }
}

/** `p`, or 'timeout' after `ms`. */
async function boundedWait<T>(p: Promise<T>, ms: number): Promise<T | 'timeout'> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'timeout'>((res) => (timer = setTimeout(() => res('timeout'), ms)));
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Stop reading and stop the command (SIGTERM, SIGKILL after 3 s), waiting for it at most 5 s. */
export async function closeSource(source: Source): Promise<void> {
  source.stream.destroy();
  if (!source.command) return;
  source.command.kill(); // SIGKILL follows after 3 s (forceKillAfterDelay)
  source.command.stderr?.destroy();
  await boundedWait(source.exited!, 5000);
}
