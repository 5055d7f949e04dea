// GNU tar multi-volume drivers for format 2 (FORMAT.md §4.1, §4.4; LIMITS.md §4): volumes pass
// through a named FIFO and tar is told "next volume" by a '\n' on its stdin. The prompt on stderr is
// never parsed; ordering alone makes the switch race-free, and no FIFO open can hang if tar dies.
import { boundedWait } from '../pipeline/waits.js';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { QvmBackupError, fail, isQvmBackupError } from '../errors.js';
import { makeFifoDir, mkfifo, openFifo, releaseWaitingReader, removeFifoDir } from './fifo.js';
import { createOptionArgs, extractOptionArgs, type TarCreateOptions, type TarExtractOptions } from './tar-args.js';
import { spawnTar, type TarProcess } from './tar-process.js';

/** Removes GNU tar's "\aPrepare volume #N for 'x' and hit return: " prompts from quoted stderr;
 *  from a tail whose start was cut, what precedes its first prompt or line (the rest of a prompt
 *  or of a line), and from a head whose end was cut, a prompt begun there. */
export const dropPrompts = (s: string, part?: 'head' | 'tail'): string => {
  let t = part === 'tail' ? s.replace(/^[^\n\x07]*?(?:return: |(?=[\n\x07])|$)/, '') : s;
  t = t.replace(/\x07?Prepare volume #\d+ for .*? and hit return: /g, '');
  return part === 'head' ? t.replace(/\x07[^\n]*$/, '') : t;
};

const VOLUME_READ_CHUNK = 1024 * 1024;

/**
 * Run `tar -Pc --sparse ... -M --tape-length=<KiB> -f <fifo> -- <name>` and yield each volume as a
 * Readable. Read every volume to its end (or stop iterating) before asking for the next one; the
 * iteration ends after the last volume, and throws ERR_TAR_FAILED if tar failed.
 */
export async function* tarCreateMultiVolume(
  opts: Omit<TarCreateOptions, 'compressProgram'> & { tapeLengthKiB: number },
): AsyncGenerator<Readable, void, undefined> {
  if (!Number.isSafeInteger(opts.tapeLengthKiB) || opts.tapeLengthKiB < 10) fail('ERR_INTERNAL', `bad tape length ${opts.tapeLengthKiB} KiB`);
  const args = createOptionArgs(opts);
  const dir = await makeFifoDir();
  const fifo = path.join(dir, 'volume');
  let tar: TarProcess | undefined;
  let current: Readable | undefined;
  try {
    await mkfifo(fifo);
    args.push('-M', `--tape-length=${opts.tapeLengthKiB}`, '-f', fifo, '--', opts.name);
    tar = spawnTar(args, { ...opts, stdin: 'pipe', stdout: 'ignore', file: `${opts.dir}/${opts.name}`, stderrFilter: dropPrompts });
    for (let volume = 1; ; volume++) {
      const fh = await openFifo(fifo, 'read', tar.exited);
      if (!fh) break; // tar exited: no more volumes
      if (tar.hasExited()) {
        // tar is gone: whatever it left in the pipe is its last volume (nothing = no more volumes)
        const rest = await fh.readFile();
        await fh.close();
        if (rest.length === 0) break;
        current = Readable.from([rest]);
        yield current;
        current = undefined;
        break;
      }
      const stream = fh.createReadStream({ highWaterMark: VOLUME_READ_CHUNK });
      current = stream;
      const closed = new Promise<void>((resolve) => stream.once('close', resolve));
      yield stream;
      await closed;
      current = undefined;
      if (stream.errored) throw new QvmBackupError('ERR_IO', `reading tar volume ${volume}: ${stream.errored.message}`, { file: opts.name }, stream.errored);
      if (!stream.readableEnded) fail('ERR_INTERNAL', `tar volume ${volume} was closed before its end`);
      // Our read end is closed now, so tar's reopen cannot join this volume (LIMITS §4a).
      tar.stdin?.write('\n');
    }
    await tar.done;
  } finally {
    current?.destroy();
    if (tar && !tar.hasExited()) {
      tar.kill();
      await tar.exited;
    }
    await removeFifoDir(dir);
  }
}

/** Feeds the volumes of one GNU multi-volume archive to `tar -xM`. */
export interface MultiVolumeExtractor {
  /** Write one complete volume (its bytes in order) and tell tar to go on to the next. */
  feedVolume(parts: Uint8Array[]): Promise<void>;
  /** After the last volume: close tar's stdin and wait for exit 0 (ERR_TAR_FAILED otherwise). */
  finish(): Promise<void>;
  /** Kill tar and clean up; never throws. */
  abort(): Promise<void>;
  /** tar's stdout lines (member names with listOnly), complete after finish(). */
  readonly listing: Promise<string[]>;
}

/**
 * Start `tar -x[t] -M -B --sparse -k --no-same-owner --no-same-permissions -C <dir> -f <fifo> -- <members>`.
 * Per volume: write it into the FIFO, close, replace the FIFO by a fresh one, then send '\n' — tar
 * can only reopen the new FIFO after it has read the old one to EOF (LIMITS §4b).
 */
export function tarExtractMultiVolume(opts: TarExtractOptions): MultiVolumeExtractor {
  // -B: a FIFO read may return less than a record; without it tar fails with "Unaligned block".
  const args = [...extractOptionArgs(opts), '--read-full-records'];
  let fifo = '';
  let dir = '';
  let tar: TarProcess | undefined;
  let state: 'open' | 'busy' | 'finished' = 'open';
  let volume = 0;
  let listingResolve: (l: string[]) => void = () => undefined;
  const listing = new Promise<string[]>((r) => (listingResolve = r));

  const setup = (async () => {
    dir = await makeFifoDir();
    fifo = path.join(dir, 'volume');
    await mkfifo(fifo);
    args.push('-M', '-f', fifo, '--', ...opts.members);
    tar = spawnTar(args, {
      ...opts,
      stdin: 'pipe',
      stdout: opts.listOnly ? 'pipe' : 'ignore',
      collectLines: opts.listOnly === true,
      file: opts.members.join(' '),
      stderrFilter: dropPrompts,
    });
    void tar.lines.then(listingResolve);
    return tar;
  })();
  setup.catch(() => listingResolve([]));

  let tornDown: Promise<void> | undefined;
  const teardown = (): Promise<void> =>
    (tornDown ??= (async () => {
      const t = await setup.catch(() => undefined);
      if (t && !t.hasExited()) t.kill();
      if (t) await t.exited;
      if (dir) await removeFifoDir(dir);
    })());

  /** The error to report once tar has stopped: its own failure, else `fallback`. */
  const tarFailure = async (t: TarProcess, fallback: string, cause?: unknown): Promise<QvmBackupError> => {
    await t.exited;
    try {
      await t.done;
    } catch (e) {
      return e as QvmBackupError;
    }
    return new QvmBackupError('ERR_TAR_FAILED', fallback, { command: t.command }, cause);
  };

  return {
    listing,
    async feedVolume(parts) {
      if (state !== 'open') fail('ERR_INTERNAL', `feedVolume while the extractor is ${state}`);
      state = 'busy';
      try {
        const t = await setup;
        volume++;
        const cancelled = async (): Promise<void> => {
          if (!opts.signal?.aborted) return;
          t.kill();
          throw await tarFailure(t, `tar cancelled at volume ${volume}`);
        };
        await cancelled();
        const fh = await openFifo(fifo, 'write', t.exited);
        if (!fh) throw await tarFailure(t, `tar exited before volume ${volume} was fed`);
        let writeError: NodeJS.ErrnoException | undefined;
        try {
          for (const part of parts) {
            for (let off = 0; off < part.length; ) off += (await fh.write(part, off, part.length - off)).bytesWritten;
          }
        } catch (e) {
          writeError = e as NodeJS.ErrnoException;
        }
        await fh.close().catch(() => undefined);
        // EPIPE: tar closed the volume early — it found the end of the archive, or it rejected the
        // volume and now prompts (waiting on stdin: never wait for its exit here). Carry on as
        // usual; tar's exit status at finish() tells which.
        if (writeError && writeError.code !== 'EPIPE') {
          t.kill();
          throw await tarFailure(t, `writing volume ${volume} to tar: ${writeError.message}`, writeError);
        }
        await cancelled();
        await fsp.unlink(fifo);
        await mkfifo(fifo);
        t.stdin?.write('\n');
        state = 'open';
      } catch (e) {
        state = 'finished';
        await teardown();
        if (isQvmBackupError(e)) throw e;
        throw new QvmBackupError('ERR_IO', `feeding tar volume ${volume}: ${(e as Error).message}`, { file: opts.members.join(' ') }, e);
      }
    },
    async finish() {
      if (state !== 'open') fail('ERR_INTERNAL', `finish while the extractor is ${state}`);
      state = 'finished';
      try {
        const t = await setup;
        t.stdin?.end();
        // If tar wants yet another volume (a truncated set), it blocks opening the FIFO: hand it an
        // empty volume; with stdin closed it then fails ("EOF where user reply was expected").
        for (let delay = 5; !t.hasExited(); delay = Math.min(delay * 2, 200)) {
          await releaseWaitingReader(fifo);
          await boundedWait(t.exited, delay);
        }
        await t.done;
      } finally {
        await teardown();
      }
    },
    async abort() {
      state = 'finished';
      await teardown().catch(() => undefined);
    },
  };
}
