// An allow-listed decompression program (`zstd -d` on a runtime without zstd in node:zlib, `xz -d`,
// `bzip2 -d`, …) as the streaming decoder of a VM image's inner archive, so that images are still
// written by the in-process image writer (large positioned writes, holes kept) instead of by
// `tar -x` and its 512-byte writes. The program gets the compressed bytes on stdin and gives the
// inner tar stream on stdout. Its exit status is part of the result: a failure destroys the stream
// with an ERR_CORRUPT naming the program, its status and the end of its stderr, and `exited`
// rejects with the same error even when its output had ended normally.
import { Duplex } from 'node:stream';
import { QvmBackupError } from '../../errors.js';
import { exitDetail, spawnProcess } from '../../io/spawn.js';

export interface ProgramDecoder {
  /** bytes in (compressed), bytes out (the inner tar stream) */
  stream: Duplex;
  /** settles when the program has exited: rejects unless it exited 0 */
  exited: Promise<void>;
}

/** Start `program -d` for the inner archive `what` (`program` comes from the allow-list). */
export function startProgramDecoder(program: string, what: string, signal?: AbortSignal): ProgramDecoder {
  const p = spawnProcess(program, ['-d'], { stdin: 'pipe', stdout: 'pipe', ...(signal ? { signal } : {}) });
  const child = p.child;
  const stdin = child.stdin!;
  const stdout = child.stdout!;
  let failure: QvmBackupError | undefined;
  let outputEnded = false;
  // a program that stopped reading (EPIPE) shows why in its exit status, which is the cause
  stdin.on('error', () => undefined);
  const stream = new Duplex({
    write(chunk: Buffer, _enc, cb) {
      if (failure) return cb(failure);
      // called once the pipe took the bytes: the caller may reuse its buffer then
      stdin.write(chunk, () => cb(failure ?? null));
    },
    final(cb) {
      stdin.end(() => cb());
    },
    read() {
      stdout.resume();
    },
    destroy(err, cb) {
      // the reader gave up (abort, an error further on) before the program's output ended: it
      // must not outlive the run. After its output ended it exits by itself, and its exit status
      // is the verdict (a stream ended in both directions is destroyed by Node right away)
      if ((err !== null || !outputEnded) && child.exitCode === null && child.signalCode === null) child.kill();
      cb(err);
    },
  });
  stdout.on('data', (d: Buffer) => {
    if (!stream.push(d)) stdout.pause();
  });
  stdout.once('end', () => {
    outputEnded = true;
    stream.push(null);
  });
  stdout.once('error', (e) => stream.destroy(e));
  const exited = child.then((r) => {
    if (r.exitCode === 0 && !r.isTerminated) return;
    const tail = p.stderr.text().trim();
    failure = new QvmBackupError('ERR_CORRUPT', `${what}: cannot decompress the inner archive: ${p.command} failed (${exitDetail(r)})${tail ? `: ${tail}` : ''}`, { file: what, command: p.command, exitCode: r.exitCode, stderrTail: tail });
    if (!stream.destroyed) stream.destroy(failure);
    throw failure;
  });
  exited.catch(() => undefined);
  return { stream, exited };
}
