// The one module that starts external processes (the only importer of execa). Long-running ones
// (GNU tar, the destination and source commands): the same execa options everywhere (streams, never
// buffered output, no rejection: the caller decides what an exit means), children killed with us
// (setpriv pdeathsig, child-lifetime.ts). Short helper calls (mkfifo, rm, cp, tar --version):
// runShort, with bounded output, a timeout and a thrown error. Both keep stderr as a bounded tail
// and give one error context shape, { command, exitCode, stderrTail }.
// execa is loaded on first use (loadSpawner): it is ~130 modules, 0.14 s of every start-up here,
// and a restore whose files are all VM images written in-process needs it for nothing. The one
// call made before that, a program's `--version` at start-up (GNU tar's check), is node's execFile:
// a few milliseconds, bounded output, a timeout (runVersion); a restore's page-dropping helper
// (drop-behind.ts) is node's spawn too (spawnFdHelper).
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import type { Result, ResultPromise } from 'execa';
import { QvmBackupError, type ErrorCode, type ErrorContext } from '../errors.js';
import { diesWithUs, timedSpawn } from './child-lifetime.js';
import { TailBuffer, oneLine } from './tail-buffer.js';

export type { ResultPromise } from 'execa';

type Execa = typeof import('execa').execa;
let execaFn: Execa | undefined;
let loading: Promise<void> | undefined;

/** Load execa; spawnProcess() may be called once this resolved (runShort awaits it itself). Every
 *  caller that is about to start a process awaits it first: the source and destination commands,
 *  tar and the decompression programs of a restore (a run that starts none never loads execa). */
export function loadSpawner(): Promise<void> {
  loading ??= import('execa').then((m) => {
    execaFn = m.execa;
  });
  return loading;
}

function loadedExeca(): Execa {
  if (execaFn === undefined) throw new QvmBackupError('ERR_INTERNAL', 'a process was about to start before loadSpawner() resolved');
  return execaFn;
}

/** Bytes of a child's stderr kept for error messages (the rest is dropped as it arrives). */
export const STDERR_TAIL_BYTES = 4096;

export interface SpawnOptions {
  stdin: 'pipe' | 'ignore';
  /** 2: into our stderr (a command's chatter must never mix with data on our stdout). */
  stdout: 'pipe' | 'ignore' | 2;
  /** Added to our environment (e.g. LC_ALL=C for programs whose messages are parsed). */
  env?: Record<string, string>;
  /** Kills the child (SIGTERM, then SIGKILL after forceKillAfterDelay); execa marks it cancelled. */
  signal?: AbortSignal;
  /** Own process group, for callers that kill the whole group themselves (a shell's pipeline).
   *  execa's exit cleanup skips detached children: such callers install their own. */
  detached?: boolean;
  /** Grace between kill()'s SIGTERM and the SIGKILL that follows (ms; default 3000). */
  forceKillAfterDelay?: number;
  /** The first bytes of its stderr kept beside the tail (a program that talks on after its error). */
  stderrHeadBytes?: number;
}

export interface Spawned {
  readonly child: ResultPromise;
  /** The command as shown in errors (shell-quoted argv, or the caller's label). */
  readonly command: string;
  readonly stderr: TailBuffer;
  /** Whether it runs through setpriv (which then reports a missing program as exit 127). */
  readonly viaSetpriv: boolean;
}

function shellQuote(a: string): string {
  return /^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replaceAll("'", `'\\''`)}'`;
}

/** `bin args`, shell-quoted, as shown in errors. */
export function commandLine(bin: string, args: readonly string[]): string {
  return [bin, ...args].map(shellQuote).join(' ');
}

/** Start `bin args` (looked up in PATH by the kernel's exec, through setpriv where it exists).
 *  loadSpawner() must have resolved (ERR_INTERNAL otherwise). */
export function spawnProcess(bin: string, args: readonly string[], o: SpawnOptions, label?: string): Spawned {
  const execa = loadedExeca();
  const [file, argv] = diesWithUs(bin, args);
  const child = timedSpawn(() => execa(file, argv, {
    stdin: o.stdin,
    stdout: o.stdout,
    stderr: 'pipe',
    buffer: false,
    reject: false,
    forceKillAfterDelay: o.forceKillAfterDelay ?? 3000,
    ...(o.env ? { env: o.env } : {}),
    ...(o.detached ? { detached: true } : { cleanup: true }),
    ...(o.signal ? { cancelSignal: o.signal } : {}),
  }));
  const stderr = new TailBuffer(STDERR_TAIL_BYTES, o.stderrHeadBytes ?? 0);
  child.stderr?.on('data', (d: Buffer) => stderr.push(d));
  return { child, command: label ?? commandLine(bin, args), stderr, viaSetpriv: file !== bin };
}

/**
 * `stream` (a child's stdout) read from now on, for a child started before its turn (a file's tar or
 * compression program): its reader is attached at once (its first read is pending), so the bytes
 * wait in the stream (the child blocks once its pipe is full) until they are iterated. A child's
 * stdout that nobody listens to is switched to flowing — its bytes dropped — by execa after one
 * turn of the event loop and by Node when the child exits.
 */
export function readerNow(stream: AsyncIterable<Uint8Array>): AsyncIterable<Uint8Array> {
  const it = stream[Symbol.asyncIterator]();
  let first: Promise<IteratorResult<Uint8Array>> | null = it.next();
  first.catch(() => {}); // seen by whoever iterates
  const iterator: AsyncIterator<Uint8Array> = {
    next: () => {
      const p = first ?? it.next();
      first = null;
      return p;
    },
    return: async (v?: unknown) => {
      first = null;
      return it.return ? it.return(v) : { done: true, value: undefined };
    },
  };
  return { [Symbol.asyncIterator]: () => iterator };
}

/** How a finished process ended, for messages: `exit 2`, `killed by SIGTERM`, or why it never ran. */
export function exitDetail(r: Pick<Result, 'exitCode' | 'signal' | 'originalMessage'>): string {
  if (r.exitCode !== undefined) return `exit ${r.exitCode}`;
  if (r.signal) return `killed by ${r.signal}`;
  return r.originalMessage || 'failed';
}

/** The error context every process failure carries. */
export function processContext(command: string, r: Pick<Result, 'exitCode'>, stderrTail: string): { command: string; exitCode: number | undefined; stderrTail: string } {
  return { command, exitCode: r.exitCode, stderrTail };
}

export interface ShortOptions {
  /** ms before the child is killed (SIGTERM, then SIGKILL); null for a copy whose length depends
   *  on the data: then `signal` is what ends it early. */
  timeout: number | null;
  signal?: AbortSignal;
  /** Added to our environment (LC_ALL=C is always set: messages are shown or parsed). */
  env?: Record<string, string>;
  /** Code of the thrown error (default ERR_IO). */
  code?: ErrorCode;
  /** Start of the error message (default: the command line). */
  what?: string;
  /** Added to the error's context. */
  context?: ErrorContext;
}

/** Most stdout a short call may print (tar --version prints a few hundred bytes). */
export const SHORT_STDOUT_BYTES = 64 * 1024;

/**
 * Run a short helper program to its end: stdin closed, stdout kept (at most SHORT_STDOUT_BYTES),
 * stderr as a bounded tail. Resolves to stdout on exit 0; otherwise throws a QvmBackupError
 * `what: why: stderr tail` with { command, exitCode, stderrTail } (why: exit N, killed by SIG,
 * timed out, not found, too much output, cancelled).
 */
export async function runShort(bin: string, args: readonly string[], o: ShortOptions): Promise<string> {
  const command = commandLine(bin, args);
  await loadSpawner();
  const execa = loadedExeca();
  const child = timedSpawn(() => execa(bin, [...args], {
    stdin: 'ignore',
    stdout: 'pipe',
    stderr: 'pipe',
    buffer: { stdout: true, stderr: false },
    maxBuffer: { stdout: SHORT_STDOUT_BYTES },
    reject: false,
    cleanup: true,
    forceKillAfterDelay: 3000,
    env: { ...o.env, LC_ALL: 'C' },
    ...(o.timeout !== null ? { timeout: o.timeout } : {}),
    ...(o.signal ? { cancelSignal: o.signal } : {}),
  }));
  const stderr = new TailBuffer(STDERR_TAIL_BYTES);
  child.stderr?.on('data', (d: Buffer) => stderr.push(d));
  const r = await child;
  if (!r.failed) return String(r.stdout ?? '');
  const tail = oneLine(stderr.text());
  const why =
    (r as { code?: string }).code === 'ENOENT' ? 'not found'
    : r.timedOut ? `timed out after ${(o.timeout ?? 0) / 1000} s`
    : r.isMaxBuffer ? `more than ${SHORT_STDOUT_BYTES} bytes of output`
    : r.isCanceled ? 'cancelled'
    : exitDetail(r);
  throw new QvmBackupError(o.code ?? 'ERR_IO', `${o.what ?? command}: ${why}${tail ? `: ${tail}` : ''}`, { ...o.context, ...processContext(command, r, tail) }, r);
}

/**
 * `bin --version` (LC_ALL=C) without execa: resolves to its stdout on exit 0; throws a QvmBackupError
 * (`code`) `bin --version: why[: stderr]` with { command, exitCode, stderrTail } otherwise, and
 * `missing: true` in that context for a program that does not exist. Killed (SIGKILL) after
 * `timeoutMs`, or as soon as `signal` aborts (then it rejects with the signal's reason when that is
 * a QvmBackupError, else ERR_CANCELLED): a hung probe must not hold a stopped run.
 */
export function runVersion(bin: string, timeoutMs: number, code: ErrorCode, signal?: AbortSignal): Promise<string> {
  const command = commandLine(bin, ['--version']);
  // through setpriv too: not even a hung probe outlives us
  const [file, argv] = diesWithUs(bin, ['--version']);
  return new Promise((resolve, reject) => {
    const cancelled = (cause?: unknown): QvmBackupError =>
      signal?.reason instanceof QvmBackupError ? signal.reason : new QvmBackupError('ERR_CANCELLED', `${command}: cancelled`, { command }, cause);
    if (signal?.aborted) return reject(cancelled());
    const child = timedSpawn(() =>
      execFile(file, argv, { env: { ...process.env, LC_ALL: 'C' }, timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: SHORT_STDOUT_BYTES, encoding: 'utf8', ...(signal ? { signal } : {}) }, (err, stdout, stderr) => {
        if (err === null) return resolve(stdout);
        if (signal?.aborted) return reject(cancelled(err));
        const e = err as NodeJS.ErrnoException & { code?: string | number; killed?: boolean; signal?: string };
        const exitCode = typeof e.code === 'number' ? e.code : undefined;
        const tail = oneLine(stderr.slice(-STDERR_TAIL_BYTES));
        // setpriv reports a program it cannot run as exit 127
        const missing = e.code === 'ENOENT' || (file !== bin && exitCode === 127);
        const why =
          missing ? 'not found'
          : e.killed && e.signal === 'SIGKILL' ? `timed out after ${timeoutMs / 1000} s`
          : e.code === 'ERR_CHILD_PROCESS_STDIO_MAXBUFFER' ? `more than ${SHORT_STDOUT_BYTES} bytes of output`
          : exitCode !== undefined ? `exit ${exitCode}`
          : e.signal ? `killed by ${e.signal}`
          : e.message;
        reject(new QvmBackupError(code, `${command}: ${why}${tail ? `: ${tail}` : ''}`, { command, exitCode, stderrTail: tail, ...(missing ? { missing: true } : {}) }, err));
      }),
    );
    child.stdin?.end();
  });
}

/**
 * Start `bin args` with pipes for stdin and stdout, stderr ignored and our open file `fd` as its
 * fd 3 (node's spawn: no execa to load), through setpriv where it exists, in a process group of its
 * own (the caller kills the group: `process.kill(-pid)`). For a helper that works on a file we
 * opened and never sees its path. Spawn failures arrive as the child's 'error' event. `deathSignal`:
 * what it gets when this process dies (diesWithUs).
 */
export function spawnFdHelper(bin: string, args: readonly string[], fd: number, deathSignal: 'KILL' | 'TERM' = 'KILL'): ChildProcess {
  const [file, argv] = diesWithUs(bin, args, deathSignal);
  return timedSpawn(() => spawn(file, argv, { stdio: ['pipe', 'pipe', 'ignore', fd], detached: true }));
}
