// The inner archive of one regular file (a VM image, firewall.xml, …) made in-process instead of by
// `tar -Pc --sparse`: the same bytes GNU tar writes (gnu-member-writer.ts; the sparse map from
// SEEK_DATA/SEEK_HOLE like tar's, io/hole-map.ts), but the data read with 1 MiB positioned reads
// (4 MiB when a compression program takes the stream) and holes never read — GNU tar moves sparse
// data in 512-byte syscalls and each spawn costs the main thread (and, through fork, every
// worker's memory) more the bigger the process is.
// Anything that is not a plain regular file we can describe exactly goes to GNU tar as before:
// symlinks (without --dereference), directories, devices, names too long for one header, a file
// the map helper cannot map.
import { constants as fsc } from 'node:fs';
import { open, readFile, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { QvmBackupError } from '../errors.js';
import { archiveTrailer, fitsNameField, memberHeaders, storedBytes, type DataRun } from '../tar/gnu-member-writer.js';
import { blockBytesOf } from '../tar/single-member-reader.js';
import type { HoleMapper } from '../io/hole-map.js';

/** Bytes per read (the default). */
export const READ_BYTES = 1024 * 1024;

/** Bytes per read when a compression program takes the stream: every view is one write into its
 *  stdin, a socket whose buffer holds ~200 KiB, and fewer, larger writes cost the main thread
 *  fewer wake-ups per byte (a Node 20 `-Z zstd` backup of 1 GiB, 20 rounds in turns: 1.90 s
 *  against 2.05 s median, 3.11 against 3.28 CPU-s; BENCHMARKS.md). Two buffers per file, and the
 *  next file is started ahead: 16 MiB per run. */
export const PROGRAM_READ_BYTES = 4 * 1024 * 1024;

/**
 * Read buffers reused from file to file (fresh memory costs ~11 µs per page on first touch here).
 * Two per stream: the read into one runs while the consumer copies the other; a read into a buffer
 * starts only once the consumer asked for the view after it (and so is done with it).
 */
export class ReadBuffers {
  readonly #free: Buffer[][] = [];
  /** bytes of each buffer: the largest read */
  readonly bytes: number;
  constructor(bytes = READ_BYTES) {
    if (!Number.isSafeInteger(bytes) || bytes < 512 || bytes % 512 !== 0) throw new RangeError(`ReadBuffers: ${bytes} bytes is not a positive multiple of 512`);
    this.bytes = bytes;
  }
  take(): Buffer[] {
    return this.#free.pop() ?? [0, 1].map(() => Buffer.allocUnsafeSlow(this.bytes));
  }
  give(b: Buffer[]): void {
    this.#free.push(b);
  }
}

const names = new Map<string, Map<number, string>>();

/** uid/gid → name from /etc/passwd or /etc/group (what GNU tar writes in uname/gname); '' if none. */
async function nameOf(file: '/etc/passwd' | '/etc/group', id: number): Promise<string> {
  let m = names.get(file);
  if (!m) {
    m = new Map();
    const text = await readFile(file, 'utf8').catch(() => '');
    for (const line of text.split('\n')) {
      const f = line.split(':');
      const n = Number(f[2]);
      if (f.length >= 3 && f[0] && Number.isSafeInteger(n) && !m.has(n)) m.set(n, f[0]);
    }
    names.set(file, m);
  }
  return m.get(id) ?? '';
}

export interface InnerTarSource {
  /** the inner archive's bytes; each view is valid until the next one is asked for */
  stdout: AsyncIterable<Uint8Array>;
  /** settles once the stream ended (rejects with the first failure) */
  done: Promise<void>;
  inputBytes: () => number | undefined;
  /** what a restore counts of this file against its VM's size limit (restore/stream/size-limit.ts):
   *  the inner archive's bytes, and the file-system blocks its data runs touch beyond their data;
   *  known when it is opened (in-process sources only) */
  restoreCountBytes?: number;
  /** its size or change time moved since the plan saw it (in-process sources of planned files) */
  changedSincePlan?: boolean;
}

export interface InnerTarFile {
  dir: string;
  name: string;
  archiveName: string;
  dereference: boolean;
  /** the plan saw a regular file: gone or something else now fails (no GNU tar in its place) */
  regular?: boolean;
  /** its size and change time when the plan saw it */
  planned?: { size: bigint; ctimeNs: bigint };
}

/**
 * Open `dir/name` and describe its inner archive; null when GNU tar must make it (not a regular
 * file, a long name, no map). The file stays open until the stream ends or `signal` aborts. A file
 * the plan saw as a regular one (`regular`) that is gone, or is no regular file any more, was
 * replaced since: ERR_IO, as GNU tar would archive a FIFO, device or directory in its place and
 * the archive would not restore.
 */
export async function openInnerTar(f: InnerTarFile, o: { mapper: HoleMapper; buffers: ReadBuffers; signal: AbortSignal }): Promise<InnerTarSource | null> {
  // what GNU tar's driver refuses (tar-args.ts checkArg) is left to it, so it is refused the same way
  if (!fitsNameField(f.archiveName) || /[\0\n]/.test(f.archiveName + f.name) || f.name === '.' || f.name.includes('/')) return null;
  const path = join(f.dir, f.name);
  const replaced = (what: string): QvmBackupError => new QvmBackupError('ERR_IO', `${path}: ${what} since the backup was planned (a running VM or another program changed it?); the backup stopped`, { file: path });
  let fh: FileHandle;
  try {
    // O_NONBLOCK: a FIFO in its place must not block the open; it is refused below anyway
    fh = await open(path, fsc.O_RDONLY | fsc.O_NONBLOCK | (f.dereference ? 0 : fsc.O_NOFOLLOW));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (f.regular && code === 'ENOENT') throw replaced('it disappeared');
    return null; // a symlink (ELOOP, where links are not followed), no permission…: GNU tar says what it is
  }
  let keep = false;
  try {
    const st = await fh.stat({ bigint: true });
    if (!st.isFile()) {
      if (f.regular) throw replaced(`it is no longer a regular file (${st.isDirectory() ? 'a directory' : st.isFIFO() ? 'a FIFO' : 'a device or socket'})`);
      return null;
    }
    const size = Number(st.size);
    // GNU tar treats a file as sparse when it has fewer blocks than its size needs (ST_IS_SPARSE)
    const sparse = st.blocks < (st.size + 511n) / 512n;
    const runs = sparse ? await o.mapper.map(fh.fd, size) : null;
    if (sparse && runs === null) return null;
    const meta = {
      name: f.archiveName,
      mode: Number(st.mode),
      uid: Number(st.uid),
      gid: Number(st.gid),
      uname: await nameOf('/etc/passwd', Number(st.uid)),
      gname: await nameOf('/etc/group', Number(st.gid)),
      mtimeSec: Number(st.mtimeNs / 1_000_000_000n),
      size,
    };
    // tar's base-256 ids and negative times (before 1970) are rare: GNU tar writes those
    if (meta.uid > 0o7777777 || meta.gid > 0o7777777 || st.mtimeNs < 0n) return null;
    const headers = memberHeaders(meta, runs);
    o.signal.throwIfAborted(); // the run stopped while we opened and mapped it: close it again
    keep = true;
    const data = runs ?? (size > 0 ? [{ offset: 0, length: size }] : []);
    const stored = storedBytes(data);
    const restoreCountBytes = headers.length + stored + archiveTrailer(headers.length + stored).length + Math.max(0, blockBytesOf(data) - stored);
    const changedSincePlan = f.planned !== undefined && (f.planned.size !== st.size || f.planned.ctimeNs !== st.ctimeNs);
    return { ...stream(fh, path, headers, data, st.ctimeNs, st.size, o), restoreCountBytes, changedSincePlan };
  } finally {
    if (!keep) await fh.close().catch(() => {});
  }
}

function stream(fh: FileHandle, path: string, headers: Uint8Array, runs: DataRun[], ctimeNs: bigint, size: bigint, o: { buffers: ReadBuffers; signal: AbortSignal }): InnerTarSource {
  let read = 0;
  let closed = false;
  const close = (): Promise<void> => {
    if (closed) return Promise.resolve();
    closed = true;
    return fh.close().catch(() => {});
  };
  // a source started ahead and never read (the run failed first) must not keep its file open
  const onAbort = (): void => void close();
  o.signal.addEventListener('abort', onAbort, { once: true });
  let settle!: { resolve: () => void; reject: (e: unknown) => void };
  const done = new Promise<void>((resolve, reject) => (settle = { resolve, reject }));
  done.catch(() => {});
  const changed = (what: string): QvmBackupError => new QvmBackupError('ERR_IO', `${path}: ${what} while it was being backed up (a running VM writing to it?); the backup stopped`, { file: path });

  async function* bytes(): AsyncGenerator<Uint8Array> {
    const bufs = o.buffers.take();
    let k = 0;
    let pending: Promise<Uint8Array> | null = null;
    try {
      yield headers;
      // one read runs ahead of the one handed out
      const reads = (function* () {
        const most = o.buffers.bytes;
        for (const r of runs) for (let p = r.offset; p < r.offset + r.length; p += most) yield { position: p, length: Math.min(most, r.offset + r.length - p) };
      })();
      const start = (): Promise<Uint8Array> | null => {
        const next = reads.next();
        if (next.done) return null;
        const { position, length } = next.value;
        const buf = bufs[k++ % bufs.length]!;
        return fh.read(buf, 0, length, position).then(({ bytesRead }) => {
          if (bytesRead !== length) throw changed('it shrank');
          return buf.subarray(0, length);
        });
      };
      pending = start();
      while (pending !== null) {
        o.signal.throwIfAborted();
        const view = await pending;
        pending = start();
        pending?.catch(() => {}); // awaited on the next turn, or dropped with the stream
        read += view.length;
        yield view;
      }
      const after = await fh.stat({ bigint: true });
      // GNU tar's test too: a write (or truncate) meanwhile moved the change time
      if (after.size !== size || after.ctimeNs !== ctimeNs) throw changed('it changed');
      yield archiveTrailer(headers.length + storedBytes(runs));
      settle.resolve();
    } catch (e) {
      const err = closed && o.signal.aborted ? (o.signal.reason ?? e) : e;
      settle.reject(err);
      throw err;
    } finally {
      o.signal.removeEventListener('abort', onAbort);
      // a read still in flight (the consumer stopped early) must land before its buffer is reused
      await pending?.catch(() => {});
      await close();
      o.buffers.give(bufs);
    }
  }
  const it = bytes();
  return {
    stdout: {
      [Symbol.asyncIterator]: () => it,
    },
    done,
    inputBytes: () => read,
  };
}
