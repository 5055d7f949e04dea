// Pieces shared by both commands: progress mode, confirmation prompt, signal handling, and the
// one place that turns an error into a message and an exit status.
import { openSync, closeSync, readSync } from 'node:fs';
import { InvalidArgumentError, type Command } from 'commander';
import { totalmem } from 'node:os';
import { Progress, type ProgressMode } from '../progress/progress.js';
import { isQvmBackupError } from '../errors.js';
import { exitCodeFor, EXIT } from './exit-codes.js';
import { RESTORE_MIN_MAX_MEMORY } from '../restore/stream/kdf-budget.js';

/** Pick the progress renderer from --quiet/--json and whether stderr is a terminal. */
export function makeProgress(opts: { quiet?: boolean; json?: boolean }): Progress {
  const mode: ProgressMode = opts.json ? 'json' : opts.quiet ? 'quiet' : process.stderr.isTTY ? 'tty' : 'plain';
  return new Progress(mode, { stderr: process.stderr, stdout: process.stdout });
}

/** Ask "[y/N]" on the terminal; true without asking when there is no terminal or `yes`. */
export function confirmOnTty(question: string, yes: boolean): boolean {
  if (yes || !process.stdin.isTTY || !process.stderr.isTTY) return true;
  process.stderr.write(`${question} [y/N] `);
  let fd: number;
  try {
    fd = openSync('/dev/tty', 'r');
  } catch {
    return true;
  }
  try {
    const buf = Buffer.alloc(256);
    const n = readSync(fd, buf, 0, buf.length, null);
    return /^\s*y(es)?\s*$/i.test(buf.subarray(0, n).toString('utf8'));
  } finally {
    closeSync(fd);
  }
}

/** An AbortController tied to SIGINT/SIGTERM: first signal aborts cleanly, the second exits. */
export function abortOnSignals(onFirst: (sig: string) => void): AbortController {
  const ac = new AbortController();
  let count = 0;
  let first = 0;
  const handler = (sig: NodeJS.Signals) => {
    // the same Ctrl-C can arrive twice (from the terminal and forwarded by the re-exec parent)
    if (count > 0 && Date.now() - first < 500) return;
    count++;
    if (count === 1) {
      first = Date.now();
      onFirst(sig);
      ac.abort(new Error(`interrupted by ${sig}`));
    } else {
      process.stderr.write('\nforced exit\n');
      process.exit(EXIT.INTERRUPTED);
    }
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
  return ac;
}

/** Print one clear line for `err` (plus the cause chain with QVMB_DEBUG=1) and return the exit status. */
export function reportError(prog: string, err: unknown, json: boolean): number {
  const code = exitCodeFor(err);
  const msg = err instanceof Error ? err.message : String(err);
  if (json) process.stdout.write(JSON.stringify({ message_type: 'exit_error', code, error_code: isQvmBackupError(err) ? err.code : 'ERR_INTERNAL', message: msg }) + '\n');
  process.stderr.write(`${prog}: error: ${msg}\n`);
  if (process.env['QVMB_DEBUG']) {
    let e: unknown = err;
    while (e instanceof Error) {
      process.stderr.write(`${e.stack ?? e.message}\n`);
      e = e.cause;
    }
  }
  return code;
}

/** Commander parser for an integer option within [lo, hi]. */
export const intOption = (name: string, lo: number, hi: number) => (v: string): number => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < lo || n > hi) throw new InvalidArgumentError(`${name} must be an integer from ${lo} to ${hi}`);
  return n;
};

/** Commander collector for repeatable options (-x VM -x VM). */
export const collect = (v: string, prev: string[]): string[] => [...prev, v];

/** Parse argv; returns the exit status when the run should stop here (usage error → 2, --help/--version → 0). */
export function parseOrExit(program: Command): number | null {
  program.exitOverride();
  try {
    program.parse();
    return null;
  } catch (e) {
    return (e as { exitCode?: number }).exitCode === 0 ? EXIT.OK : EXIT.USAGE;
  }
}

/** Default --max-memory of both commands: 1 GiB for chunks plus one scrypt derivation of
 *  `logN` (128·8·2^logN bytes) per thread (none when `logN` is null), at most a quarter of the RAM. */
export function defaultMaxMemory(threads: number, logN: number | null): number {
  const kdf = logN === null ? 0 : threads * 128 * 8 * 2 ** logN;
  return Math.min(1024 ** 3 + kdf, Math.floor(totalmem() / 4));
}

/** Default --max-memory of a restore: as above at logN 19, but at least RESTORE_MIN_MAX_MEMORY, so
 *  that an archive made at logN 21 (the largest the scrypt tool picks) restores without options. */
export function defaultRestoreMaxMemory(threads: number): number {
  return Math.max(defaultMaxMemory(threads, 19), RESTORE_MIN_MAX_MEMORY);
}
