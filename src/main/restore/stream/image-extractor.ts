// In-process extraction of a single-file inner archive (the VM images, formats 3 and 4): the tar
// stream is parsed here (SingleMemberReader) and the file's data runs are written with large
// positioned writes into a file we create with O_EXCL|O_NOFOLLOW in the inner archive's own fresh
// directory; holes stay holes. GNU tar writes sparse data in 512-byte calls (~190 MB/s here);
// this does not. Anything but the one expected regular member is refused.
import { moved } from '../../progress/activity.js';
import { setMaxListeners } from 'node:events';
import { constants as fsc, promises as fsp } from 'node:fs';
import path from 'node:path';
import type { Duplex } from 'node:stream';
import { QvmBackupError, isQvmBackupError } from '../../errors.js';
import { BackgroundFlush, FLUSH_EVERY } from '../../io/background-flush.js';
import { PagePrefault } from '../../io/page-prefault.js';
import { DROP_MIN_BYTES, DropBehind } from '../../io/drop-behind.js';
import { openDirectWriter, type DirectWriter } from '../../io/direct-writer.js';
import { basenameOfBase, subdirOfBase } from '../../format/archive-names.js';
import { SingleMemberReader, type MemberInfo, type MemberSink } from '../../tar/single-member-reader.js';
import { MAX_IMAGE_BYTES } from '../install/vm-files.js';
import type { RunStats } from '../../stats/run-stats.js';
import { STAGE } from '../../stats/bound.js';
import type { ExtractorOptions, InnerExtractor } from './file-extractor.js';
import type { InnerFilter } from './filters.js';
import { createInnerDecoder } from './inner-decoder.js';
import { startProgramDecoder } from './program-decoder.js';
import { UnitScanner, type UnitOutput, type UnitPools } from './parallel-units.js';

/** Decompressed bytes waiting to be written, at most (then the decompressor is held; a decoder
 *  program hands over 4 MiB pieces, so with the piece in its stream and the one it gathers it can
 *  be ~20 MiB ahead). */
const MAX_QUEUED = 8 * 1024 * 1024;

/** True for the inner archives extracted in-process: single-file image members of formats 3/4. */
export function isImageBase(base: string): boolean {
  return basenameOfBase(base).endsWith('.img') && subdirOfBase(base) !== '';
}

/** Writes the member into `<dir>/<member>`; with `listOnly`, only parses it, or (`placeholder`, a
 *  verification) makes the file with the member's size and none of its data: a hole, no blocks,
 *  for the checks a restore makes of the files it installs. Exported for tests. */
export class FileSink implements MemberSink {
  #fh: fsp.FileHandle | null = null;
  #info: MemberInfo | null = null;
  #startedSec = 0;
  /** the install fsyncs the image; its disk writes start here, beside the decoding */
  #flush: BackgroundFlush | null = null;
  /** prepares the page cache ahead of the writes, in another thread */
  #prefault: PagePrefault | null = null;
  /** writes around the page cache (--direct-io; then nothing is prefaulted) */
  #direct: DirectWriter | null = null;
  /** hands the pages written back to the kernel once flushed (then nothing is prefaulted either:
   *  the pages it frees are what the next writes take, cheaper than any prepared ahead) */
  #drop: DropBehind | null = null;
  constructor(
    readonly dir: string,
    readonly listOnly: boolean,
    readonly stats?: RunStats,
    readonly prefault = false,
    readonly direct = false,
    readonly dropBehind = false,
    readonly placeholder = false,
  ) {}

  async begin(info: MemberInfo): Promise<void> {
    this.#info = info;
    // GNU tar sets a file's access time to when it started (its mtime is the archive's)
    this.#startedSec = Date.now() / 1000;
    if (this.listOnly && !this.placeholder) return;
    // the parent directories inside our own fresh extraction directory
    const parts = info.name.split('/');
    let parent = this.dir;
    for (const comp of parts.slice(0, -1)) {
      parent = path.join(parent, comp);
      await fsp.mkdir(parent, { mode: 0o755 });
    }
    const file = path.join(parent, parts[parts.length - 1]!);
    // read+write: the prefaulter reads the ranges about to be written (only ever our own file)
    const fh = await fsp.open(file, fsc.O_RDWR | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW, info.mode || 0o644);
    if (this.listOnly) {
      try {
        await fh.truncate(info.size);
      } finally {
        await fh.close();
      }
      return;
    }
    this.#fh = fh;
    // the data runs' total: the last 64 MiB are flushed in smaller steps (a short final fsync)
    const dataBytes = info.spans.dataBytes;
    this.#flush = new BackgroundFlush(this.#fh, FLUSH_EVERY, dataBytes, () => this.#drop?.flushed());
    await this.#fh.truncate(info.size); // the apparent size: everything not written is a hole
    // around the page cache when asked and the filesystem allows it; else through it, its pages
    // dropped once flushed (large files) or prepared ahead
    if (this.direct) this.#direct = await openDirectWriter(this.#fh, info.size, dataBytes);
    if (this.#direct !== null) return;
    if (this.dropBehind && dataBytes >= DROP_MIN_BYTES) this.#drop = new DropBehind(this.#fh.fd, () => this.#startPrefault(), (ms) => this.stats?.add(STAGE.restoreImageDrop, ms));
    else this.#startPrefault();
  }

  /** the page cache is being prepared ahead of the writes (tests) */
  get preparingAhead(): boolean {
    return this.#prefault !== null;
  }

  #reportPrefault(): void {
    const p = this.#prefault;
    if (p !== null && p.reads > 0) this.stats?.add(STAGE.restoreImagePrefault, p.readMs, p.reads);
  }

  /** Prepare the page cache ahead of the writes (from where the writer is): at begin(), or once
   *  the drop-behind helper turned out not to work. */
  #startPrefault(): void {
    if (this.prefault && this.#fh !== null && this.#prefault === null) this.#prefault = new PagePrefault(this.#fh, this.#info!.spans);
  }

  async data(position: number, bytes: Uint8Array): Promise<void> {
    const fh = this.#fh;
    if (fh === null) return;
    const dw = this.#direct;
    if (dw !== null) {
      // copied into a staging block; written when that is full (waits while the one before is)
      await (this.stats?.time(STAGE.restoreImageWrite, () => dw.write(position, bytes)) ?? dw.write(position, bytes));
      this.#flush!.wrote(bytes.length);
      return;
    }
    this.#prefault?.ahead(position + bytes.length);
    const write = async (): Promise<void> => {
      for (let off = 0; off < bytes.length; ) {
        const { bytesWritten } = await fh.write(bytes, off, bytes.length - off, position + off);
        off += bytesWritten;
      }
    };
    // one write at a time per file (the kernel serialises a file's writes anyway): a serial stage
    await (this.stats?.time(STAGE.restoreImageWrite, write) ?? write());
    this.#flush!.wrote(bytes.length);
  }

  async end(): Promise<void> {
    const fh = this.#fh;
    if (fh === null) return;
    this.#fh = null;
    try {
      const dw = this.#direct;
      if (dw !== null) await (this.stats?.time(STAGE.restoreImageWrite, () => dw.end()) ?? dw.end());
      await this.#prefault?.stop();
      this.#reportPrefault();
      // no drop after the last flushes (a helper's dd started for them was the tail of the run:
      // 30-50 ms here); their few MiB of pages stay cached, clean once on disk
      const dropEnded = this.#drop?.end();
      await this.#flush!.settle();
      await dropEnded;
      await fh.utimes(this.#startedSec, this.#info!.mtimeSec);
    } finally {
      await fh.close();
    }
  }

  async close(): Promise<void> {
    const fh = this.#fh;
    this.#fh = null;
    await this.#drop?.kill(); // first: a flush ending meanwhile must not start it
    await this.#prefault?.stop();
    await this.#direct?.close();
    await this.#flush?.quiesce();
    await fh?.close().catch(() => undefined);
  }
}

/** v3/v4 image member: parsed and written in-process (gzip or zstd decompressed while streaming;
 *  with `units`, our gzip members or zstd frames are decompressed in parallel by the worker pool). */
export function openImageExtractor(o: ExtractorOptions, filter: InnerFilter, units?: UnitPools, strict = false): InnerExtractor {
  const sink = new FileSink(o.dir, o.listOnly || o.placeholder === true, o.stats, o.prefault === true, o.direct === true, o.dropBehind === true, o.placeholder === true);
  const limit = o.sizeLimit;
  // the decoded bytes are counted as they come; what the data runs take on disk beyond their own
  // bytes (a block per run: a map of 1-byte runs 4 KiB apart takes ~500 times its archive bytes) is
  // counted once the map is read, before the file is created
  const counted: MemberSink =
    limit === undefined
      ? sink
      : {
          begin: async (info) => {
            limit.take(Math.max(0, info.spans.blockBytes() - info.spans.dataBytes), o.member);
            await sink.begin(info);
          },
          data: (position, bytes) => sink.data(position, bytes),
          end: () => sink.end(),
        };
  const reader = new SingleMemberReader({ expectedName: o.member, maxSize: MAX_IMAGE_BYTES, what: o.member, strict }, counted);
  const classify = (e: unknown): QvmBackupError => {
    if (isQvmBackupError(e)) return e;
    const code = (e as NodeJS.ErrnoException).code;
    // the archive states the file's size: one the file system cannot hold (ext4: 16 TiB less 4 KiB)
    // is the archive's, not an I/O error of the host
    if (code === 'EFBIG') return new QvmBackupError('ERR_TOO_LARGE', `${o.member}: the file system cannot hold a file of the size the archive states (${(e as Error).message})`, { file: o.member }, e);
    return new QvmBackupError(code === 'ENOSPC' || code === 'EDQUOT' ? 'ERR_NO_SPACE' : 'ERR_IO', `${o.member}: ${(e as Error).message}`, { file: o.member }, e);
  };
  let failed: QvmBackupError | undefined;
  /** decoded bytes to the parser, counted first against the VM's limit (size-limit.ts) */
  const parse = (bytes: Uint8Array): Promise<void> => {
    moved();
    o.sizeLimit?.take(bytes.length, o.member);
    return reader.push(bytes);
  };
  // compressed: decoded output is parsed in order; the chain of pushes is the back-pressure
  let chain: Promise<void> = Promise.resolve();
  const feed = (bytes: Uint8Array): void => {
    chain = chain.then(async () => {
      if (failed) return;
      try {
        await parse(bytes);
      } catch (e) {
        failed = classify(e);
      }
    });
  };
  // stops the member tasks and slot waits of this file on abort
  const local = new AbortController();
  const signal = o.signal ? AbortSignal.any([o.signal, local.signal]) : local.signal;
  let scanner: UnitScanner | null = null;
  if (units !== undefined && units.format.filter === filter.kind) {
    // every unit task in flight listens on it (one per output slot), beside a slot wait
    setMaxListeners(units.out.size + 8, signal);
    scanner = new UnitScanner(units, {
      what: o.member,
      signal,
      // a unit's output is written in stream order, then its slot is free again
      deliver: (output) => {
        chain = chain.then(async () => {
          let m: UnitOutput | undefined;
          try {
            m = await output;
            if (!failed) await parse(m.bytes);
          } catch (e) {
            failed ??= classify(e);
          } finally {
            m?.release();
          }
        });
      },
    });
  }
  // an allow-listed program (no in-process decoder for its format): its exit status is awaited too
  let programExit: Promise<void> | null = null;
  const startDecoder = (): Duplex | null => {
    let decoder: Duplex | null;
    if (filter.kind === 'program') {
      const p = startProgramDecoder(filter.program, o.member, signal);
      programExit = p.exited;
      decoder = p.stream;
    } else decoder = createInnerDecoder(filter);
    if (decoder === null) return null;
    // the decompressor runs ahead of the writes by up to MAX_QUEUED bytes, so that decompressing
    // and writing (both in libuv threads) overlap; beyond that it is held until they catch up
    let queued = 0;
    let held = false;
    decoder.on('data', (d: Buffer) => {
      queued += d.length;
      feed(d);
      chain = chain.then(() => {
        queued -= d.length;
        if (held && queued <= MAX_QUEUED / 2) {
          held = false;
          decoder.resume();
        }
      });
      if (!held && queued > MAX_QUEUED) {
        held = true;
        decoder.pause();
      }
    });
    decoder.on('error', (e) => {
      failed ??= isQvmBackupError(e) ? e : new QvmBackupError('ERR_CORRUPT', `${o.member}: cannot decompress the inner archive: ${e.message}`, { file: o.member }, e);
    });
    return decoder;
  };
  // with a scanner, the streaming decoder starts only at the first unit it hands over
  let decoder: Duplex | null = scanner === null ? startDecoder() : null;
  const check = (): void => {
    if (o.signal?.aborted) throw new QvmBackupError('ERR_CANCELLED', `${o.member}: cancelled`, { file: o.member });
    if (failed) throw failed;
  };
  /** resolves once zlib consumed `data` (then it no longer references it) or failed */
  const decode = (g: Duplex, data: Uint8Array): Promise<void> =>
    new Promise<void>((resolve) => {
      g.once('close', resolve);
      g.write(data, () => {
        g.off('close', resolve);
        resolve();
      });
    });

  return {
    async write(data) {
      check();
      if (scanner !== null) {
        const rest = await scanner.write(data);
        check();
        if (rest === null) return;
        scanner = null;
        decoder = startDecoder();
        for (const part of rest) if (decoder !== null) await decode(decoder, part);
        check();
        return;
      }
      if (decoder === null) {
        feed(data);
        await chain;
        check();
        return;
      }
      await decode(decoder, data);
      check();
    },
    async finish() {
      check();
      scanner?.finish();
      if (decoder !== null) {
        const g = decoder;
        await new Promise<void>((resolve) => {
          g.once('end', resolve);
          g.once('close', resolve);
          g.end();
        });
      }
      if (programExit !== null) await programExit.catch((e: unknown) => void (failed ??= classify(e)));
      await chain;
      check();
      try {
        await reader.end();
      } catch (e) {
        throw classify(e);
      } finally {
        await sink.close();
      }
    },
    async abort() {
      failed ??= new QvmBackupError('ERR_CANCELLED', `${o.member}: aborted`, { file: o.member });
      local.abort();
      scanner?.close();
      decoder?.destroy();
      // a decoder program is killed by the destroy: gone before this resolves
      await programExit?.catch(() => undefined);
      await chain.catch(() => undefined);
      await sink.close();
    },
  };
}
