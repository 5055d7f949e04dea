// Where the backup bytes go: a file (written under a temporary name, linked into place only on
// commit), our stdout, or a shell command's stdin. Every sink honours backpressure via `write()`,
// and `write()` resolves only when the sink no longer references the bytes: callers reuse them.
import { removeAtExit } from './exit-cleanup.js';
import { processAlive } from './child-lifetime.js';
import { constants as fsc, fdatasync, fstatSync, fsync, promises as fsp } from 'node:fs';
import type { Writable } from 'node:stream';
import path from 'node:path';
import { QvmBackupError, isQvmBackupError } from '../errors.js';
import type { Sink } from './sink-types.js';
import { writableWrite } from './writable-write.js';
import { BackgroundFlush } from './background-flush.js';

export type { Sink } from './sink-types.js';

function ioError(message: string, context: Record<string, unknown>, cause?: unknown): QvmBackupError {
  if (isQvmBackupError(cause)) return cause;
  const code = (cause as NodeJS.ErrnoException | undefined)?.code;
  return new QvmBackupError(code === 'ENOSPC' || code === 'EDQUOT' ? 'ERR_NO_SPACE' : 'ERR_IO', message, context, cause);
}

/** Free bytes available to an unprivileged writer on the filesystem holding `dir`. */
export async function freeBytes(dir: string): Promise<number> {
  const s = await fsp.statfs(dir);
  return s.bavail * s.bsize;
}

/** Write all of `data` at the file position (loops over short writes). */
async function writeAll(fh: fsp.FileHandle, data: Uint8Array): Promise<void> {
  let off = 0;
  while (off < data.length) {
    const { bytesWritten } = await fh.write(data, off, data.length - off);
    off += bytesWritten;
  }
}

/** Errors of link(2) on filesystems without hard links (vfat, exFAT, some FUSE/network mounts). */
const NO_HARD_LINKS = new Set(['EPERM', 'ENOTSUP', 'EOPNOTSUPP', 'ENOSYS']);

/**
 * Give the finished `partial` the name `target` without ever replacing an existing file: link(2)
 * fails with EEXIST instead of overwriting, unlike rename(2). Where hard links do not exist, the
 * name is claimed with O_EXCL and the partial renamed over that (still empty) claim of ours.
 * Returns false when `target` exists.
 */
async function claimName(partial: string, target: string): Promise<boolean> {
  try {
    await fsp.link(partial, target);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? '';
    if (code === 'EEXIST') return false;
    if (!NO_HARD_LINKS.has(code)) throw e;
    try {
      await (await fsp.open(target, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL, 0o600)).close();
    } catch (e2) {
      if ((e2 as NodeJS.ErrnoException).code === 'EEXIST') return false;
      throw e2;
    }
    try {
      await fsp.rename(partial, target);
    } catch (e3) {
      await fsp.rm(target, { force: true }).catch(() => undefined); // our own empty claim
      throw e3;
    }
    return true;
  }
  await fsp.unlink(partial);
  return true;
}

/** Highest `-N` suffix tried for a numbered name before giving up. */
const MAX_SUFFIX = 999;

/** A file sink; `path` is the name the archive got (known after commit). */
export interface FileSink extends Sink {
  readonly path: string;
}

export interface FileSinkOptions {
  /** When `finalPath` exists at commit, use `finalPath-1`, `-2`, … instead of failing
   *  (for the default timestamped name: two runs in the same second both keep their archive). */
  numbered?: boolean;
}

/**
 * The partial files in `dir` that backups of this user left when they were killed (kill -9, power
 * loss): `.<name>.partial-<pid>` whose process is gone. Only listed, never removed: the directory
 * may be shared (NFS), and another machine's running backup has a PID that means nothing here.
 */
export async function staleBackupPartials(dir: string): Promise<string[]> {
  const uid = process.getuid?.();
  const out: string[] = [];
  for (const name of await fsp.readdir(dir).catch(() => [] as string[])) {
    const pid = Number(/^\..+\.partial-(\d+)(?:-\d+)?$/.exec(name)?.[1]);
    if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid || processAlive(pid)) continue;
    const st = await fsp.lstat(path.join(dir, name)).catch(() => null);
    if (st?.isFile() === true && st.uid === uid) out.push(name);
  }
  return out.sort();
}

/** The partial files this process is writing now. */
const livePartials = new Set<string>();

/**
 * A sink writing `finalPath`: bytes go to `.<base>.partial-<pid>` in the same directory; commit()
 * fsyncs it, gives it the final name without replacing anything (see claimName), and fsyncs the
 * directory; abort() deletes the partial file. An existing `finalPath` fails the commit with
 * ERR_IO (or, with `numbered`, the next free `-N` name is taken).
 */
export async function openFileSink(finalPath: string, opts: FileSinkOptions = {}): Promise<FileSink> {
  const dir = path.dirname(path.resolve(finalPath));
  // `.<base>.partial-<pid>`, or with `-<n>` for another run of this process writing the same
  // name at the same time (the library runs backups side by side)
  const base = path.join(dir, `.${path.basename(finalPath)}.partial-${process.pid}`);
  let partial = base;
  for (let n = 2; livePartials.has(partial); n++) partial = `${base}-${n}`;
  livePartials.add(partial);
  const ctx = { file: finalPath };
  let fh: fsp.FileHandle;
  try {
    // A stale partial of an earlier process with the same pid is ours to replace.
    await fsp.rm(partial, { force: true });
    fh = await fsp.open(partial, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL, 0o600);
  } catch (e) {
    livePartials.delete(partial);
    throw ioError(`cannot create ${partial}: ${(e as Error).message}`, ctx, e);
  }
  // a forced exit (a second Ctrl-C) or a crash leaves no partial file behind either
  const unhook = removeAtExit(partial);
  const forget = (): void => {
    unhook();
    livePartials.delete(partial);
  };
  let state: 'open' | 'committed' | 'aborted' = 'open';
  let claimed = finalPath;
  // commit fsyncs the archive: its disk writes start while the backup is still being made
  const flush = new BackgroundFlush(fh);
  const closeQuietly = async (): Promise<void> => fh.close().catch(() => undefined);
  const after = (what: string): QvmBackupError =>
    state === 'aborted'
      ? new QvmBackupError('ERR_CANCELLED', `${what} ${finalPath}: the output was discarded`, ctx)
      : new QvmBackupError('ERR_INTERNAL', `${what} after commit of ${finalPath}`, ctx);
  return {
    description: `file ${finalPath}`,
    get path() {
      return claimed;
    },
    async write(data) {
      if (state !== 'open') throw after('write to');
      try {
        await writeAll(fh, data);
        flush.wrote(data.length);
      } catch (e) {
        throw ioError(`writing ${partial}: ${(e as Error).message}`, ctx, e);
      }
    },
    async commit() {
      if (state !== 'open') throw after('commit of');
      state = 'committed';
      try {
        await flush.settle();
        await fh.sync();
        await fh.close();
        for (let n = 0; ; n++) {
          const target = n === 0 ? finalPath : `${finalPath}-${n}`;
          if (await claimName(partial, target)) {
            forget(); // the archive has its name now
            claimed = target;
            break;
          }
          if (!opts.numbered) throw new QvmBackupError('ERR_IO', `${finalPath} appeared while the backup was being written; it was not overwritten and this backup was discarded`, ctx);
          if (n >= MAX_SUFFIX) throw new QvmBackupError('ERR_IO', `${finalPath}-1 … -${MAX_SUFFIX} all exist; this backup was discarded`, ctx);
        }
      } catch (e) {
        await closeQuietly();
        await fsp.rm(partial, { force: true }).catch(() => undefined);
        forget();
        throw ioError(`finishing ${finalPath}: ${(e as Error).message}`, ctx, e);
      }
      try {
        const d = await fsp.open(dir, fsc.O_RDONLY | fsc.O_DIRECTORY);
        try {
          await d.sync();
        } finally {
          await d.close();
        }
      } catch (e) {
        // Some filesystems refuse fsync on directories; the name itself is in place.
        const code = (e as NodeJS.ErrnoException).code;
        if (code !== 'EINVAL' && code !== 'ENOTSUP' && code !== 'EPERM') throw ioError(`fsync of ${dir}: ${(e as Error).message}`, ctx, e);
      }
    },
    async abort() {
      if (state !== 'open') return;
      state = 'aborted';
      // the name goes first: close() waits for a write in progress, which on a dead mount may
      // never end (its bytes then go to a file without a name, freed at the close)
      await fsp.rm(partial, { force: true }).catch(() => undefined);
      forget();
      void closeQuietly();
    },
  };
}

export interface StdoutSinkOptions {
  /** flush of the file behind `fd` (tests count the calls; default fdatasync) */
  datasync?: (fd: number) => Promise<void>;
  /** bytes between two background flushes (default FLUSH_EVERY) */
  flushEvery?: number;
}

/** `fsync` or `fdatasync` of our stdout's file, where a file that cannot be synced (EINVAL: a pipe,
 *  a tty, /dev/null; EROFS) is not an error. */
function syncStdoutFile(call: typeof fsync, fd: number): Promise<void> {
  return new Promise<void>((res, rej) => call(fd, (e) => (e && e.code !== 'EINVAL' && e.code !== 'EROFS' ? rej(e) : res())));
}

/** The background flush of our stdout's file: fdatasync, tolerant as its final fsync is. */
export function syncData(fd: number): Promise<void> {
  return syncStdoutFile(fdatasync, fd);
}

/** The stream's file descriptor when it is a regular file (`qvm-backup - > file`), else null. */
function regularFileFd(stream: Writable): number | null {
  const fd = (stream as Writable & { fd?: unknown }).fd;
  if (typeof fd !== 'number') return null;
  try {
    return fstatSync(fd).isFile() ? fd : null;
  } catch {
    return null;
  }
}

/** A sink writing to our stdout (or another Writable, for tests); EPIPE is an error. When stdout is
 *  a regular file it is flushed in the background as a file destination is (io/background-flush.ts),
 *  so the final fsync has only the tail to write; a failed flush fails the next write. */
export function stdoutSink(stream: Writable = process.stdout, opts: StdoutSinkOptions = {}): Sink {
  let error: Error | null = null;
  const ctx = { file: '<stdout>' };
  const fileFd = regularFileFd(stream);
  const datasync = opts.datasync ?? syncData;
  const flush = fileFd === null ? null : new BackgroundFlush({ datasync: () => datasync(fileFd) }, opts.flushEvery);
  // abort() stops waiting for a reader that may never read again (the archive is void anyway)
  const stop = new AbortController();
  const onError = (e: Error): void => {
    error ??= e;
  };
  stream.on('error', onError);
  const wrap = (e: unknown): QvmBackupError => {
    if (stop.signal.aborted) return new QvmBackupError('ERR_CANCELLED', 'writing to stdout: the output was abandoned', ctx, e);
    const code = (e as NodeJS.ErrnoException).code;
    const what = code === 'EPIPE' ? 'the reader of stdout went away (EPIPE)' : (e as Error).message;
    return ioError(`writing to stdout: ${what}`, ctx, e);
  };
  return {
    description: 'stdout',
    async write(data) {
      try {
        await writableWrite(stream, data, () => error, stop.signal);
        flush?.wrote(data.length);
      } catch (e) {
        if (!stop.signal.aborted) error ??= e as Error;
        throw wrap(e);
      }
    },
    async commit(signal) {
      try {
        // An empty write calls back once everything queued before it has been handed to the OS.
        await writableWrite(stream, Buffer.alloc(0), () => error, signal ? AbortSignal.any([stop.signal, signal]) : stop.signal);
        await flush?.settle();
        // Durable when stdout is a regular file; pipes and ttys refuse fsync (EINVAL), which is fine.
        const fd = (stream as Writable & { fd?: unknown }).fd;
        if (typeof fd === 'number') await syncStdoutFile(fsync, fd);
      } catch (e) {
        throw wrap(e);
      }
    },
    // The 'error' listener stays: a late EPIPE from queued writes must not crash the process.
    async abort() {
      stop.abort(new QvmBackupError('ERR_CANCELLED', 'writing to stdout: the output was abandoned', ctx));
    },
  };
}

/** `sink` written in pieces of at most `piece` bytes, `touch` called after each: a 100 MiB chunk
 *  going to a slow destination shows as moving while it goes (--stall-timeout). Each piece resolves
 *  only once the sink no longer references it, so the whole write does too. */
export function touchedSink(sink: Sink, touch: () => void, piece: number): Sink {
  return {
    description: sink.description,
    async write(data) {
      for (let off = 0; off < data.length; off += piece) {
        await sink.write(data.subarray(off, Math.min(data.length, off + piece)));
        touch();
      }
    },
    commit: (signal) => sink.commit(signal),
    abort: () => sink.abort(),
  };
}

export { commandSink, processSink } from './command-sink.js';
