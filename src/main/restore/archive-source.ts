// Where a restore reads the archive from: a file, stdin, a named pipe or a --source-command. The
// format has no end marker, so a command's own exit status is the only sign of a short stream:
// finish() checks it (bounded); close() stops whatever is still running. Nothing here waits forever.
import { closeSync, constants as fsc, createReadStream, open as fsOpen, openSync } from 'node:fs';
import { open as openFile, stat } from 'node:fs/promises';
import { once } from 'node:events';
import { Socket } from 'node:net';
import type { Readable } from 'node:stream';
import type { ResultPromise } from '../io/spawn.js';
import { QvmBackupError, fail } from '../errors.js';
import { loadSpawner, spawnProcess } from '../io/spawn.js';
import { signalGroup } from '../io/child-lifetime.js';
import { boundedWait } from '../pipeline/waits.js';
import { oneLine, type TailBuffer } from '../io/tail-buffer.js';
import { FileInput, StreamInput, type ByteInput } from '../tar/byte-input.js';
import { QVM_RUN, RESTORE_SERVICE, locationLine, qvmRunArgs } from '../io/qrexec.js';
import { QfileToTar, qfileResult } from './qfile-stream.js';

export interface Source {
  /** what the outer tar reader reads: the stream below, or a regular file read in place */
  input: ByteInput;
  /** stop reading now (a signal): the next read fails */
  stop: () => void;
  stream?: Readable;
  command?: ResultPromise;
  /**
   * The shell's own exit (not the end of its pipes: a process it left behind, e.g. an ssh
   * ControlPersist master, may keep stderr open for hours; nothing waits for that)
   */
  exited?: Promise<{ exitCode?: number; signal?: string }>;
  /** the last 4 KiB of the command's stderr (never buffered without bound) */
  stderr?: TailBuffer;
  /** how messages name the command ("--source-command", "qubes.Restore in VM x") */
  what?: string;
  /** once closed: what the command's shell left is killed, and the run's exit hook removed */
  release?: () => void;
  /** signal the command's whole process group (what its shell started too) */
  killGroup?: (signal: NodeJS.Signals) => void;
}

/** Where the archive comes from when it is in a VM (--dest-vm of qvm-backup-restore). */
export interface SourceVm {
  vm: string;
  /** --location-is-service: the location names the service to call (e.g. my.Backup+arg) */
  locationIsService: boolean;
}

/** How long a --source-command may go on after its stdout ended (or after we stopped reading). */
const SOURCE_EXIT_WAIT_MS = 30_000;

/** Open the archive's source: a file, `-` (stdin), a named pipe, or `sh -c <sourceCommand>`. */
export async function openSource(o: { location: string; sourceCommand?: string | undefined; sourceVm?: SourceVm | undefined; signal: AbortSignal }): Promise<Source> {
  if (o.sourceVm !== undefined || o.sourceCommand !== undefined) await loadSpawner();
  if (o.sourceVm !== undefined) return openVmSource(o.location, o.sourceVm, o.signal);

  if (o.sourceCommand !== undefined) {
    // a process group of its own, signalled whole: what the shell started (a `sleep` after
    // `exec >&-`, a pipeline) never outlives the run
    const { child: command, stderr } = spawnProcess('sh', ['-c', o.sourceCommand], { stdin: 'ignore', stdout: 'pipe', signal: o.signal, detached: true }, 'source');
    const killGroup = (signal: NodeJS.Signals): void => void signalGroup(command.pid, signal);
    const onExit = (): void => killGroup('SIGKILL');
    process.on('exit', onExit);
    const onAbort = (): void => killGroup('SIGTERM');
    o.signal.addEventListener('abort', onAbort, { once: true });
    // closeSource: the group is killed then, and nothing of it is left for our exit (a process
    // running many restores would pile up listeners that each kill a process group of that
    // number, which by then may be another program's)
    const release = (): void => {
      killGroup('SIGKILL');
      process.off('exit', onExit);
      o.signal.removeEventListener('abort', onAbort);
    };
    return { ...ofStream(command.stdout!), command, exited: exitOf(command), stderr, killGroup, release }; // stdout is a pipe: never null
  }
  if (o.location === '-') return ofStream(process.stdin);
  const st = await stat(o.location);
  if (st.isFIFO()) return ofStream(await openFifo(o.location, o.signal));
  if (!st.isFile()) return ofStream(createReadStream(o.location, { highWaterMark: 1024 * 1024 }));
  const input = new FileInput(await openFile(o.location, 'r'));
  return { input, stop: () => void input.close() };
}

/** The process's own exit (not the end of its pipes); `{}` when it could not start. */
function exitOf(command: ResultPromise): Promise<{ exitCode?: number; signal?: string }> {
  return new Promise((res) => {
    command.once('exit', (code, sig) => res({ ...(code !== null ? { exitCode: code } : {}), ...(sig !== null ? { signal: sig } : {}) }));
    command.once('error', () => res({}));
  });
}

function ofStream(stream: Readable): Source {
  stream.on('error', () => {}); // surfaced through the reader
  return { input: new StreamInput(stream), stream, stop: () => stream.destroy(new Error('interrupted')) };
}

/**
 * The archive from a VM, as Qubes fetches it: `qvm-run --pass-io --service VM qubes.Restore` with
 * the location as the first line and the member filter as the second (empty: every member), or,
 * with --location-is-service, the service the location names (then only the filter line). The
 * answer is the qfile stream of tar2qfile, turned back into tar here; its end is answered with
 * the CRC of what arrived, after which the service exits (its status is checked like a
 * --source-command's).
 */
function openVmSource(location: string, v: SourceVm, signal: AbortSignal): Source {
  const args = qvmRunArgs(v.vm, v.locationIsService ? location : RESTORE_SERVICE);
  const what = `${v.locationIsService ? location : RESTORE_SERVICE} in VM ${v.vm}`;
  const { child: command, stderr } = spawnProcess(QVM_RUN, args, { stdin: 'pipe', stdout: 'pipe', signal }, `${QVM_RUN} (${what})`);
  const exited = exitOf(command);
  const stdin = command.stdin!;
  stdin.on('error', () => {}); // a service that exited early shows in its exit status
  stdin.write(`${v.locationIsService ? '' : locationLine(location)}\n`);
  const explain = async (): Promise<string> => {
    const r = await boundedWait(exited, 5000);
    if (r === 'timeout') return '';
    if (command.stderr && !command.stderr.readableEnded) await boundedWait(once(command.stderr, 'end').catch(() => undefined), 1000);
    const t = stderr.text().trim();
    return `${QVM_RUN} (${what}) ${r.exitCode !== undefined ? `exited with status ${r.exitCode}` : `was killed (${r.signal ?? 'unknown signal'})`}${t ? `: ${t.slice(-500)}` : ''}`;
  };
  const tar = new QfileToTar((crc) => stdin.end(qfileResult(crc)), explain);
  command.stdout!.on('error', (e) => tar.destroy(e));
  command.stdout!.pipe(tar);
  return { ...ofStream(tar), command, exited, stderr, what };
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
  // a command that failed when the archive turned out short caused it: the run fails as a whole
  // (the VMs complete before the cut came from a failing source too). If its output ended (the
  // archive broke off there), it cannot be blocked on our pipe: it is checked as a complete
  // stream's command is (30 s to exit 0, else the run fails). If we stopped reading first, it may
  // be blocked on a full pipe: only an exit already seen counts, and it is stopped.
  const mayBeBlocked = stoppedEarly && cmd.stdout?.readableEnded !== true;
  const early = mayBeBlocked ? await boundedWait(source.exited!, 0) : 'timeout';
  if (mayBeBlocked && (early === 'timeout' || early.exitCode === 0)) {
    source.stream?.destroy();
    cmd.kill();
    source.killGroup?.('SIGTERM');
    await boundedWait(source.exited!, 5000);
    return;
  }
  const r = early !== 'timeout' ? early : await boundedWait(source.exited!, SOURCE_EXIT_WAIT_MS);
  // its last words, if it said any: stderr may stay open (a process it left behind), so briefly
  if (r !== 'timeout' && r.exitCode !== 0 && cmd.stderr && !cmd.stderr.readableEnded) await boundedWait(once(cmd.stderr, 'end').catch(() => undefined), 1000);
  const tail = source.stderr?.text() ?? '';
  const stderr = tail ? `; its stderr ends with: ${oneLine(tail.slice(-500))}` : '';
  const what = source.what ?? '--source-command';
  if (r === 'timeout') {
    cmd.kill();
    source.killGroup?.('SIGTERM');
    fail('ERR_CORRUPT', `${what} did not exit within ${SOURCE_EXIT_WAIT_MS / 1000} s after its output ended; nothing was installed${stderr}`, { command: 'source' });
  }
  if (r.exitCode !== 0) {
    const how = r.exitCode !== undefined ? `exited with status ${r.exitCode}` : `was killed (${r.signal ?? 'unknown signal'})`;
    fail('ERR_CORRUPT', `${what} ${how}: the archive it delivered may be incomplete, so nothing was installed${stderr}`, { command: 'source', ...(r.exitCode !== undefined ? { exitCode: r.exitCode } : {}), stderrTail: tail });
  }
}

/** Stop reading and stop the command (SIGTERM, SIGKILL after 3 s), waiting for it at most 5 s. */
export async function closeSource(source: Source): Promise<void> {
  source.stream?.destroy();
  await source.input.close();
  if (!source.command) return;
  source.command.kill(); // SIGKILL follows after 3 s (forceKillAfterDelay)
  source.killGroup?.('SIGTERM'); // and what it started (SIGKILL at our exit)
  source.command.stderr?.destroy();
  await boundedWait(source.exited!, 5000);
  source.release?.();
}
