// One inner archive being extracted (or listed) by GNU tar from verified chunks: v3/v4 as one
// stream into tar's stdin (through a streaming gunzip or zstd decoder when compressed), v2 volume by
// volume.
import { moved } from '../../progress/activity.js';
import type { Duplex, Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { statfs } from 'node:fs/promises';
import { QvmBackupError, isQvmBackupError } from '../../errors.js';
import { checkGnuTar, tarExtractMultiVolume, tarExtractStream } from '../../tar/gnu-tar.js';
import { loadSpawner } from '../../io/spawn.js';
import type { RunStats } from '../../stats/run-stats.js';
import type { InnerFilter } from './filters.js';
import { createInnerDecoder } from './inner-decoder.js';
import { startProgramDecoder } from './program-decoder.js';
import type { SizeCounter } from './size-limit.js';
import { tarBytesCounter } from './tar-disk-count.js';

/** Feeds one inner archive to tar in order. */
export interface InnerExtractor {
  /** Hand over verified bytes (v2: one whole volume); resolves when they were consumed. */
  write(data: Uint8Array): Promise<void>;
  /** No more data: wait for tar to succeed (ERR_TAR_FAILED / ERR_CORRUPT otherwise). */
  finish(): Promise<void>;
  /** Stop tar; never throws. */
  abort(): Promise<void>;
}

export interface ExtractorOptions {
  dir: string;
  member: string;
  listOnly: boolean;
  /** a verification: the in-process image writer makes each image with its size and none of its data */
  placeholder?: boolean;
  signal?: AbortSignal;
  tarPath?: string;
  /** the run's stage profile (the in-process image writer times its writes) */
  stats?: RunStats;
  /** the in-process image writer prepares the page cache ahead of its writes (io/page-prefault.ts) */
  prefault?: boolean;
  /** the in-process image writer writes around the page cache where it can (--direct-io) */
  direct?: boolean;
  /** the in-process image writer hands the pages of a large image back once flushed (io/drop-behind.ts) */
  dropBehind?: boolean;
  /** the VM's allowance: every decoded byte is counted before it goes on (size-limit.ts) */
  sizeLimit?: SizeCounter;
}

/**
 * An extractor that starts a process (tar, a decompression program): `open` runs on the first call,
 * once `ready` resolved (execa loaded; GNU tar's check, done at the start of the run, remembered),
 * so a restore whose files are all written in-process never loads execa; a failed `ready` is every
 * call's error. An abort, or a stop of the run, before that opens nothing.
 */
export function openWhenReady(ready: () => Promise<unknown>, open: () => InnerExtractor, signal?: AbortSignal): InnerExtractor {
  let aborted = false;
  let opened: Promise<InnerExtractor> | undefined;
  const get = (): Promise<InnerExtractor> =>
    (opened ??= ready().then(() => {
      // a run stopped while `ready` was pending starts nothing (this file may not be the one the
      // stop aborted: the reader can be a file ahead of the feeder)
      if (aborted || signal?.aborted) throw new QvmBackupError('ERR_CANCELLED', 'extraction stopped before it started');
      return open();
    }));
  return {
    write: async (data) => (await get()).write(data),
    finish: async () => (await get()).finish(),
    abort: async () => {
      aborted = true;
      const ext = await opened?.catch(() => undefined);
      await ext?.abort();
    },
  };
}

/** What an extractor run by GNU tar waits for: execa, and tar checked to be GNU tar (once). */
export const tarReady = (tarPath?: string): Promise<unknown> => Promise.all([loadSpawner(), checkGnuTar(tarPath)]);

/**
 * v3/v4: a single tar process reading the whole inner stream, through the inner archive's decoder
 * when it is compressed: in-process (gunzip, zstd) or an allow-listed program run by us
 * (program-decoder.ts), never by tar's -I, so that the decoder's verdict on the whole stream counts
 * even when tar stopped reading at its end-of-archive.
 */
export function openStreamExtractor(o: ExtractorOptions, filter: InnerFilter): InnerExtractor {
  let decoder: Duplex | null;
  // the program's exit status: its verdict, which can come after its output ended
  let programExit: Promise<void> | null = null;
  if (filter.kind === 'program') {
    const p = startProgramDecoder(filter.program, o.member, o.signal);
    decoder = p.stream;
    programExit = p.exited;
  } else decoder = createInnerDecoder(filter);
  const tar = tarExtractStream({
    dir: o.dir,
    members: [o.member],
    listOnly: o.listOnly,
    ...(o.signal ? { signal: o.signal } : {}),
    ...(o.tarPath ? { tarPath: o.tarPath } : {}),
  });
  const done = tar.done;
  done.catch(() => undefined); // observed in finish()/write()
  // settles when tar exits: null for exit 0, its error otherwise
  const tarExit = done.then(
    () => null,
    (e: unknown) => (e instanceof Error ? e : new Error(String(e))),
  );
  let tarStopped = false;
  void tarExit.then(() => (tarStopped = true));
  const count = o.sizeLimit !== undefined ? tarBytesCounter(o.sizeLimit, o.member) : undefined;

  let decoderError: Error | undefined;
  /** never settles without a decoder; with one, settles with its first error */
  let decoderFailed: Promise<Error> = new Promise<Error>(() => undefined);
  let sink: Writable = tar.stdin;
  if (decoder !== null) {
    const d = decoder;
    decoderFailed = new Promise<Error>((resolve) =>
      d.on('error', (e) => {
        decoderError ??= e;
        tar.stdin.destroy();
        resolve(decoderError);
      }),
    );
    // every decoded byte is counted before tar gets it, with what its entries take on disk: past
    // the VM's limit the decoder fails with that error, and tar gets none of these bytes (its
    // stdin is closed before the pipe, a later listener, would hand them on)
    d.on('data', moved);
    if (count !== undefined) {
      d.on('data', (c: Buffer) => {
        try {
          count(c);
        } catch (e) {
          tar.stdin.destroy();
          d.destroy(e as Error);
        }
      });
    }
    d.pipe(tar.stdin);
    sink = d;
    // tar exits 0 at its end-of-archive, which can come before the decoder has seen the rest of its
    // input (a stream's checksum, or bytes after its end: what `zstd -d`, gzip and bzip2 refuse).
    // The decoder goes on checking what is still fed to it, its output discarded: a stream that
    // does not end cleanly fails the file whether tar or the decoder finished first
    void tarExit.then((e) => {
      if (e !== null || d.destroyed) return;
      d.unpipe(tar.stdin);
      d.resume();
    });
  }
  /** tar failed (a non-zero exit); with a decoder, tar's exit 0 ends no wait (see above) */
  const tarFailed = tarExit.then((e) => (e === null && decoder !== null ? new Promise<never>(() => undefined) : e));

  const dataError = (e: Error): QvmBackupError =>
    isQvmBackupError(e) ? e : new QvmBackupError('ERR_CORRUPT', `${o.member}: cannot decompress the inner archive: ${e.message}`, { file: o.member }, e);

  /** A write failed: the reason is tar's own failure, or the decompressor's. */
  const failure = async (e: unknown): Promise<QvmBackupError> => {
    if (decoderError) return dataError(decoderError);
    try {
      await done;
    } catch (te) {
      return diskFullOr(o, isQvmBackupError(te) ? te : new QvmBackupError('ERR_TAR_FAILED', `${o.member}: tar failed`, { file: o.member }, te));
    }
    return new QvmBackupError('ERR_TAR_FAILED', `${o.member}: tar stopped reading its input early`, { file: o.member }, e);
  };

  // tar's outcome (without a decoder its exit 0 too) or the decoder's failure, whichever came
  // first: seen by the wait in progress, or by the next one. One reaction each for the whole file
  // (a Promise.race per write added reactions to these long-lived promises on every write)
  type Outcome = { fromTar: boolean; e: Error | null | undefined };
  let ended: Outcome | null = null;
  let waiting: ((r: Outcome) => void) | null = null;
  const endWith = (r: Outcome): void => {
    ended ??= r;
    waiting?.(r);
  };
  void (decoder === null ? tarExit : tarFailed).then((e) => endWith({ fromTar: true, e }));
  void decoderFailed.then((e) => endWith({ fromTar: false, e }));

  /**
   * Wait for `sinkDone` (a write or the end of the decoder or of tar's stdin), tar's failure or the
   * decoder's, and throw the cause. A decoder's write or end fails with its own error, which can
   * come before its 'error' event: an error that did not come from tar is the decoder's.
   */
  const settle = async (sinkDone: Promise<Error | null | undefined>): Promise<void> => {
    const r = await new Promise<Outcome>((resolve) => {
      if (ended !== null) return resolve(ended);
      waiting = resolve;
      void sinkDone.then((e) => resolve({ fromTar: false, e }));
    }).finally(() => (waiting = null));
    if (decoderError) throw dataError(decoderError);
    if (r.e) throw decoder !== null && !r.fromTar ? dataError(r.e) : await failure(r.e);
  };

  return {
    async write(data) {
      if (decoderError) throw dataError(decoderError);
      // without a decoder, tar is the only reader: input after its exit is input it refused
      if (tarStopped && decoder === null) throw await failure(undefined);
      moved();
      if (decoder === null) count?.(data);
      const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
      // tar or the decompressor dying leaves the write callback pending behind back-pressure
      const written = new Promise<Error | null | undefined>((resolve) => sink.write(buf, (e) => resolve(e)));
      await settle(written);
    },
    async finish() {
      if (decoderError) throw dataError(decoderError);
      if (decoder !== null) {
        // the decoder's end-of-input check (inner-decoder.ts) runs when its output ends, which can
        // be after its 'finish' (zlib flushes after it): wait for both sides. Its output flows to
        // tar, or is discarded once tar exited 0
        const ended = finished(decoder).then(
          () => null,
          (e: unknown) => (e instanceof Error ? e : new Error(String(e))),
        );
        decoder.end();
        await settle(ended);
        // bzip2 says it ignored trailing data and exits 0 after its output ended
        if (programExit !== null) await programExit.catch((e: unknown) => Promise.reject(dataError(e instanceof Error ? e : new Error(String(e)))));
      } else {
        await Promise.race([new Promise<void>((resolve) => sink.end(() => resolve())), tarExit]);
      }
      try {
        await done;
      } catch (e) {
        throw await failure(e);
      }
    },
    async abort() {
      decoder?.destroy();
      tar.stdin.destroy();
      // a decoder program is killed by the destroy: gone before this resolves
      await programExit?.catch(() => undefined);
      try {
        await done;
      } catch {
        // tar dies of EPIPE/EOF once its input is cut; the caller already has the real reason
      }
    },
  };
}

/**
 * tar reports a full disk only as a short write ("Wrote only 9216 of 10240 bytes"), without errno:
 * when tar failed and the filesystem it wrote to has (almost) no room left, the cause is the disk.
 */
export async function diskFullOr(o: ExtractorOptions, err: QvmBackupError): Promise<QvmBackupError> {
  if (err.code !== 'ERR_TAR_FAILED' || o.listOnly) return err;
  const s = await statfs(o.dir).catch(() => null);
  if (s === null || s.bavail * s.bsize >= 1024 * 1024) return err;
  return new QvmBackupError('ERR_NO_SPACE', `${o.member}: the disk is full (${err.message})`, { ...err.context }, err);
}

/** v2: `tar -xM`, one verified chunk per volume. */
export function openMultiVolumeExtractor(o: ExtractorOptions): InnerExtractor {
  const mv = tarExtractMultiVolume({
    dir: o.dir,
    members: [o.member],
    listOnly: o.listOnly,
    ...(o.signal ? { signal: o.signal } : {}),
    ...(o.tarPath ? { tarPath: o.tarPath } : {}),
  });
  const classify = async (e: unknown): Promise<never> => {
    throw isQvmBackupError(e) ? await diskFullOr(o, e) : e;
  };
  return {
    write: (data) => {
      moved();
      // each volume is a tar of its own (a file cut at its start continues in an 'M' member)
      if (o.sizeLimit !== undefined) tarBytesCounter(o.sizeLimit, o.member)(data);
      return mv.feedVolume([data]).catch(classify);
    },
    finish: () => mv.finish().catch(classify),
    abort: () => mv.abort(),
  };
}
