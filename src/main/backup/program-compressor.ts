// An inner archive made in-process (inner-tar-source.ts) and compressed by an allow-listed program
// (`zstd -3 -T2` on a runtime without zstd in node:zlib, `xz`, `bzip2`, …), instead of GNU tar
// running that program (`tar -I`) over its own reads of the file. The archive is the same: the
// program's stream of the inner tar, which `<filter> -d | tar -x` reads. What changes is the read
// side: GNU tar moves a sparse image in 512-byte syscalls, which bounded a `-Z zstd` backup on
// Node 20 (BENCHMARKS.md), where the in-process source reads 4 MiB at a time and skips the holes.
//
// The program gets the source's views on its stdin, one at a time: the next view is asked for
// only once the pipe took the last one (the source reuses its buffers). Its exit status is part of
// the stream: the output iterator ends by awaiting `done`, so a failed program fails the file
// even when its output ended normally (and so does one that exited 0 without writing anything).
// The first cause wins: a source that failed (the file changed, a read error, the run stopped) is
// the error, not what its broken input did to the program; then the program's own exit status;
// then a program that exited 0 without reading all its input. The program never outlives the
// stream: an early stop of either side kills it.
import { finished as endOf } from 'node:stream/promises';
import { QvmBackupError } from '../errors.js';
import { filterPath } from '../io/filter-program.js';
import { commandLine, exitDetail, loadSpawner, processContext, readerNow, spawnProcess } from '../io/spawn.js';
import type { InnerTarSource } from './inner-tar-source.js';
import { oneLine } from '../io/tail-buffer.js';

export interface CompressionProgram {
  /** an allow-listed filter (compression-plan.ts checked it) */
  program: string;
  args: readonly string[];
}

export interface ProgramCompressorOptions {
  /** the inner archive's name in the backup (error context) */
  what: string;
  /** the run's stop: kills the program (SIGTERM, then SIGKILL) */
  signal: AbortSignal;
  /** the executable (tests); default: `program` found in PATH */
  exe?: string;
}

/** `src` compressed by `c`: a source of the same shape, whose bytes are the program's output. */
export async function compressWithProgram(src: InnerTarSource, c: CompressionProgram, o: ProgramCompressorOptions): Promise<InnerTarSource> {
  const command = commandLine(c.program, c.args);
  const exe = o.exe ?? filterPath(c.program);
  if (exe === null) throw new QvmBackupError('ERR_FILTER_FAILED', `${o.what}: the compression program ${c.program} is not installed (any more)`, { file: o.what, command });
  await loadSpawner();
  o.signal.throwIfAborted();
  const p = spawnProcess(exe, c.args, { stdin: 'pipe', stdout: 'pipe', signal: o.signal }, command);
  const child = p.child;
  const stdin = child.stdin!;
  const stdout = child.stdout!;
  // claimed now, read later (a file's program starts while the file before it is chunked)
  const chunks = readerNow(stdout)[Symbol.asyncIterator]();
  stdin.on('error', () => undefined); // EPIPE: the exit status says why
  const stop = (): void => {
    if (child.exitCode === null && child.signalCode === null) child.kill();
  };

  let sourceFailure: { e: unknown } | undefined;
  const feeding = (async () => {
    const it = src.stdout[Symbol.asyncIterator]();
    let sourceEnded = false;
    try {
      for (;;) {
        let next: IteratorResult<Uint8Array>;
        try {
          next = await it.next();
        } catch (e) {
          sourceFailure = { e };
          throw e;
        }
        if (next.done === true) break;
        // the callback comes once the pipe took the bytes: only then may the source reuse its buffer
        await new Promise<void>((resolve, reject) => stdin.write(next.value, (e) => (e ? reject(e) : resolve())));
      }
      sourceEnded = true;
      stdin.end();
      await endOf(stdin); // rejects on EPIPE or a pipe closed before the end was taken
    } catch (e) {
      stop(); // its input is incomplete: whatever it made of it must not count
      if (!sourceEnded) await it.return?.(undefined).catch(() => undefined); // closes the file
      throw e;
    }
  })();
  feeding.catch(() => undefined);

  const exited = child.then((r) => {
    if (!r.failed && r.exitCode === 0) return;
    const tail = oneLine(p.stderr.text());
    if (r.isCanceled) throw new QvmBackupError('ERR_CANCELLED', `${o.what}: ${command} cancelled`, { file: o.what, command }, r);
    throw new QvmBackupError('ERR_FILTER_FAILED', `${o.what}: the compression program failed: ${command} (${exitDetail(r)})${tail ? `: ${tail}` : ''}`, { file: o.what, ...processContext(command, r, tail) }, r);
  });
  exited.catch(() => undefined);

  const done = Promise.allSettled([feeding, exited]).then(([fed, ex]) => {
    if (sourceFailure !== undefined) throw sourceFailure.e;
    if (ex.status === 'rejected') throw ex.reason;
    if (fed.status === 'rejected') {
      throw new QvmBackupError('ERR_FILTER_FAILED', `${o.what}: ${command} exited before it read all of its input (${(fed.reason as Error).message})`, { file: o.what, command, exitCode: 0 }, fed.reason);
    }
  });
  done.catch(() => undefined);
  // an abort ends the output too: the program's exit (and so `done`) waits for its output to end,
  // which an output nobody reads any more (a file started ahead, the run failed) never would
  const onAbort = (): void => void stdout.destroy();
  o.signal.addEventListener('abort', onAbort, { once: true });
  const off = (): void => o.signal.removeEventListener('abort', onAbort);
  done.then(off, off);

  async function* output(): AsyncGenerator<Uint8Array> {
    let ended = false;
    let bytes = 0;
    try {
      for (;;) {
        let r: IteratorResult<Uint8Array>;
        try {
          r = await chunks.next();
        } catch (e) {
          await done; // an output cut by an abort or a failure: `done` says what happened
          throw e;
        }
        if (r.done === true) break;
        bytes += r.value.length;
        yield r.value;
      }
      await done;
      // an input that fits in the pipe is taken even by a program that never reads it: a compressor
      // that read it always writes at least its stream's header
      if (bytes === 0) throw new QvmBackupError('ERR_FILTER_FAILED', `${o.what}: ${command} exited 0 without any output (it did not compress its input)`, { file: o.what, command, exitCode: 0 });
      ended = true;
    } finally {
      // the consumer stopped early (or the run failed): the program and the file go now
      if (!ended) {
        stop();
        stdout.destroy();
      }
    }
  }
  const it = output();
  return {
    stdout: { [Symbol.asyncIterator]: () => it },
    done,
    inputBytes: () => src.inputBytes(),
  };
}
