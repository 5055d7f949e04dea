// Where the backup bytes go: a file (written under a temporary name, renamed into place only on
// commit), our stdout, or a shell command's stdin. Every sink honours backpressure via `write()`.
import { constants as fsc, fsync, promises as fsp } from 'node:fs';
import type { Writable } from 'node:stream';
import path from 'node:path';
import { QvmBackupError, isQvmBackupError } from '../errors.js';
import { writableWrite } from './writable-write.js';

/** A destination for the backup stream. After commit() or abort() no more writes are allowed. */
export interface Sink {
  /** Write bytes; resolves when the sink can take more (backpressure). */
  write(data: Uint8Array): Promise<void>;
  /** Make the written bytes durable/visible as the finished backup. */
  commit(): Promise<void>;
  /** Throw away what was written, as far as possible; never throws. */
  abort(): Promise<void>;
  readonly description: string;
}

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

/**
 * A sink writing `finalPath`: bytes go to `.<base>.partial-<pid>` in the same directory; commit()
 * fsyncs, renames it into place and fsyncs the directory; abort() deletes the partial file.
 */
export async function openFileSink(finalPath: string): Promise<Sink> {
  const dir = path.dirname(path.resolve(finalPath));
  const partial = path.join(dir, `.${path.basename(finalPath)}.partial-${process.pid}`);
  const ctx = { file: finalPath };
  let fh: fsp.FileHandle;
  try {
    // A stale partial of an earlier run with the same pid is ours to replace.
    await fsp.rm(partial, { force: true });
    fh = await fsp.open(partial, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL, 0o600);
  } catch (e) {
    throw ioError(`cannot create ${partial}: ${(e as Error).message}`, ctx, e);
  }
  let state: 'open' | 'done' = 'open';
  const closeQuietly = async (): Promise<void> => fh.close().catch(() => undefined);
  return {
    description: `file ${finalPath}`,
    async write(data) {
      if (state !== 'open') throw new QvmBackupError('ERR_INTERNAL', `write after commit/abort of ${finalPath}`, ctx);
      try {
        await writeAll(fh, data);
      } catch (e) {
        throw ioError(`writing ${partial}: ${(e as Error).message}`, ctx, e);
      }
    },
    async commit() {
      if (state !== 'open') throw new QvmBackupError('ERR_INTERNAL', `commit after commit/abort of ${finalPath}`, ctx);
      state = 'done';
      try {
        await fh.sync();
        await fh.close();
        await fsp.rename(partial, finalPath);
      } catch (e) {
        await closeQuietly();
        await fsp.rm(partial, { force: true }).catch(() => undefined);
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
        // Some filesystems refuse fsync on directories; the rename itself has happened.
        const code = (e as NodeJS.ErrnoException).code;
        if (code !== 'EINVAL' && code !== 'ENOTSUP' && code !== 'EPERM') throw ioError(`fsync of ${dir}: ${(e as Error).message}`, ctx, e);
      }
    },
    async abort() {
      if (state === 'done') return;
      state = 'done';
      await closeQuietly();
      await fsp.rm(partial, { force: true }).catch(() => undefined);
    },
  };
}

/** A sink writing to our stdout (or another Writable, for tests); EPIPE is an error. */
export function stdoutSink(stream: Writable = process.stdout): Sink {
  let error: Error | null = null;
  const ctx = { file: '<stdout>' };
  const onError = (e: Error): void => {
    error ??= e;
  };
  stream.on('error', onError);
  const wrap = (e: unknown): QvmBackupError => {
    const code = (e as NodeJS.ErrnoException).code;
    const what = code === 'EPIPE' ? 'the reader of stdout went away (EPIPE)' : (e as Error).message;
    return ioError(`writing to stdout: ${what}`, ctx, e);
  };
  return {
    description: 'stdout',
    async write(data) {
      try {
        await writableWrite(stream, data, () => error);
      } catch (e) {
        error ??= e as Error;
        throw wrap(e);
      }
    },
    async commit() {
      try {
        // An empty write calls back once everything queued before it has been handed to the OS.
        await new Promise<void>((resolve, reject) => {
          if (error) return reject(error);
          stream.write(Buffer.alloc(0), (e) => (e ? reject(e) : resolve()));
        });
        // Durable when stdout is a regular file; pipes and ttys refuse fsync (EINVAL), which is fine.
        const fd = (stream as Writable & { fd?: unknown }).fd;
        if (typeof fd === 'number') {
          await new Promise<void>((res, rej) => fsync(fd, (e) => (e && e.code !== 'EINVAL' && e.code !== 'EROFS' ? rej(e) : res())));
        }
      } catch (e) {
        throw wrap(e);
      }
    },
    // The 'error' listener stays: a late EPIPE from queued writes must not crash the process.
    async abort() {},
  };
}

export { commandSink } from './command-sink.js';
