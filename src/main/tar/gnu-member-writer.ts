// Headers of a one-file inner archive as GNU tar 1.34 writes them for `tar -Pc --sparse` (its default
// "gnu" format): a regular file is one type-'0' header; a sparse file is one type-'S' header holding
// the first four entries of its data map, extension blocks of 21 more entries each, the file's real
// size, and always a final zero-length entry at the end of the file. The member's data
// are the map's runs, back to back. Qubes' own tar writer for volume exports uses this layout too, and
// every reader (GNU tar, Qubes, our single-member reader) understands it. Numbers that do not fit the
// octal fields (sizes and offsets of 8 GiB and more) are written in GNU base-256, as tar does.
import { BLOCK, F, RECORD, roundUp, sealHeader, writeNumericAt, type Field } from './tar-header.js';

/** One run of data of the file, at `offset`. */
export interface DataRun {
  offset: number;
  length: number;
}

export interface MemberMeta {
  /** the member name (UTF-8, under 100 bytes: callers with longer names use GNU tar) */
  name: string;
  mode: number;
  uid: number;
  gid: number;
  uname: string;
  gname: string;
  mtimeSec: number;
  /** the file's (apparent) size */
  size: number;
}

const SPARSE_IN_HEADER = 4;
const SPARSE_IN_EXTENSION = 21;
const SPARSE_OFFSET = 386;
const EXT_ISEXTENDED = 504;
const ISEXTENDED = 482;
const REALSIZE = 483;
const GNU_MAGIC = 'ustar  \0';

/** Whether the name fits the header's name field (GNU tar would add a long-name member otherwise). */
export function fitsNameField(name: string): boolean {
  const n = Buffer.byteLength(name);
  return n > 0 && n < F.name[1] && !name.includes('\0');
}

function writeField(block: Uint8Array, field: Field, value: number): void {
  const [off, len] = F[field];
  writeNumericAt(block, off, len, value);
}

function writeText(block: Uint8Array, field: Field, text: string): void {
  const [off, len] = F[field];
  const bytes = Buffer.from(text, 'utf8');
  block.set(bytes.subarray(0, len), off);
}

/** The stored size of a member: the sum of its runs. */
export function storedBytes(runs: readonly DataRun[]): number {
  let n = 0;
  for (const r of runs) n += r.length;
  return n;
}

/**
 * The header block(s) of the member. `runs` = null: a regular file (type '0', all `size` bytes
 * stored); otherwise a sparse file (type 'S') whose stored data are these runs (in order, inside the
 * file, not overlapping).
 */
export function memberHeaders(meta: MemberMeta, runs: readonly DataRun[] | null): Uint8Array {
  if (!fitsNameField(meta.name)) throw new RangeError(`member name too long for one header: ${meta.name}`);
  const map = runs === null ? [] : [...runs];
  if (runs !== null) {
    let end = 0;
    for (const r of map) {
      if (r.offset < end || r.length <= 0 || r.offset + r.length > meta.size) throw new RangeError('bad data map');
      end = r.offset + r.length;
    }
    // GNU tar always closes the map with a zero-length run at the file's end
    map.push({ offset: meta.size, length: 0 });
  }
  const extensions = runs === null ? 0 : Math.max(0, Math.ceil((map.length - SPARSE_IN_HEADER) / SPARSE_IN_EXTENSION));
  const out = new Uint8Array(BLOCK * (1 + extensions));
  const h = out.subarray(0, BLOCK);
  writeText(h, 'name', meta.name);
  writeField(h, 'mode', meta.mode & 0o7777);
  writeField(h, 'uid', meta.uid);
  writeField(h, 'gid', meta.gid);
  writeField(h, 'size', runs === null ? meta.size : storedBytes(map));
  writeField(h, 'mtime', meta.mtimeSec);
  h[F.typeflag[0]] = (runs === null ? '0' : 'S').charCodeAt(0);
  for (let i = 0; i < GNU_MAGIC.length; i++) h[F.magic[0] + i] = GNU_MAGIC.charCodeAt(i);
  writeText(h, 'uname', meta.uname);
  writeText(h, 'gname', meta.gname);
  if (runs !== null) {
    const put = (block: Uint8Array, at: number, r: DataRun): void => {
      writeNumericAt(block, at, 12, r.offset);
      writeNumericAt(block, at + 12, 12, r.length);
    };
    map.slice(0, SPARSE_IN_HEADER).forEach((r, i) => put(h, SPARSE_OFFSET + i * 24, r));
    h[ISEXTENDED] = extensions > 0 ? 1 : 0;
    writeNumericAt(h, REALSIZE, 12, meta.size);
    for (let e = 0; e < extensions; e++) {
      const block = out.subarray(BLOCK * (1 + e), BLOCK * (2 + e));
      const first = SPARSE_IN_HEADER + e * SPARSE_IN_EXTENSION;
      map.slice(first, first + SPARSE_IN_EXTENSION).forEach((r, i) => put(block, i * 24, r));
      block[EXT_ISEXTENDED] = e < extensions - 1 ? 1 : 0;
    }
  }
  sealHeader(h);
  return out;
}

/**
 * What follows the member's data: the padding of the data to a block, the two zero blocks that end
 * the archive, and the padding of the whole to tar's 10240-byte record (as `tar -f -` writes it).
 * `archiveBytes` = headers + stored data.
 */
export function archiveTrailer(archiveBytes: number): Uint8Array {
  const padded = roundUp(archiveBytes, BLOCK);
  const total = roundUp(padded + 2 * BLOCK, RECORD);
  return new Uint8Array(total - archiveBytes);
}
