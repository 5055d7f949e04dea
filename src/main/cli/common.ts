// Pieces shared by both commands: progress mode, confirmation prompt, signal handling, and the
// one place that turns an error into a message and an exit status.
import { CommanderError, Option, type Command } from 'commander';
import { availableParallelism } from 'node:os';
import { isatty } from 'node:tty';
import { Progress, type Operation, type ProgressMode } from '../progress/progress.js';
import { fail, QvmBackupError } from '../errors.js';
import { exitCodeFor, exitCodeForSignal, errorCodeOf, EXIT } from './exit-codes.js';
import { openTty, readTtyLine } from './tty-prompt.js';
import { defaultDom0Home } from './dom0-user.js';
import { RunStats, formatStats } from '../stats/run-stats.js';
import { statsFor } from '../stats/make-stats.js';
import { watchStalls as watch } from '../progress/stall-watch.js';
import { exitWhenSettled } from '../io/exit-cleanup.js';
import { messages, openOutputs, results } from '../io/message-out.js';

/** The run's stage profile: on with --stats and with --json (its summary always carries it), else
 *  a no-op one. */
export function makeStats(opts: { stats?: boolean; json?: boolean }, operation: 'backup' | 'restore' | 'verify'): RunStats {
  return statsFor(operation, opts.stats === true || opts.json === true);
}

/** At the end of a successful run: the `stats` field of the --json summary (always), or with
 *  --stats the text on stderr (after the final line; printed by `printStats`). */
export function statsFields(stats: RunStats, json: boolean): Record<string, unknown> {
  return stats.enabled && json ? { stats: stats.report() } : {};
}

export function printStats(stats: RunStats, json: boolean): void {
  if (stats.enabled && !json) messages().writeKept(formatStats(stats.report()) + '\n');
}

/** Pick the progress renderer from --quiet/--json/--verbose and whether stderr is a terminal. */
export function makeProgress(opts: { quiet?: boolean; json?: boolean; verbose?: boolean }, operation: Operation): Progress {
  const mode: ProgressMode = opts.json ? 'json' : opts.quiet ? 'quiet' : messages().isTTY ? 'tty' : 'plain';
  // stdout made at its first line: a backup to `-` never writes one (no --json there)
  const stdout = { write: (s: string) => results().write(s), writeKept: (s: string) => results().writeKept(s), ready: () => results().ready() };
  return new Progress(mode, { stderr: messages(), stdout, operation, verbose: opts.verbose === true });
}

/** Whether confirmOnTty would ask (and wait for) a person: no -y, a terminal on stdin and stderr. */
export function asksOnTty(yes: boolean): boolean {
  return !yes && isatty(0) && isatty(2);
}

/**
 * Ask "[y/N]" on the terminal (only when stdin and stderr are terminals and not `yes`). Anything but
 * yes throws ERR_DECLINED ("nothing done", exit 0, as Qubes); a signal while waiting ends the wait.
 */
export async function confirmOnTty(question: string, yes: boolean, signal: AbortSignal): Promise<true> {
  signal.throwIfAborted();
  if (!asksOnTty(yes)) return true;
  const fd = openTty();
  if (fd === undefined) return true;
  const answer = await readTtyLine(fd, { prompt: `${question} [y/N] `, echo: true, signal });
  if (answer !== null && /^\s*y(es)?\s*$/i.test(answer)) return true;
  throw new QvmBackupError('ERR_DECLINED', 'cancelled by the user: nothing done');
}

/** SIGINT/SIGTERM stop the run: the first aborts `signal` (the run cleans up and ends with exit
 *  128 + signal number), a second one exits at once. */
export interface Interruption {
  signal: AbortSignal;
  /** the first signal received, if any */
  received(): NodeJS.Signals | undefined;
  /** Stop the run as a signal would, for `why` (a stall); the run then ends with that error. */
  stop(why: QvmBackupError): void;
  /** the error the run was stopped for (not by a signal), if any */
  stoppedFor(): QvmBackupError | undefined;
}

/** How long a forced exit waits for the install operations in flight (exitWhenSettled). */
const FORCED_EXIT_WAIT_MS = 2000;

export function abortOnSignals(onFirst: (sig: NodeJS.Signals) => void, o: { stdoutIsOutput?: boolean } = {}): Interruption {
  const ac = new AbortController();
  let first: NodeJS.Signals | undefined;
  let forcing = false;
  const handler = (sig: NodeJS.Signals) => {
    if (first === undefined) {
      first = sig;
      ac.abort(new QvmBackupError('ERR_CANCELLED', `interrupted by ${sig}`, { signal: sig }));
      onFirst(sig); // after the run's own reactions to the stop: what it says (a phase) stays
    } else if (sig !== 'SIGHUP') {
      // a second Ctrl-C or SIGTERM is a person insisting; a SIGHUP after the stop is the same
      // terminal going away (its writes may have failed first), never a reason to skip cleanup
      // (a VM directory being moved into the qubes root, or the qubes.xml write listing it, lands
      // first, a bounded time: the exit hooks then see what is there; a third signal waits no more)
      if (forcing) exitProcess(exitCodeForSignal(sig));
      forcing = true;
      messages().writeKept('\nforced exit\n');
      exitWhenSettled(FORCED_EXIT_WAIT_MS, () => exitProcess(exitCodeForSignal(sig)));
    }
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
  // a closed terminal or ssh session: without a handler node dies at once, leaving the partial
  // archive (and a restore's staging) behind. Under `nohup` (SIGHUP ignored when we started) it
  // stays ignored: a handler would replace that and stop the run nohup was to keep going.
  process.on('SIGHUP', HUP_IGNORED ? () => {} : handler);
  // Our own output going away: a terminal that was closed (EIO), a reader of --json lines or of
  // stderr that stopped (EPIPE). Unhandled, node would die on the 'error' event mid-run (a
  // restore between moving VM directories and writing qubes.xml); the run is stopped as SIGHUP
  // or SIGPIPE would stop it, once (every later write to the stream fails the same way, and is
  // dropped). Stdout that carries the archive (`-`) is the destination's: its sink reports it.
  let why: QvmBackupError | undefined;
  const onOutputError = (name: string) => (e: NodeJS.ErrnoException): void => {
    if (first !== undefined || ac.signal.aborted) return;
    if (e.code === 'EPIPE' || e.code === 'EIO') handler(e.code === 'EPIPE' ? 'SIGPIPE' : 'SIGHUP');
    // any other failure (ENOSPC of a file it was sent to) is an error of its own, said as such
    else stop(new QvmBackupError('ERR_IO', `cannot write to ${name}: ${e.message}`, {}, e));
  };
  messages().on('error', onOutputError('stderr'));
  if (o.stdoutIsOutput !== false) results().on('error', onOutputError('stdout'));
  const stop = (e: QvmBackupError): void => {
    if (ac.signal.aborted) return;
    why = e;
    ac.abort(e);
  };
  return { signal: ac.signal, received: () => first, stop, stoppedFor: () => why };
}

/** --stall-timeout, the same in both commands. */
export const stallTimeoutOption = (): Option =>
  new Option('--stall-timeout <seconds>', 'stop the run (exit 1) when nothing has moved for this long: no byte read or written, no new phase (waits for the passphrase or the confirmation do not count). Without it a run that has not moved for 60 s says so once per stall and goes on waiting').argParser(intOption('--stall-timeout', 1, 604800));

/** --stall-timeout: progress/stall-watch.ts; a stall stops the run as a signal would. */
export function watchStalls(progress: Progress, stop: Interruption, timeoutSec: number | undefined): () => void {
  return watch(progress, (e) => stop.stop(e), timeoutSec);
}

/** Print one clear line for `err` (plus the cause chain with QVMB_DEBUG=1) and return the exit status.
 *  `operation` names the run in the JSON `exit_error` (default: the command's own). */
export function reportError(prog: string, err: unknown, json: boolean, code = exitCodeFor(err), operation: string = prog === 'qvm-backup' ? 'backup' : 'restore'): number {
  const msg = err instanceof Error ? err.message : String(err);
  if (json) results().writeKept(JSON.stringify({ message_type: 'exit_error', operation, code, error_code: errorCodeOf(err) ?? 'ERR_INTERNAL', message: msg }) + '\n');
  messages().writeKept(`${prog}: error: ${msg}\n`);
  if (process.env['QVMB_DEBUG']) {
    let e: unknown = err;
    while (e instanceof Error) {
      messages().writeKept(`${e.stack ?? e.message}\n`);
      e = e.cause;
    }
  }
  return code;
}

/**
 * End a run that threw: a declined confirmation is "nothing done" (exit 0); after a signal the run
 * ends as interrupted (130/143) whatever the stop caused (tar killed by the terminal's Ctrl-C, a
 * cancelled task); anything else is reported with the exit status of its code.
 */
export function endFailedRun(prog: string, err: unknown, o: { json: boolean; progress: Progress; failText: string; interruptedBy: NodeJS.Signals | undefined; stoppedFor?: QvmBackupError | undefined }): number {
  if (o.stoppedFor !== undefined) {
    // stopped by us (a stall), first: whatever the stop made fail, and a signal during its
    // cleanup, the run ends for that reason
    o.progress.finish(false, o.failText.replace(/ failed$/, ' stopped'));
    return reportError(prog, o.stoppedFor, o.json, exitCodeFor(o.stoppedFor), o.progress.operation);
  }
  if (o.interruptedBy === undefined && errorCodeOf(err) === 'ERR_DECLINED') {
    const msg = err instanceof Error ? err.message : String(err);
    if (o.json) o.progress.finish(true, msg, { cancelled: true });
    else messages().writeKept(`${prog}: ${msg}\n`);
    return EXIT.OK;
  }
  o.progress.finish(false, o.interruptedBy !== undefined ? o.failText.replace(/ failed$/, ' interrupted') : o.failText);
  if (o.interruptedBy === undefined) return reportError(prog, err, o.json, exitCodeFor(err), o.progress.operation);
  // not a cancellation: the run had failed and was ending when the signal came (its own catch turns
  // what a signal caused into ERR_CANCELLED); the failure is still what the user needs to read
  const own = errorCodeOf(err) === 'ERR_CANCELLED' && err instanceof Error ? err.message : `interrupted while ending after a failure: ${err instanceof Error ? err.message : String(err)}`;
  const stopped = new QvmBackupError('ERR_CANCELLED', own.includes(o.interruptedBy) ? own : `${own} (${o.interruptedBy})`, { signal: o.interruptedBy }, err);
  return reportError(prog, stopped, o.json, exitCodeForSignal(o.interruptedBy), o.progress.operation);
}

/** Commander parser for an integer option within [lo, hi]; its error reaches parseOrExit unchanged. */
export const intOption = (name: string, lo: number, hi: number) => (v: string): number => {
  const n = Number(v);
  if (v.trim() === '' || !Number.isInteger(n) || n < lo || n > hi) fail('ERR_USAGE', `${name}: invalid value '${v}': expected an integer from ${lo} to ${hi}`);
  return n;
};

/** The second spelling of an option that Qubes names differently in its two commands (-Z is
 *  --compress-filter in qvm-backup, --compression-filter in qvm-backup-restore): not listed in the
 *  help (the option's description names it); read with `eitherSpelling`. */
export const aliasOption = (flags: string): Option => new Option(flags).hideHelp();

/** The value of an option given under either of its spellings (attribute names); both at once
 *  with different values is a usage error. */
export function eitherSpelling(program: Command, main: string, alias: string): unknown {
  const o = program.opts();
  if (o[alias] === undefined) return o[main];
  if (program.getOptionValueSource(main) === 'cli' && o[main] !== o[alias]) {
    const flag = (n: string) => `--${n.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
    fail('ERR_USAGE', `${flag(main)} and ${flag(alias)} are two spellings of -Z: give it once`);
  }
  return o[alias];
}

/** Commander collector for repeatable options (-x VM -x VM). */
export const collect = (v: string, prev: string[]): string[] => [...prev, v];

let decided: { json: boolean; operation: string } | undefined;

/** Once the options are read: whether an error gets its JSON line, as the run's own failure
 *  would (what `jsonOfArgv` answers from then on, also for a crash). */
export function decideJson(json: boolean, operation: string): { json: boolean; operation: string } {
  decided = { json, operation };
  return decided;
}

/** The end of a command whose main() threw (a bug): its error reported as any other, then exit. */
export function exitOnCrash(prog: string): (e: unknown) => Promise<never> {
  return (e) => {
    const { json, operation } = jsonOfArgv(prog);
    return exitAfterOutput(reportError(prog, e, json, undefined, operation));
  };
}

/** Whether SIGHUP was ignored when the command was started (nohup): the launcher says so, as
 *  node itself resets every signal to its default at start. Not passed on to what we start. */
const HUP_IGNORED = process.env['QVMB_SIGHUP_IGNORED'] === '1';
delete process.env['QVMB_SIGHUP_IGNORED'];

/** The standard descriptors that were terminals when the command started. */
const TTYS_AT_START = [0, 1, 2].filter((fd) => isatty(fd));

/**
 * End the process with `code`. Node puts back the settings of a terminal it started on as it exits,
 * and aborts (SIGABRT, a core dump) when that terminal is gone (EIO: the window or ssh session was
 * closed); a command whose terminal went away ends as SIGHUP ends it (status 129 to a shell)
 * instead, after its own cleanup.
 */
export function exitProcess(code: number): never {
  for (const out of openOutputs()) out.flushNow(); // what the readers take now; the rest is lost
  if (TTYS_AT_START.some((fd) => !isatty(fd))) {
    // the exit hooks first (a partial file, a restore's journaled directories, process groups),
    // as process.exit would run them; a signal's death runs none
    process.exitCode = code;
    process.emit('exit', code);
    process.removeAllListeners('exit');
    process.removeAllListeners('SIGHUP');
    process.kill(process.pid, 'SIGHUP');
  }
  return process.exit(code);
}

/** How long a finished command waits for readers to take the messages still waiting for them. */
export const EXIT_OUTPUT_WAIT_MS = 30_000;

let outputWaitMs: number | null = EXIT_OUTPUT_WAIT_MS;

/** The command's output is what was asked for (--list): its end waits for the reader without a
 *  time limit, as any program writing its result to a pipe does (a signal still ends it). */
export function outputIsTheResult(): void {
  outputWaitMs = null;
}

/**
 * End a command that returned `code`: its messages that still wait for a slow reader (io/message-out.ts)
 * get up to EXIT_OUTPUT_WAIT_MS to go out (see outputIsTheResult); a signal (the user wants it
 * over) or a run that a signal stopped (status >= 128) waits for none. The run's work is all done by
 * then, its lock released: its own signal handlers are gone (a Ctrl-C now stops no run, and says
 * nothing), a signal only ends the wait.
 */
export async function exitAfterOutput(code: number): Promise<never> {
  process.exitCode = code; // whatever ends the process from here, it ends with the run's status
  const outs = openOutputs();
  let stoppedBy: NodeJS.Signals | undefined;
  if (code < 128 && !outs.every((o) => o.ready())) {
    // the timer also keeps node's loop alive (the outputs' retries do not): without a limit, a
    // timer that never fires does
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.all(outs.map((o) => o.drained())),
      new Promise<void>((resolve) => {
        timer = outputWaitMs !== null ? setTimeout(resolve, outputWaitMs) : setInterval(() => {}, 1 << 30);
        const stop = (sig: NodeJS.Signals): void => {
          stoppedBy = sig;
          resolve();
        };
        for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.removeAllListeners(sig);
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
        // a hangup where it is not ignored (under nohup it stays ignored: a listener that does nothing)
        process.on('SIGHUP', HUP_IGNORED ? () => {} : stop);
      }),
    ]);
    clearTimeout(timer); // (either kind: node's timers are cleared alike)
  }
  // the output was what was asked for (--list) and a signal ended it before its reader had it all:
  // ended as that signal ends a run; a backup or restore keeps the status of its work, done
  const cut = stoppedBy !== undefined && outputWaitMs === null && !outs.every((o) => o.ready());
  return exitProcess(cut ? exitCodeForSignal(stoppedBy!) : code);
}

/**
 * For an error found before the options could be read whole (a usage error): whether the command
 * line asks for --json and under which operation, read from the words themselves. A backup whose
 * words hold a lone '-' gets no JSON: stdout may be the archive's stream.
 */
export function jsonOfArgv(prog: string, argv: readonly string[] = process.argv.slice(2)): { json: boolean; operation: string } {
  if (decided !== undefined) return decided;
  const end = argv.indexOf('--');
  const words = end < 0 ? argv : argv.slice(0, end);
  const backup = prog === 'qvm-backup';
  const operation = backup ? 'backup' : words.includes('--list') ? 'list' : words.includes('--verify-only') ? 'verify' : 'restore';
  return { json: words.includes('--json') && !(backup && argv.includes('-')), operation };
}

/** Parse argv; returns the exit status when the run should stop here: --help/--version → 0, every
 *  usage error → one line `PROG: error: ...` and 2 (commander's own output is replaced by it), and
 *  with --json its `exit_error` line. */
export function parseOrExit(program: Command): number | null {
  decided = undefined; // a new command line: nothing decided yet
  program.exitOverride();
  program.configureOutput({ outputError: () => {} });
  try {
    program.parse();
    return null;
  } catch (e) {
    if (e instanceof CommanderError && e.exitCode === 0) return EXIT.OK;
    const msg = (e instanceof Error ? e.message : String(e)).replace(/^error: /, '').replace(/\s*\n\s*/g, ' ');
    const { json, operation } = jsonOfArgv(program.name());
    return reportError(program.name(), new QvmBackupError('ERR_USAGE', msg), json, EXIT.USAGE, operation);
  }
}

/** The defaults that depend on this machine and environment. The man pages are made with
 *  `generic` ones: there each default says how it is chosen, not what it is here. */
export interface HostDefaults {
  qubesRoot: string;
  dom0Home: string;
  threads: number;
  generic: boolean;
}

export function hostDefaults(): HostDefaults {
  return { qubesRoot: process.env['QUBES_ROOT'] ?? '/var/lib/qubes', dom0Home: defaultDom0Home(), threads: availableParallelism(), generic: false };
}

export function genericDefaults(): HostDefaults {
  return { qubesRoot: '/var/lib/qubes', dom0Home: '~', threads: 1, generic: true };
}

/** How an option's default is shown: as the value (undefined), or, generic, how it is chosen. */
export const shownDefault = (h: HostDefaults, how: string): string | undefined => (h.generic ? how : undefined);
