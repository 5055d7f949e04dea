// The one place that starts long-running external processes (GNU tar, the destination and source
// commands) and describes how they ended: the same execa options everywhere (streams, never
// buffered output, no rejection: the caller decides what an exit means), children killed with us
// (setpriv pdeathsig, child-lifetime.ts), stderr kept as a bounded tail, and one error context
// shape, { command, exitCode, stderrTail }.
import { execa, type Result, type ResultPromise } from 'execa';
import { diesWithUs, timedSpawn } from './child-lifetime.js';
import { TailBuffer } from './tail-buffer.js';

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

/** Start `bin args` (looked up in PATH by the kernel's exec, through setpriv where it exists). */
export function spawnProcess(bin: string, args: readonly string[], o: SpawnOptions, label?: string): Spawned {
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
  const stderr = new TailBuffer(STDERR_TAIL_BYTES);
  child.stderr?.on('data', (d: Buffer) => stderr.push(d));
  return { child, command: label ?? commandLine(bin, args), stderr, viaSetpriv: file !== bin };
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
