// An allow-listed decompression program (`zstd -d` on a runtime without zstd in node:zlib, `xz -d`,
// `bzip2 -d`, …) as the streaming decoder of a VM image's inner archive, so that images are still
// written by the in-process image writer (large positioned writes, holes kept) instead of by
// `tar -x` and its 512-byte writes. The program gets the compressed bytes on stdin and gives the
// inner tar stream on stdout. Its exit status is part of the result: a failure destroys the stream
// with an ERR_CORRUPT naming the program, its status and the end of its stderr, and `exited`
// rejects with the same error even when its output had ended normally.
import { Duplex } from 'node:stream';
import { QvmBackupError } from '../../errors.js';
import { decoderLimitArgs, filterPath, ignoredTrailingData, trailingDataMessage } from '../../io/filter-program.js';
import { exitDetail, spawnProcess } from '../../io/spawn.js';

/** The program's output is handed on in pieces of at least this size (its last one may be smaller). */
const PIECE_BYTES = 4 * 1024 * 1024;

/** How long a program that stopped reading may take to exit before it is killed. */
const EXIT_AFTER_EPIPE_MS = 10_000;

/** The first line of a program's stderr tail, shortened (bzip2 says the same thing in seven). */
function firstLine(text: string): string {
  const line = text.trim().split('\n').find((l) => l.trim() !== '') ?? '';
  return line.length > 300 ? `${line.slice(0, 300)}…` : line;
}

export interface ProgramDecoder {
  /** bytes in (compressed), bytes out (the inner tar stream) */
  stream: Duplex;
  /** settles when the program has exited: rejects unless it exited 0 */
  exited: Promise<void>;
}

/** Start `program -d` for the inner archive `what` (`program` comes from the allow-list). */
export function startProgramDecoder(program: string, what: string, signal?: AbortSignal): ProgramDecoder {
  // by its full path: an empty PATH entry must not make exec look in the current directory
  const exe = filterPath(program);
  if (exe === null) throw new QvmBackupError('ERR_UNSUPPORTED', `compression filter ${program} is not installed`, { file: what });
  const p = spawnProcess(exe, ['-d', ...decoderLimitArgs(program)], { stdin: 'pipe', stdout: 'pipe', ...(signal ? { signal } : {}) }, `${program} -d`);
  const child = p.child;
  const stdin = child.stdin!;
  const stdout = child.stdout!;
  let failure: QvmBackupError | undefined;
  let outputEnded = false;
  // a program that stopped reading (EPIPE) says why in its exit status, which is then the cause;
  // one that exits 0 with input left (bzip2 ignores trailing garbage) fails the image all the same
  stdin.on('error', () => undefined);
  const refused = (): Promise<QvmBackupError> => {
    const killer = setTimeout(() => child.kill(), EXIT_AFTER_EPIPE_MS);
    return exited.then(
      () => new QvmBackupError('ERR_CORRUPT', `${what}: cannot decompress the inner archive: ${p.command} exited before it read all the compressed data (trailing data after its stream?)`, { file: what, command: p.command }),
      (e: unknown) => e as QvmBackupError,
    ).finally(() => clearTimeout(killer));
  };
  // the pipe gives 4-64 KiB at a time (zstd 64, xz mostly 8, bzip2 mostly 4): handed on in pieces
  // of PIECE_BYTES, so that the image writer makes one 4 MiB write where it would make 64 to 1024
  // (each a round trip to a libuv thread)
  let parts: Buffer[] = [];
  let held = 0;
  const stream = new Duplex({
    write(chunk: Buffer, _enc, cb) {
      if (failure) return cb(failure);
      // called once the pipe took the bytes: the caller may reuse its buffer then
      stdin.write(chunk, (e) => {
        if (failure) cb(failure);
        else if (e) void refused().then((err) => cb((failure ??= err)));
        else cb(null);
      });
    },
    final(cb) {
      stdin.end(() => cb());
    },
    read() {
      stdout.resume();
    },
    destroy(err, cb) {
      // A stream ended in both directions is destroyed by Node right away: the program exits by
      // itself, and its exit status is the verdict. Anything else is the reader giving up (abort,
      // an error further on): the program must not outlive the run
      const verdictPending = err === null && outputEnded && stdin.writableFinished;
      if (!verdictPending && child.exitCode === null && child.signalCode === null) child.kill();
      // its unread output would hold its exit (and `exited`) back
      if (!outputEnded) stdout.destroy();
      stdin.destroy();
      parts = [];
      held = 0;
      cb(err);
    },
  });
  const handOn = (): void => {
    const piece = parts.length === 1 ? parts[0]! : Buffer.concat(parts, held);
    parts = [];
    held = 0;
    if (!stream.push(piece)) stdout.pause();
  };
  stdout.on('data', (d: Buffer) => {
    parts.push(d);
    held += d.length;
    if (held >= PIECE_BYTES) handOn();
  });
  stdout.once('end', () => {
    outputEnded = true;
    if (held > 0) handOn();
    stream.push(null);
  });
  stdout.once('error', (e) => stream.destroy(e));
  const exited = child.then((r) => {
    const tail = p.stderr.text().trim();
    if (r.isCanceled) {
      // the run was stopped (Ctrl-C, another file's failure): not a verdict on the data
      failure = new QvmBackupError('ERR_CANCELLED', `${what}: ${p.command} cancelled`, { file: what, command: p.command });
    } else if (r.exitCode === 0 && !r.isTerminated) {
      // bzip2 reads bytes after its stream's end, says it ignored them and exits 0: as corrupt
      // as trailing data it did not read (refused() above)
      const ignored = ignoredTrailingData(tail, program);
      if (ignored === null) return;
      failure = new QvmBackupError('ERR_CORRUPT', `${what}: cannot decompress the inner archive: ${trailingDataMessage(p.command, ignored)}`, { file: what, command: p.command, exitCode: 0, stderrTail: tail });
    } else {
      const said = firstLine(tail);
      failure = new QvmBackupError('ERR_CORRUPT', `${what}: cannot decompress the inner archive: ${p.command} failed (${exitDetail(r)})${said ? `: ${said}` : ''}`, { file: what, command: p.command, exitCode: r.exitCode, stderrTail: tail });
    }
    if (!stream.destroyed) stream.destroy(failure);
    throw failure;
  });
  exited.catch(() => undefined);
  return { stream, exited };
}
