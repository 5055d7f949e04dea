// Reads the backup passphrase: from a file (-p FILE), from stdin (-p -), from the stdout of a
// command (--passphrase-command), or from the terminal without echo. Never logs or echoes it. Files and stdin are read as Qubes reads them
// (`readline().rstrip()`): the first line, trailing whitespace removed, so one passphrase file gives
// the same passphrase to this tool and to Qubes' own.
import { boundedWait } from '../pipeline/waits.js';
import { diesWithUs } from '../io/child-lifetime.js';
import { spawn } from 'node:child_process';
import { constants, createReadStream, openSync } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import { Socket } from 'node:net';
import type { Readable } from 'node:stream';
import { fail, QvmBackupError } from '../errors.js';
import { openTty, readTtyLine } from './tty-prompt.js';
import { stopShellTree } from './process-tree.js';
import { exitCodeForSignal } from './exit-codes.js';

/** Python's str.isspace() characters: what rstrip() removes. */
const TRAILING_SPACE = /[\t\n\v\f\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+$/;

/** Decode like Python's default text mode: UTF-8, invalid bytes refused (not replaced), BOM kept. */
function decodeUtf8(bytes: Uint8Array, source: string): string {
  try {
    return new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch (e) {
    fail('ERR_USAGE', `passphrase from ${source} is not valid UTF-8`, {}, e);
  }
}

/**
 * The passphrase in `text`: its first line with trailing whitespace stripped, validated. Lines end
 * at LF, CR or CRLF in a file (Python's universal newlines), at LF only on stdin (as Python's
 * sys.stdin), where a CR inside the line is then refused rather than silently cut.
 */
export function passphraseFromText(text: string, source: string, lineEnds: 'universal' | 'lf' = 'universal'): string {
  const pw = (text.split(lineEnds === 'universal' ? /\r\n?|\n/ : '\n', 1)[0] ?? '').replace(TRAILING_SPACE, '');
  validatePassphrase(pw, source);
  return pw;
}

/** Refuse passphrases the formats cannot carry: empty, or holding CR/LF/NUL (scrypt cuts at CR/LF). */
export function validatePassphrase(pw: string, source: string): void {
  if (pw.length === 0) fail('ERR_USAGE', `empty passphrase (${source}): refusing to continue`);
  if (/[\r\n\0]/.test(pw)) fail('ERR_USAGE', `passphrase from ${source} contains CR, LF or NUL: not allowed`);
  if (Buffer.byteLength(pw, 'utf8') > 1900) fail('ERR_USAGE', `passphrase from ${source} is longer than 1900 bytes`);
}

/** Longest first line read: a passphrase file is small (a device or a huge file is not waited for). */
const MAX_LINE_BYTES = 64 * 1024;

/** Read `input` up to the first of `ends` (bytes) or its end, whichever comes first; a writer
 *  that keeps a pipe open after the line is not waited for. */
async function readFirstLine(input: Readable, ends: number[], source: string, signal: AbortSignal): Promise<Uint8Array> {
  const parts: Buffer[] = [];
  let length = 0;
  let onAbort = (): void => {};
  try {
    return await new Promise<Uint8Array>((resolve, reject) => {
      onAbort = () => reject(signal.reason);
      if (signal.aborted) return onAbort();
      signal.addEventListener('abort', onAbort, { once: true });
      input.on('error', (e) => reject(new QvmBackupError('ERR_USAGE', `cannot read the passphrase from ${source}: ${e.message}`, {}, e)));
      input.on('end', () => resolve(Buffer.concat(parts)));
      input.on('data', (d: Buffer) => {
        const cut = Math.min(...ends.map((b) => d.indexOf(b)).filter((i) => i >= 0));
        parts.push(Number.isFinite(cut) ? d.subarray(0, cut) : d);
        length += d.length;
        if (Number.isFinite(cut)) resolve(Buffer.concat(parts));
        else if (length > MAX_LINE_BYTES) reject(new QvmBackupError('ERR_USAGE', `passphrase from ${source}: no line end in the first ${MAX_LINE_BYTES} bytes`));
      });
    });
  } finally {
    signal.removeEventListener('abort', onAbort);
    input.removeAllListeners('data').removeAllListeners('end').removeAllListeners('error');
    input.on('error', () => {});
    if (input === process.stdin) input.pause();
    else input.destroy();
  }
}

/**
 * A passphrase file given with -p that cannot be read is a usage error at the start, before the
 * plan (it is read only after the plan was confirmed, as Qubes does): a cron job's typo is not
 * found after a long plan. `-` (stdin) and a FIFO are read later, as they come. Resolves to
 * whether it is a regular file (read at once: it asks no one).
 */
export async function checkPassphraseFile(path: string | undefined): Promise<boolean> {
  if (path === undefined || path === '-') return false;
  const st = await stat(path).catch((e: unknown) => {
    const code = (e as NodeJS.ErrnoException).code;
    return fail('ERR_USAGE', `cannot read passphrase file ${path}: ${code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : (e as Error).message}`, {}, e);
  });
  if (st.isDirectory()) fail('ERR_USAGE', `cannot read passphrase file ${path}: it is a directory`);
  if (st.isSocket()) fail('ERR_USAGE', `cannot read passphrase file ${path}: it is a socket`);
  // a FIFO or a character device (/dev/stdin, /dev/tty) is read as it comes
  if (st.isFIFO() || st.isCharacterDevice()) return false;
  if (st.isFile() && st.size === 0) fail('ERR_USAGE', `empty passphrase (passphrase file ${path} is empty): refusing to continue`);
  await access(path, constants.R_OK).catch((e: unknown) => fail('ERR_USAGE', `cannot read passphrase file ${path}: permission denied`, {}, e));
  return st.isFile();
}

/** A passphrase file as a stream. A FIFO (`-p <(gpg -d pass.gpg)`, a named pipe) is opened without
 *  blocking and read through the event loop: a blocking open or read would occupy a libuv worker
 *  thread until a writer comes, and process exit waits for those threads, so an interrupted
 *  command would hang. */
async function openPassphraseFile(path: string): Promise<Readable> {
  let fifo = false;
  try {
    fifo = (await stat(path)).isFIFO();
  } catch (e) {
    fail('ERR_USAGE', `cannot read passphrase file ${path}: ${(e as Error).message}`, {}, e);
  }
  if (!fifo) return createReadStream(path);
  try {
    return new Socket({ fd: openSync(path, constants.O_RDONLY | constants.O_NONBLOCK), readable: true, writable: false });
  } catch (e) {
    fail('ERR_USAGE', `cannot read passphrase file ${path}: ${(e as Error).message}`, {}, e);
  }
}

/** Output of a --passphrase-command beyond its first line is read and dropped up to this, then the
 *  command is stopped (`yes` must not keep the run waiting). */
const MAX_COMMAND_OUTPUT = 1024 * 1024;
/** How long to wait, after the command exited, for the rest of its output (a process it left in the
 *  background may hold the pipe open). */
const OUTPUT_AFTER_EXIT_MS = 1000;
/** A command ended by one of these (or `sh` reporting it, 128 + n) may have been stopped by the
 *  signal that is about to stop us: we wait this long for it. */
const STOP_SIGNALS: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
const STOP_STATUSES = STOP_SIGNALS.map(exitCodeForSignal);
const SIGNAL_AFTER_EXIT_MS = 200;

/**
 * Run `sh -c CMD` (restic's password command) and read its first stdout line as from a file. Its
 * stdin is closed (it may be the archive), its stderr is the user's, and /dev/tty stays its
 * controlling terminal, so it may ask there. No time limit (it may be waiting for the user); a
 * signal stops it. Its output never appears in a message.
 */
async function passphraseFromCommand(cmd: string, signal: AbortSignal): Promise<string> {
  const what = '--passphrase-command';
  // killed with us when we are killed (kill -9): a password manager's prompt must not stay
  const [file, args] = diesWithUs('sh', ['-c', cmd]);
  const child = spawn(file, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  const parts: Buffer[] = [];
  let kept = 0;
  let total = 0;
  let onAbort = (): void => {};
  const ended = new Promise<void>((res) => child.stdout.once('end', res).once('error', () => res()));
  try {
    const exit = await new Promise<{ code: number | null; sig: NodeJS.Signals | null }>((resolve, reject) => {
      onAbort = () => reject(signal.reason);
      if (signal.aborted) return onAbort();
      signal.addEventListener('abort', onAbort, { once: true });
      child.once('error', (e) => reject(new QvmBackupError('ERR_USAGE', `cannot run ${what}: ${e.message}`, {}, e)));
      child.once('exit', (code, sig) => resolve({ code, sig }));
      child.stdout.on('data', (d: Buffer) => {
        total += d.length;
        if (kept < MAX_LINE_BYTES) {
          parts.push(d);
          kept += d.length;
        }
        if (total > MAX_COMMAND_OUTPUT) reject(new QvmBackupError('ERR_USAGE', `${what} printed more than ${MAX_COMMAND_OUTPUT} bytes: stopped`));
      });
    });
    if (exit.code !== 0) {
      // a terminal's Ctrl-C reaches the whole process group: the command's end may come just before
      // our own handler runs, and the run then ends as interrupted, not as a failed command
      if ((exit.sig !== null && STOP_SIGNALS.includes(exit.sig)) || (exit.code !== null && STOP_STATUSES.includes(exit.code))) {
        await boundedWait(new Promise<void>((res) => (signal.aborted ? res() : signal.addEventListener('abort', () => res(), { once: true }))), SIGNAL_AFTER_EXIT_MS);
        signal.throwIfAborted();
      }
      fail('ERR_USAGE', `${what} ${exit.sig !== null ? `was killed by ${exit.sig}` : `exited with status ${exit.code}`}: no passphrase`);
    }
    await boundedWait(ended, OUTPUT_AFTER_EXIT_MS);
    if (total === 0) fail('ERR_USAGE', `${what} printed nothing: no passphrase`);
    const bytes = Buffer.concat(parts);
    const cut = [0x0a, 0x0d].map((b) => bytes.indexOf(b)).filter((i) => i >= 0);
    if (cut.length === 0 && bytes.length > MAX_LINE_BYTES) fail('ERR_USAGE', `passphrase from ${what}: no line end in the first ${MAX_LINE_BYTES} bytes`);
    return passphraseFromText(decodeUtf8(bytes.subarray(0, cut.length > 0 ? Math.min(...cut) : bytes.length), what), what);
  } finally {
    signal.removeEventListener('abort', onAbort);
    if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) stopShellTree(child.pid);
    child.stdout.destroy();
  }
}

/** Get the passphrase from -p FILE|-, --passphrase-command or the terminal (asked twice when `confirm`). */
export async function readPassphrase(opts: { file?: string | undefined; command?: string | undefined; confirm: boolean; signal: AbortSignal }): Promise<string> {
  opts.signal.throwIfAborted();
  if (opts.command !== undefined) return passphraseFromCommand(opts.command, opts.signal);
  if (opts.file === '-') return passphraseFromText(decodeUtf8(await readFirstLine(process.stdin, [0x0a], 'stdin', opts.signal), 'stdin'), 'stdin', 'lf');
  if (opts.file !== undefined) {
    const bytes = await readFirstLine(await openPassphraseFile(opts.file), [0x0a, 0x0d], opts.file, opts.signal);
    return passphraseFromText(decodeUtf8(bytes, opts.file), opts.file);
  }
  const ask = async (prompt: string): Promise<string> => {
    const fd = openTty();
    if (fd === undefined) fail('ERR_USAGE', 'no terminal to ask for the passphrase: use -p/--passphrase-file FILE or -p - (stdin)');
    return (await readTtyLine(fd, { prompt, echo: false, signal: opts.signal })) ?? '';
  };
  const pw = await ask('Please enter the passphrase: ');
  validatePassphrase(pw, 'terminal');
  if (opts.confirm) {
    const again = await ask('Enter again for verification: ');
    if (again !== pw) fail('ERR_USAGE', 'the passphrases do not match');
  }
  return pw;
}
