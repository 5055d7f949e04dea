// A VM's qubes.Restore service does not send the archive as it is: its tar2qfile turns every
// regular member into Qubes' file-copy ("qfile") format, and dom0 must answer at the end. Format
// (little endian, the x86-64 layout of the C structs):
//   entry  = header (32 bytes: namelen u32, mode u32, filelen u64, atime, atime_nsec, mtime,
//            mtime_nsec u32) + name (namelen bytes, NUL included) + content (filelen bytes,
//            regular files only; directories of the member names come as content-less entries)
//   end    = a header with namelen 0
//   answer = error code u32, padding u32, crc32 u64 of every byte received (the end header
//            included; CRC-32 as gzip), then u32 length of a "last file name" (0)
// The sender exits non-zero when the answer is missing or its CRC differs. Here the entries become
// a plain tar stream (pax/ustar headers as our backups write them) for the usual outer tar reader,
// which checks names and sizes like any other archive: nothing in this stream is trusted.
import { Transform, type TransformCallback } from 'node:stream';
import { crc32 } from 'node:zlib';
import { QvmBackupError } from '../errors.js';
import { outerMemberHead, outerMemberTail } from '../tar/outer-tar-writer.js';
import { BLOCK } from '../tar/tar-header.js';

export const QFILE_HEADER_BYTES = 32;
export const QFILE_S_IFREG = 0o100000;
export const QFILE_S_IFDIR = 0o040000;
/** MAX_PATH_LENGTH of Qubes file copy; a name (with its NUL) is never longer */
const MAX_NAME_BYTES = 16384;
const S_IFMT = 0o170000;
const S_IFREG = QFILE_S_IFREG;
const S_IFDIR = QFILE_S_IFDIR;

/** The answer dom0 sends once the end header arrived: success and the CRC of what was received. */
export function qfileResult(crc: number): Buffer {
  const b = Buffer.alloc(20);
  b.writeUInt32LE(0, 0); // error code
  b.writeBigUInt64LE(BigInt(crc >>> 0), 8);
  b.writeUInt32LE(0, 16); // no last file name
  return b;
}

/** One qfile entry header, as tar2qfile writes it (tests and the stand-in service use it). */
export function qfileHeader(namelen: number, mode: number, filelen: number, mtime = 0): Buffer {
  const b = Buffer.alloc(QFILE_HEADER_BYTES);
  b.writeUInt32LE(namelen, 0);
  b.writeUInt32LE(mode, 4);
  b.writeBigUInt64LE(BigInt(filelen), 8);
  b.writeUInt32LE(mtime, 16);
  b.writeUInt32LE(mtime, 24);
  return b;
}

const corrupt = (what: string): QvmBackupError => new QvmBackupError('ERR_CORRUPT', `qubes.Restore stream: ${what}`, { command: 'qubes.Restore' });

/**
 * qfile stream in, tar stream out. `onEnd(crc)` is called once, when the end header arrived (the
 * caller answers the sender with qfileResult); bytes after it, or input that ends before it, are
 * an error.
 */
export class QfileToTar extends Transform {
  private crc = 0;
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  /** what the next bytes are: a header, a name of n bytes, n content bytes, or nothing (ended) */
  private want: { kind: 'header' } | { kind: 'name'; len: number; mode: number; size: number; mtime: number } | { kind: 'content'; left: number; size: number } | { kind: 'done' } = { kind: 'header' };
  private readonly onEnd: (crc: number) => void;
  private readonly explainEarlyEnd: (() => Promise<string>) | undefined;

  /** `explainEarlyEnd`: why the input ended before its end marker (the sender's exit status),
   *  for the message: a VM that does not exist sends nothing at all. */
  constructor(onEnd: (crc: number) => void, explainEarlyEnd?: () => Promise<string>) {
    super({ readableHighWaterMark: 1024 * 1024 });
    this.onEnd = onEnd;
    this.explainEarlyEnd = explainEarlyEnd;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    try {
      this.consume(chunk);
      cb();
    } catch (e) {
      cb(e as Error);
    }
  }

  override _flush(cb: TransformCallback): void {
    if (this.want.kind === 'done') return cb();
    const where = this.want.kind === 'content' ? `${this.want.left} bytes of a member missing` : this.want.kind === 'header' && this.crc === 0 ? 'nothing received' : `in a ${this.want.kind}`;
    const err = (why: string) => cb(corrupt(`ended before its end marker (${where})${why ? `: ${why}` : ''}`));
    if (!this.explainEarlyEnd) return err('');
    this.explainEarlyEnd().then(err, () => err(''));
  }

  private consume(chunk: Buffer): void {
    if (this.want.kind === 'done') {
      if (chunk.length > 0) throw corrupt('data after the end marker');
      return;
    }
    let off = 0;
    while (off < chunk.length) {
      const w = this.want as QfileToTar['want'];
      if (w.kind === 'done') throw corrupt('data after the end marker');
      if (w.kind === 'content') {
        const n = Math.min(w.left, chunk.length - off);
        const part = chunk.subarray(off, off + n);
        this.crc = crc32(part, this.crc);
        this.push(part);
        off += n;
        w.left -= n;
        if (w.left === 0) {
          this.push(outerMemberTail(w.size));
          this.want = { kind: 'header' };
        }
        continue;
      }
      const need = w.kind === 'header' ? QFILE_HEADER_BYTES : w.len;
      const take = Math.min(need - this.pendingBytes, chunk.length - off);
      this.pending.push(chunk.subarray(off, off + take));
      this.pendingBytes += take;
      off += take;
      if (this.pendingBytes < need) continue;
      const buf = Buffer.concat(this.pending, need);
      this.pending = [];
      this.pendingBytes = 0;
      this.crc = crc32(buf, this.crc);
      if (w.kind === 'header') this.header(buf);
      else this.entry(buf, w);
      if ((this.want as QfileToTar['want']).kind === 'done' && off < chunk.length) throw corrupt('data after the end marker');
    }
  }

  private header(h: Buffer): void {
    const namelen = h.readUInt32LE(0);
    if (namelen === 0) {
      // the end; the tar end (two zero blocks) for the reader, the answer for the sender
      this.want = { kind: 'done' };
      this.push(Buffer.alloc(2 * BLOCK));
      this.onEnd(this.crc);
      return;
    }
    if (namelen > MAX_NAME_BYTES) throw corrupt(`name of ${namelen} bytes (at most ${MAX_NAME_BYTES})`);
    const size = h.readBigUInt64LE(8);
    if (size > BigInt(Number.MAX_SAFE_INTEGER)) throw corrupt(`member of ${size} bytes`);
    this.want = { kind: 'name', len: namelen, mode: h.readUInt32LE(4), size: Number(size), mtime: h.readUInt32LE(24) };
  }

  private entry(nameBytes: Buffer, w: { mode: number; size: number; mtime: number }): void {
    if (nameBytes[nameBytes.length - 1] !== 0 || nameBytes.indexOf(0) !== nameBytes.length - 1) throw corrupt('a name that is not NUL-terminated or holds a NUL');
    const name = nameBytes.toString('utf8', 0, nameBytes.length - 1);
    const type = w.mode & S_IFMT;
    if (type === S_IFDIR) {
      // the directories of member names: nothing to pass on (the tar members carry their paths)
      if (w.size !== 0) throw corrupt(`directory ${JSON.stringify(name)} with ${w.size} bytes of content`);
      this.want = { kind: 'header' };
      return;
    }
    if (type !== S_IFREG) throw corrupt(`entry ${JSON.stringify(name)} of mode ${w.mode.toString(8)}: a Qubes backup holds regular files only`);
    // outerMemberHead refuses unsafe names (absolute, '..', too long) with ERR_UNSAFE_NAME
    this.push(outerMemberHead(name, w.size, { mtimeSec: w.mtime, mode: w.mode & 0o777 }));
    if (w.size === 0) {
      this.push(outerMemberTail(0));
      this.want = { kind: 'header' };
    } else this.want = { kind: 'content', left: w.size, size: w.size };
  }
}
