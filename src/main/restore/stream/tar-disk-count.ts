// How much disk `tar -x --sparse -k` (GNU tar 1.34) takes for an inner tar stream beyond its bytes.
//
// The VM size limit (size-limit.ts) counts the decoded bytes handed to tar, but tar can make far
// more disk than that of a hostile stream: an empty directory is one 512-byte header and a 4 KiB
// block, a sparse member of 1-byte runs far apart a block per ~24 bytes of map, a deep name a
// directory per two bytes of it. TarDiskCount walks the very bytes tar gets and reports, per entry,
// the disk it will take beyond the archive bytes the entry occupies, before those bytes go on.
//
// It follows the stream as tar 1.34 reads it, not as a well-formed archive is meant to be: its
// lenient numbers (a leading NUL, base-256, base-64), a bad header skipped one block at a time, any
// zero block ending the archive, link sizes ignored, directory data never skipped, pax `size`,
// GNU.sparse.* keys and global headers applied to every member, the sparse maps of old GNU, star
// and pax 0.0/0.1/1.x read until they end (into the next headers if they claim more data than the
// member holds). Where tar's reading depends on what the walker cannot see (a link or a directory
// with data is read on when extracted and skipped when the name is not extracted; a sparse map
// that claims more data than the member likewise), the walk forks and follows both: counting both
// only ever counts more, and the paths meet again (merged) once they are at the same point.
//
// Estimates per entry, for an ext4-like file system of `block`-sized blocks: a directory one block,
// a file its data in blocks, a sparse file the blocks its runs touch (each once), a symbolic link
// of 60 bytes or more one block (no hard link takes any); files of many extents their extent tree
// blocks; every created name its directory entry (twice its size: hashed directories run half
// full) and every parent directory it implies that the stream has not made before one block. The
// estimate is set against the entry's headers (extension headers, header, sparse map) and, for a
// file, its data; for a sparse file against its runs' bytes at the worst point of its map. Never
// against what tar merely skips: a stream may stop before that comes. Only the excess is reported.
// A stream cut inside a file may still take up to a block more than counted (its last block).
//
// tar 1.34 specifics: a pax 1.0 map is not checked against the file size (later tars refuse such
// a map, then skip the member from where they stopped; only a hostile map can tell the two apart).
import { BLOCK, GNU_EXT_ISEXTENDED_OFFSET, GNU_ISEXTENDED_OFFSET } from '../../tar/tar-header.js';
import { QvmBackupError } from '../../errors.js';
import type { SizeCounter } from './size-limit.js';

/** pax extended data kept to decode again under a later global header (tar keeps all of it). */
const MAX_RAW_PAX = 1024 * 1024;
/** Bytes of a member or link name kept: tar cannot create a path longer than PATH_MAX anyway. */
const MAX_NAME = 4096;
/** Paths followed at once; past that the walk stops forking and says it may count short. */
const MAX_WALKS = 8;
/** Directories remembered as made (hashes); past that every implied parent is counted as new. */
const MAX_DIRS = 1 << 20;

const OFF_MAX = 2n ** 63n - 1n;
const SIZE_MAX = 2n ** 64n - 1n;
const UINT_MAX = 2n ** 32n - 1n;
const OFF_MAX_N = 2 ** 63;

/** Callback for one entry's disk beyond its archive bytes (> 0). May throw to stop the stream. */
export type OnExtra = (bytes: number, entryName: string) => void;

export class TarDiskCount {
  readonly #ctx: Ctx;
  #walks: Walk[];

  /** `block`: the file system block the estimates round to. */
  constructor(onExtra: OnExtra, block = 4096) {
    this.#ctx = new Ctx(onExtra, block);
    this.#walks = [new Walk(this.#ctx, new PaxState(block), 0, 0, 0)];
    this.#ctx.fork = (from, skip, at) => {
      if (this.#walks.length >= MAX_WALKS) {
        this.#ctx.lost = true;
        return;
      }
      this.#walks.push(new Walk(this.#ctx, from.globals, from.offset, skip, at));
    };
  }

  /**
   * Feed the next bytes of the tar stream (any chunking). onExtra is called for every entry whose
   * header (and sparse map) ends within them, before this returns; if it throws, the walk is not
   * to be used again.
   */
  push(bytes: Uint8Array): void {
    if (bytes.length === 0) return;
    const walks = this.#walks;
    // a fork made while a walk reads these bytes is appended, and fed the rest of them here
    for (let i = 0; i < walks.length; i++) walks[i]!.feed(bytes);
    if (walks.length > 1) this.#merge();
  }

  /** tar has reached the end of the archive on every path: nothing after it is extracted. */
  get ended(): boolean {
    return this.#walks.every((w) => w.ended);
  }

  /** Some path of a hostile stream may be counted short (too many forks, or a pax header over
   *  1 MiB decoded again under a later global header). Never so for what GNU tar writes. */
  get lost(): boolean {
    return this.#ctx.lost;
  }

  /** Drop ended walks and walks that reached the same state as another. */
  #merge(): void {
    const seen = new Set<string>();
    const keep: Walk[] = [];
    for (const w of this.#walks) {
      if (w.ended) continue;
      const key = w.mergeKey();
      if (key !== null) {
        if (seen.has(key)) continue;
        seen.add(key);
      }
      keep.push(w);
    }
    this.#walks = keep.length > 0 ? keep : [this.#walks[0]!];
  }
}

/** What all walks share: the report, the block size and the directories made so far. */
class Ctx {
  lost = false;
  fork: (from: Walk, skip: number, at: number) => void = () => {};
  // directories made, by path hash: any path made on any walk is counted once, which still counts
  // every directory tar makes on the path it takes
  readonly #dirs = new Set<number>();
  readonly #seed1 = (Math.random() * 0x100000000) >>> 0;
  readonly #seed2 = (Math.random() * 0x100000000) >>> 0;
  readonly #comps = new Int32Array(2 * (MAX_NAME / 2 + 2));

  constructor(
    readonly onExtra: OnExtra,
    readonly block: number,
  ) {}

  /** Blocks of `bytes` of file data, with its extent tree (an extent maps at most 32768 blocks). */
  fileBytes(bytes: number): number {
    const blocks = Math.ceil(bytes / this.block);
    return (blocks + treeBlocks(Math.ceil(blocks / 32768), this.block)) * this.block;
  }

  #dirent(len: number): number {
    return 2 * (Math.ceil((8 + Math.min(len, 255)) / 4) * 4);
  }

  /**
   * The directory entries and directories that creating `name` makes (a directory itself when
   * `dir`); -1 when tar creates nothing for it (an empty name, or `..` in it: tar skips those).
   */
  place(name: Name, dir: boolean): number {
    const b = name.bytes;
    const kept = Math.min(name.len, MAX_NAME);
    // components (start, end) without empty ones and `.`
    const comps = this.#comps;
    let m = 0;
    let i = 0;
    while (i < kept) {
      while (i < kept && b[i] === 0x2f) i++;
      if (i >= kept) break;
      const s = i;
      while (i < kept && b[i] !== 0x2f) i++;
      if (i - s === 1 && b[s] === 0x2e) continue;
      if (i - s === 2 && b[s] === 0x2e && b[s + 1] === 0x2e) return -1;
      comps[2 * m] = s;
      comps[2 * m + 1] = i;
      m++;
    }
    if (name.len === 0) return -1;
    // a name past PATH_MAX: only its leading directories can be made, and not the entry
    const whole = name.len <= kept;
    if (!whole && m > 0 && comps[2 * m - 1] === kept) m--;
    let cost = 0;
    let h1 = this.#seed1;
    let h2 = this.#seed2;
    for (let k = 0; k < m; k++) {
      const s = comps[2 * k]!;
      const e = comps[2 * k + 1]!;
      for (let j = s; j < e; j++) {
        h1 = Math.imul(h1 ^ b[j]!, 0x01000193);
        h2 = Math.imul(h2 ^ b[j]!, 0x5bd1e995);
      }
      h1 = Math.imul(h1 ^ 0x2f, 0x01000193);
      h2 = Math.imul(h2 ^ 0x2f, 0x5bd1e995);
      const last = k === m - 1 && whole;
      if (!last || dir) {
        const key = (h1 >>> 0) * 0x200000 + (h2 >>> 11);
        if (!this.#dirs.has(key)) {
          cost += this.block + this.#dirent(e - s);
          if (this.#dirs.size < MAX_DIRS) this.#dirs.add(key);
        }
      } else cost += this.#dirent(e - s);
    }
    return cost;
  }
}

/** A member or link name as tar resolved it: up to MAX_NAME bytes kept of `len`. */
interface Name {
  bytes: Uint8Array;
  len: number;
  trailingSlash: boolean;
}

function nameText(n: Name): string {
  const end = Math.min(n.len, MAX_NAME, n.bytes.length);
  const s = n.bytes instanceof Buffer ? n.bytes.toString('utf8', 0, end) : Buffer.from(n.bytes.buffer, n.bytes.byteOffset, end).toString('utf8');
  return n.len > MAX_NAME ? `${s}…` : s;
}

/** A C string arriving in pieces (a GNU long name or link, a pax path): bytes before the first NUL. */
class CString {
  bytes = new Uint8Array(128);
  len = 0;
  #last = 0;
  #nonSlash = false;
  #done = false;

  push(b: Uint8Array, s: number, e: number): void {
    for (let i = s; i < e && !this.#done; i++) this.byte(b[i]!);
  }

  byte(c: number): void {
    if (this.#done) return;
    if (c === 0) {
      this.#done = true;
      return;
    }
    if (this.len < MAX_NAME) {
      if (this.len === this.bytes.length) {
        const a = new Uint8Array(Math.min(MAX_NAME, this.bytes.length * 4));
        a.set(this.bytes);
        this.bytes = a;
      }
      this.bytes[this.len] = c;
    }
    this.len++;
    this.#last = c;
    if (c !== 0x2f) this.#nonSlash = true;
  }

  name(): Name {
    return { bytes: this.bytes, len: this.len, trailingSlash: this.#last === 0x2f && this.#nonSlash };
  }
}

/** Significant digits of a decimal number arriving byte by byte (tar's strtoumax, exact past 2^53). */
class Digits {
  #sig = '';
  #long = false;
  count = 0;

  reset(): void {
    this.#sig = '';
    this.#long = false;
    this.count = 0;
  }

  digit(c: number): void {
    this.count++;
    if (this.#sig === '' && c === 0x30) return;
    if (this.#sig.length >= 21) this.#long = true;
    else this.#sig += String.fromCharCode(c);
  }

  /** The value, or null past `max`. */
  value(max: bigint): number | null {
    if (this.#long) return null;
    if (this.#sig.length > 15 && BigInt(this.#sig) > max) return null;
    const v = this.#sig === '' ? 0 : Number(this.#sig);
    return v > Number(max) ? null : v;
  }
}

/** tar's decode_num on a C string: digits up to the NUL (or the end), at least one. */
class DecNum {
  readonly d = new Digits();
  #state = 0; // 0 nothing yet, 1 digits, 2 ended by NUL, 3 malformed

  reset(): void {
    this.d.reset();
    this.#state = 0;
  }

  byte(c: number): void {
    if (this.#state >= 2) return;
    if (c >= 0x30 && c <= 0x39) {
      this.#state = 1;
      this.d.digit(c);
    } else this.#state = c === 0 && this.#state === 1 ? 2 : 3;
  }

  value(max: bigint): number | null {
    return this.#state === 1 || this.#state === 2 ? this.d.value(max) : null;
  }
}

/** ext4 keeps 4 extents in the inode; more take leaf (and index) blocks, full when written in order. */
function treeBlocks(extents: number, block: number): number {
  const per = Math.max(1, Math.floor((block - 12) / 12));
  let n = extents;
  let t = 0;
  while (n > 4) {
    n = Math.ceil(n / per);
    t += n;
  }
  return t;
}

/**
 * A sparse map as its runs are added, in map order, without keeping them: the blocks they touch
 * (a run's blocks less those of the run before it: exact for a map in order, more otherwise), what
 * tar reads of the archive for them (each run from a 512-byte block boundary), and the most the
 * disk of the runs so far exceeds their archive bytes. That, not the whole map's excess, is what
 * counts: a stream cut after a bomb of tiny runs, before runs that pack many archive blocks into
 * one disk block, would otherwise have been counted against bytes that never came.
 */
class Sparse {
  n = 0;
  blocks = 0;
  extents = 0;
  dataBlocks = 0;
  worst = 0;
  #prevA = 0;
  #prevB = 0;

  constructor(readonly block: number) {}

  clone(): Sparse {
    const s = new Sparse(this.block);
    s.n = this.n;
    s.blocks = this.blocks;
    s.extents = this.extents;
    s.dataBlocks = this.dataBlocks;
    s.worst = this.worst;
    s.#prevA = this.#prevA;
    s.#prevB = this.#prevB;
    return s;
  }

  add(offset: number, length: number): void {
    this.n++;
    this.dataBlocks += Math.ceil(length / BLOCK);
    if (length <= 0) return;
    const a = Math.floor(offset / this.block);
    // at least one block: offsets past 2^53 lose the low bits
    const b = Math.max(a + 1, Math.ceil((offset + length) / this.block));
    let count = b - a;
    const lo = Math.max(a, this.#prevA);
    const hi = Math.min(b, this.#prevB);
    if (hi > lo) count -= hi - lo;
    this.blocks += count;
    this.extents += Math.ceil((b - a) / 32768);
    this.#prevA = a;
    this.#prevB = b;
    const over = (this.blocks + treeBlocks(this.extents, this.block)) * this.block - this.dataBlocks * BLOCK;
    if (over > this.worst) this.worst = over;
  }
}

let stateIds = 0;

/** What pax records set for a member (tar's decoders of the keys that matter for disk and framing). */
class PaxState {
  readonly id = ++stateIds;
  path: Name | undefined;
  sparseNameDone = false;
  linkLen: number | undefined;
  size: number | undefined;
  realSize: number | undefined;
  major = 0;
  map: Sparse;
  /** sparse_map_size: how many GNU.sparse.offset/numbytes pairs (0.0) may still be added */
  cap = 0;
  pendingOffset = 0;

  constructor(readonly block: number) {
    this.map = new Sparse(block);
  }

  clone(): PaxState {
    const s = new PaxState(this.block);
    s.path = this.path;
    s.sparseNameDone = this.sparseNameDone;
    s.linkLen = this.linkLen;
    s.size = this.size;
    s.realSize = this.realSize;
    s.major = this.major;
    s.map = this.map.clone();
    s.cap = this.cap;
    s.pendingOffset = this.pendingOffset;
    return s;
  }
}

const K_OTHER = 0;
const K_SIZE = 1;
const K_PATH = 2;
const K_SNAME = 3;
const K_LINK = 4;
const K_REAL = 5;
const K_MAJOR = 6;
const K_NUMBLOCKS = 7;
const K_OFFSET = 8;
const K_NUMBYTES = 9;
const K_MAP = 10;
const KEYS = new Map<string, number>([
  ['size', K_SIZE],
  ['path', K_PATH],
  ['GNU.sparse.name', K_SNAME],
  ['linkpath', K_LINK],
  ['GNU.sparse.size', K_REAL],
  ['GNU.sparse.realsize', K_REAL],
  ['GNU.sparse.major', K_MAJOR],
  ['GNU.sparse.numblocks', K_NUMBLOCKS],
  ['GNU.sparse.offset', K_OFFSET],
  ['GNU.sparse.numbytes', K_NUMBYTES],
  ['GNU.sparse.map', K_MAP],
]);

const P_LEAD = 0;
const P_LEN = 1;
const P_BLANK = 2;
const P_KEY = 3;
const P_VALUE = 4;
const P_DEAD = 5;

/** GNU.sparse.map (0.1) as tar's sparse_map_decoder reads it: off,len,off,len,... into a new map. */
class MapValue {
  readonly acc: Sparse;
  cap: number;
  #d = new Digits();
  #inNum = false;
  #isOffset = true;
  #offset = 0;
  #stopped = false;

  constructor(block: number, cap: number) {
    this.acc = new Sparse(block);
    this.cap = cap;
  }

  byte(c: number): void {
    if (this.#stopped) return;
    if (c >= 0x30 && c <= 0x39) {
      this.#d.digit(c);
      this.#inNum = true;
      return;
    }
    // a delimiter: the number ends (none before it is malformed); only ',' goes on
    if (!this.#inNum || !this.#number()) {
      this.#stopped = true;
      return;
    }
    if (c !== 0x2c) this.#stopped = true;
  }

  end(): void {
    if (!this.#stopped && this.#inNum) this.#number();
    this.#stopped = true;
  }

  #number(): boolean {
    const v = this.#d.value(OFF_MAX);
    this.#d.reset();
    this.#inNum = false;
    if (v === null) return false;
    if (this.#isOffset) this.#offset = v;
    else {
      if (this.acc.n === this.cap) this.cap = this.cap === 0 ? 8 : this.cap + (this.cap >> 1) + 1;
      this.acc.add(this.#offset, v);
    }
    this.#isOffset = !this.#isOffset;
    return true;
  }
}

/**
 * pax records (`<len> <key>=<value>\n`) arriving in pieces, applied to `st` one by one as tar's
 * decode_record does: a malformed record ends the decoding, the records before it stay. Only the
 * values of the keys that matter are looked at, and none is kept whole.
 */
class PaxParser {
  #at = 0;
  #ph = P_LEAD;
  #recStart = 0;
  #len = 0;
  #next = 0;
  #key = new Uint8Array(24);
  #keyLen = 0;
  #kind = K_OTHER;
  #num = new DecNum();
  #name: CString | null = null;
  #linkLen = 0;
  #linkDone = false;
  #map: MapValue | null = null;

  st: PaxState;
  size: number;

  constructor(st: PaxState, size: number) {
    this.st = st;
    this.size = size;
  }

  /** Start on another extended header's data (a walk reads one at a time). */
  reset(st: PaxState, size: number): void {
    this.st = st;
    this.size = size;
    this.#at = 0;
    this.#ph = P_LEAD;
  }

  feed(b: Uint8Array, s: number, e: number): void {
    let i = s;
    while (i < e) {
      const ph = this.#ph;
      if (ph === P_DEAD) return;
      if (ph === P_VALUE && this.#kind === K_OTHER) {
        // skip to the record's last byte
        const n = Math.min(e - i, this.#next - 1 - this.#at);
        i += n;
        this.#at += n;
        if (i >= e) return;
      }
      const c = b[i]!;
      this.#byte(c);
      i++;
      this.#at++;
    }
  }

  #byte(c: number): void {
    const at = this.#at;
    switch (this.#ph) {
      case P_LEAD:
        if (c === 0x20 || c === 0x09) return;
        if (c < 0x30 || c > 0x39) {
          this.#ph = P_DEAD;
          return;
        }
        this.#recStart = at;
        this.#len = c - 0x30;
        this.#ph = P_LEN;
        return;
      case P_LEN:
        if (c >= 0x30 && c <= 0x39) {
          if (this.#len <= Number.MAX_SAFE_INTEGER / 10) this.#len = this.#len * 10 + (c - 0x30);
          else this.#len = Infinity;
          return;
        }
        // the record must fit in what is left; a blank must follow the length
        if (this.#len > this.size - this.#recStart || (c !== 0x20 && c !== 0x09)) {
          this.#ph = P_DEAD;
          return;
        }
        this.#next = this.#recStart + this.#len;
        this.#ph = P_BLANK;
        return;
      case P_BLANK:
        if (at >= this.#next) {
          this.#ph = P_DEAD;
          return;
        }
        if (c === 0x20 || c === 0x09) return;
        this.#keyLen = 0;
        this.#ph = P_KEY;
        this.#keyByte(c, at);
        return;
      case P_KEY:
        this.#keyByte(c, at);
        return;
      case P_VALUE:
        if (at === this.#next - 1) {
          if (c === 0x0a) this.#apply();
          else {
            this.#ph = P_DEAD;
            return;
          }
          this.#ph = P_LEAD;
          return;
        }
        this.#valueByte(c);
        return;
      default:
        return;
    }
  }

  #keyByte(c: number, at: number): void {
    // strchr stops at a NUL; the '=' must come before the record's end, and not be its last byte
    if (c === 0 || at >= this.#next - 1) {
      this.#ph = P_DEAD;
      return;
    }
    if (c !== 0x3d) {
      if (this.#keyLen < this.#key.length) this.#key[this.#keyLen] = c;
      this.#keyLen++;
      return;
    }
    this.#kind = this.#keyKind();
    switch (this.#kind) {
      case K_PATH:
      case K_SNAME:
        this.#name = new CString();
        break;
      case K_LINK:
        this.#linkLen = 0;
        this.#linkDone = false;
        break;
      case K_MAP:
        this.#map = new MapValue(this.st.block, this.st.cap);
        break;
      default:
        this.#num.reset();
    }
    this.#ph = P_VALUE;
  }

  #keyKind(): number {
    const n = this.#keyLen;
    const k = this.#key;
    // every key that matters starts with s, p, l or G and is 4 to 20 bytes long
    if (n < 4 || n > 20 || (k[0] !== 0x73 && k[0] !== 0x70 && k[0] !== 0x6c && k[0] !== 0x47)) return K_OTHER;
    let name = '';
    for (let i = 0; i < n; i++) name += String.fromCharCode(k[i]!);
    return KEYS.get(name) ?? K_OTHER;
  }

  #valueByte(c: number): void {
    switch (this.#kind) {
      case K_PATH:
      case K_SNAME:
        this.#name!.byte(c);
        return;
      case K_LINK:
        if (c === 0) this.#linkDone = true;
        else if (!this.#linkDone) this.#linkLen++;
        return;
      case K_MAP:
        if (c === 0) this.#map!.end();
        else this.#map!.byte(c);
        return;
      default:
        this.#num.byte(c);
    }
  }

  #apply(): void {
    const st = this.st;
    switch (this.#kind) {
      case K_PATH:
        if (!st.sparseNameDone) st.path = this.#name!.name();
        return;
      case K_SNAME:
        st.sparseNameDone = true;
        st.path = this.#name!.name();
        return;
      case K_LINK:
        st.linkLen = this.#linkLen;
        return;
      case K_MAP: {
        const m = this.#map!;
        m.end();
        st.map = m.acc;
        st.cap = m.cap;
        st.pendingOffset = 0;
        return;
      }
      case K_OTHER:
        return;
      default:
        break;
    }
    const kind = this.#kind;
    const v = this.#num.value(kind === K_NUMBLOCKS ? SIZE_MAX : kind === K_MAJOR ? UINT_MAX : OFF_MAX);
    if (v === null) return;
    if (kind === K_SIZE) st.size = v;
    else if (kind === K_REAL) st.realSize = v;
    else if (kind === K_MAJOR) st.major = v;
    else if (kind === K_NUMBLOCKS) {
      st.map = new Sparse(st.block);
      st.cap = v;
      st.pendingOffset = 0;
    } else if (st.map.n < st.cap) {
      if (kind === K_OFFSET) st.pendingOffset = v;
      else {
        st.map.add(st.pendingOffset, v);
        st.pendingOffset = 0;
      }
    }
  }
}

const isSpace = (c: number): boolean => c === 0x20 || (c >= 0x09 && c <= 0x0d);
const isOctal = (c: number): boolean => c >= 0x30 && c <= 0x37;
const B64 = new Int8Array(256).fill(-1);
for (let i = 0; i < 64; i++) B64['ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'.charCodeAt(i)] = i;

/**
 * A non-negative header number as tar's from_header reads it, or -1 where tar fails: one leading
 * NUL skipped, then blanks, octal digits, or (unless `octalOnly`) base-64 after '+' and base-256
 * after 0x80; then only NUL or a blank. (parseNumeric in tar-header.ts is stricter than tar.)
 */
function fromHeader(b: Uint8Array, off: number, len: number, octalOnly: boolean): number {
  const lim = off + len;
  let i = off;
  if (b[i] === 0) i++;
  for (;;) {
    if (i === lim) return -1;
    if (!isSpace(b[i]!)) break;
    i++;
  }
  let v = 0;
  const c = b[i]!;
  if (isOctal(c)) {
    while (i < lim && isOctal(b[i]!)) v = v * 8 + (b[i++]! - 0x30);
  } else if (octalOnly) {
    // no other form
  } else if (c === 0x2b || c === 0x2d) {
    const negative = c === 0x2d;
    i++;
    while (i < lim && B64[b[i]!]! >= 0) {
      v = v * 64 + B64[b[i]!]!;
      if (v >= 2 ** 64) return -1;
      i++;
    }
    if (negative && v !== 0) return -1;
  } else if (i <= lim - 2 && (c === 0x80 || c === 0xff)) {
    if (c === 0xff) return -1; // negative
    for (i++; i < lim; i++) v = v * 256 + b[i]!;
  }
  if (i !== lim && b[i] !== 0 && !isSpace(b[i]!)) return -1;
  return v >= OFF_MAX_N ? -1 : v;
}

const H_OK = 0;
const H_ZERO = 1;
const H_BAD = 2;

/** tar_checksum: a zero block, a good header (unsigned or signed sum), or a bad one. */
function checksum(b: Uint8Array): number {
  let u = 0;
  if ((b.byteOffset & 3) === 0) {
    // four bytes at a time, in two 16-bit lanes (128 words cannot carry out of a lane)
    const w = new Uint32Array(b.buffer, b.byteOffset, BLOCK / 4);
    let lanes = 0;
    for (let i = 0; i < BLOCK / 4; i++) {
      const x = w[i]!;
      lanes += (x & 0x00ff00ff) + ((x >>> 8) & 0x00ff00ff);
    }
    u = (lanes & 0xffff) + (lanes >>> 16);
  } else for (let i = 0; i < BLOCK; i++) u += b[i]!;
  if (u === 0) return H_ZERO;
  const rec = fromHeader(b, 148, 8, true);
  if (rec < 0) return H_BAD;
  for (let i = 148; i < 156; i++) u -= b[i]!;
  u += 256;
  if (rec === u) return H_OK;
  // the signed sum (old Sun tars): 256 less for every byte with the high bit, outside the field
  let s = u;
  for (let i = 0; i < BLOCK; i++) if (b[i]! > 127 && (i < 148 || i >= 156)) s -= 256;
  return rec === s ? H_OK : H_BAD;
}

function fieldLen(b: Uint8Array, off: number, len: number): number {
  let i = 0;
  while (i < len && b[off + i] !== 0) i++;
  return i;
}

const ustarMagic = (b: Uint8Array): boolean => b[257] === 0x75 && b[258] === 0x73 && b[259] === 0x74 && b[260] === 0x61 && b[261] === 0x72 && b[262] === 0;
const gnuMagic = (b: Uint8Array): boolean =>
  b[257] === 0x75 && b[258] === 0x73 && b[259] === 0x74 && b[260] === 0x61 && b[261] === 0x72 && b[262] === 0x20 && b[263] === 0x20 && b[264] === 0;

/** The member name of the header itself: `prefix/name` when the magic is POSIX ustar. */
function headerName(b: Uint8Array): Name {
  const n = fieldLen(b, 0, 100);
  const p = ustarMagic(b) && b[345] !== 0 ? fieldLen(b, 345, 155) : 0;
  const len = p > 0 ? p + 1 + n : n;
  const bytes = Buffer.allocUnsafe(len);
  let j = 0;
  if (p > 0) {
    for (let i = 345; i < 345 + p; i++) bytes[j++] = b[i]!;
    bytes[j++] = 0x2f;
  }
  let nonSlash = false;
  for (let i = 0; i < n; i++) {
    const c = b[i]!;
    bytes[j++] = c;
    if (c !== 0x2f) nonSlash = true;
  }
  return { bytes, len, trailingSlash: len > 0 && bytes[len - 1] === 0x2f && (nonSlash || p > 0) };
}

const roundUpPos = (n: number): number => (n > 0 ? Math.ceil(n / BLOCK) * BLOCK : 0);

const S_OK = 0;
const S_FINISH = 1;
const S_FAIL = 2;

/** A sparse member between its header and its data (extension blocks, or a pax 1.0 map). */
interface SparseMember {
  fmt: 'gnu' | 'star' | 'pax0' | 'pax1';
  name: Name;
  entryStart: number;
  archive: number;
  /** the file size a run may not pass (old GNU and star maps) */
  real: number;
  acc: Sparse;
  /** bytes before the runs that tar counts as member data (star extension blocks, the 1.0 map) */
  dumpedPre: number;
  rc: number;
  // pax 1.0 map lines
  lineLen: number;
  line: DecNum;
  count: number;
  haveOffset: boolean;
  offset: number;
}

const W_HEADER = 0;
const W_SKIP = 1;
const W_EXT = 2;
const W_SPARSE_EXT = 3;
const W_MAP = 4;
const W_END = 5;

/** One way of reading the stream: tar's, or (after a fork) one tar may take. */
class Walk {
  kind = W_HEADER;
  /** stream offset of the next byte */
  offset: number;
  #left: number;
  #from: number;
  readonly #buf = new Uint8Array(BLOCK);
  #fill = 0;
  #pendingFork = -1;
  // extension headers read for the next member
  #entryStart = -1;
  #extType = 0;
  #extPad = 0;
  #long: CString | null = null;
  #link: CString | null = null;
  #x: PaxState | null = null;
  #xParser: PaxParser | null = null;
  #xRaw: Uint8Array | null = null;
  #rawBuf = new Uint8Array(1024);
  #xRawFill = 0;
  #g: PaxParser | null = null;
  #sm: SparseMember | null = null;

  constructor(
    readonly ctx: Ctx,
    public globals: PaxState,
    offset: number,
    skip: number,
    from: number,
  ) {
    this.offset = offset;
    this.#left = skip;
    this.#from = from;
    if (skip > 0) this.kind = W_SKIP;
  }

  get ended(): boolean {
    return this.kind === W_END;
  }

  /** Equal keys: the walks read all further bytes the same way. null while anything is pending. */
  mergeKey(): string | null {
    if ((this.kind !== W_HEADER && this.kind !== W_SKIP) || this.#entryStart >= 0) return null;
    return `${this.kind}:${this.#left}:${this.#fill}:${this.globals.id}`;
  }

  feed(chunk: Uint8Array): void {
    let p = this.#from;
    this.#from = 0;
    const n = chunk.length;
    while (p < n) {
      switch (this.kind) {
        case W_SKIP: {
          const k = Math.min(this.#left, n - p);
          p += k;
          this.offset += k;
          this.#left -= k;
          if (this.#left === 0) this.kind = W_HEADER;
          break;
        }
        case W_EXT: {
          if (this.#left > 0) {
            const k = Math.min(this.#left, n - p);
            this.#extData(chunk, p, p + k);
            p += k;
            this.offset += k;
            this.#left -= k;
          } else {
            const k = Math.min(this.#extPad, n - p);
            p += k;
            this.offset += k;
            this.#extPad -= k;
          }
          if (this.#left === 0 && this.#extPad === 0) this.#extDone();
          break;
        }
        case W_END:
          return;
        default: {
          // header, sparse extension and map blocks: whole blocks, in place when the chunk has one
          let blk: Uint8Array;
          if (this.#fill === 0 && n - p >= BLOCK) {
            blk = chunk.subarray(p, p + BLOCK);
            p += BLOCK;
            this.offset += BLOCK;
          } else {
            const k = Math.min(BLOCK - this.#fill, n - p);
            this.#buf.set(chunk.subarray(p, p + k), this.#fill);
            this.#fill += k;
            p += k;
            this.offset += k;
            if (this.#fill < BLOCK) break;
            this.#fill = 0;
            blk = this.#buf;
          }
          if (this.kind === W_HEADER) this.#header(blk);
          else if (this.kind === W_SPARSE_EXT) this.#sparseExtBlock(blk);
          else this.#mapBlock(blk);
          if (this.#pendingFork >= 0) {
            this.ctx.fork(this, this.#pendingFork, p);
            this.#pendingFork = -1;
          }
        }
      }
    }
  }

  #dropPending(): void {
    this.#entryStart = -1;
    this.#long = this.#link = null;
    this.#x = null;
    this.#xRaw = null;
  }

  /** A header block: `this.offset` is just past it. */
  #header(b: Uint8Array): void {
    const at = this.offset - BLOCK;
    const cs = checksum(b);
    if (cs === H_ZERO) {
      // tar ends at the first zero block (without --ignore-zeros)
      this.kind = W_END;
      return;
    }
    if (cs === H_BAD) {
      // tar skips it and tries the next block as a header; what was read for it is dropped
      this.#dropPending();
      return;
    }
    const type = b[156]!;
    let size = 0;
    if (type !== 0x31) {
      // a hard link's size is not even read ("links 0 size on tape")
      size = fromHeader(b, 124, 12, false);
      if (size < 0) {
        this.#dropPending();
        return;
      }
    }
    if (this.#entryStart < 0) this.#entryStart = at;
    if (type === 0x4c || type === 0x4b || type === 0x78 || type === 0x58 || type === 0x67) this.#startExt(type, size);
    else this.#member(b, type, size);
  }

  #startExt(type: number, size: number): void {
    this.#extType = type;
    this.#left = size;
    this.#extPad = roundUpPos(size) - size;
    if (type === 0x4c) this.#long = new CString();
    else if (type === 0x4b) this.#link = new CString();
    else if (type === 0x67) this.#g = new PaxParser(new PaxState(this.ctx.block), size);
    else {
      // the last 'x' before a member is its extended header (tar reads each anew)
      this.#x = this.globals.clone();
      if (this.#xParser === null) this.#xParser = new PaxParser(this.#x, size);
      else this.#xParser.reset(this.#x, size);
      // kept to decode again should a global header come before the member
      this.#xRaw = size <= MAX_RAW_PAX ? this.#rawBuffer(size) : null;
      this.#xRawFill = 0;
    }
    this.kind = W_EXT;
    if (size === 0) this.#extDone();
  }

  #rawBuffer(size: number): Uint8Array {
    if (this.#rawBuf.length < size) this.#rawBuf = new Uint8Array(Math.max(size, 2 * this.#rawBuf.length));
    return this.#rawBuf.subarray(0, size);
  }

  #extData(b: Uint8Array, s: number, e: number): void {
    switch (this.#extType) {
      case 0x4c:
        this.#long!.push(b, s, e);
        return;
      case 0x4b:
        this.#link!.push(b, s, e);
        return;
      case 0x67:
        this.#g!.feed(b, s, e);
        return;
      default:
        this.#xParser!.feed(b, s, e);
        if (this.#xRaw !== null) {
          this.#xRaw.set(b.subarray(s, e), this.#xRawFill);
          this.#xRawFill += e - s;
        }
    }
  }

  #extDone(): void {
    this.kind = W_HEADER;
    if (this.#extType !== 0x67) return;
    // a global header: its records apply to every later member, before the member's own
    this.globals = this.#g!.st;
    this.#g = null;
    if (this.#x === null) return;
    if (this.#xRaw === null) {
      this.ctx.lost = true;
      return;
    }
    this.#x = this.globals.clone();
    const p = new PaxParser(this.#x, this.#xRaw.length);
    p.feed(this.#xRaw, 0, this.#xRaw.length);
  }

  #member(b: Uint8Array, type: number, size: number): void {
    const st = this.#x ?? this.globals;
    const posix = this.#x !== null;
    const name = st.path ?? this.#long?.name() ?? headerName(b);
    const linkLen = st.linkLen ?? this.#link?.len ?? fieldLen(b, 157, 100);
    const entryStart = this.#entryStart;
    this.#dropPending();
    // tar: archive_file_size is the pax size or the header's, st_size then the sparse real size
    const paxArchive = st.size ?? size;
    const dataSize = st.realSize ?? paxArchive;
    const ustar = ustarMagic(b);
    const star = ustar && b[475] === 0 && isOctal(b[476]!) && b[487] === 0x20 && isOctal(b[488]!) && b[499] === 0x20;
    if (type === 0x53 && ((ustar && star) || gnuMagic(b))) return this.#oldSparse(b, star, name, entryStart, dataSize);
    if (ustar && !star && posix && (st.map.n > 0 || st.major > 0)) {
      const sm = this.#sparseMember(st.major > 0 ? 'pax1' : 'pax0', name, entryStart, paxArchive, dataSize);
      if (sm.fmt === 'pax0') {
        sm.acc = st.map;
        return this.#sparseDone(sm);
      }
      this.#sm = sm;
      this.kind = W_MAP;
      return;
    }
    const ctx = this.ctx;
    const data = roundUpPos(dataSize);
    // data read when extracted, and when skipped (a name not extracted, `..` in it)
    let read = data;
    let skipped = data;
    // the archive bytes the disk is set against: the headers, and a file's data as it is written
    let against = this.offset - entryStart;
    let d: number;
    switch (type) {
      case 0x35: // directory: its data is never skipped, read as headers
        read = skipped = 0;
        d = ctx.place(name, true);
        break;
      case 0x31:
      case 0x32:
      case 0x33:
      case 0x34:
      case 0x36:
        read = 0;
        d = ctx.place(name, false);
        if (type === 0x32 && linkLen >= 60 && d >= 0) d += ctx.block; // no fast symlink
        break;
      case 0x56: // volume label: skipped
        d = 0;
        break;
      case 0x44: // GNU dumpdir: a directory, its data skipped
        d = ctx.place(name, true);
        break;
      case 0x30:
      case 0x00:
      case 0x37:
        if (name.trailingSlash) {
          // made a directory, its data then read as headers
          read = 0;
          d = ctx.place(name, true);
          break;
        }
        d = ctx.place(name, false);
        if (d >= 0) d += ctx.fileBytes(dataSize);
        against += data;
        break;
      default:
        // 'M' continuation, non-sparse 'S', unknown types (tar extracts them as files)
        d = ctx.place(name, false);
        if (d >= 0) d += ctx.fileBytes(dataSize);
        against += data;
    }
    this.#report(d, against, name);
    this.#left = read;
    this.kind = read > 0 ? W_SKIP : W_HEADER;
    if (skipped !== read) this.#pendingFork = skipped;
  }

  #sparseMember(fmt: SparseMember['fmt'], name: Name, entryStart: number, archive: number, real: number): SparseMember {
    return {
      fmt,
      name,
      entryStart,
      archive,
      real,
      acc: new Sparse(this.ctx.block),
      dumpedPre: 0,
      rc: S_OK,
      lineLen: 0,
      line: new DecNum(),
      count: -1,
      haveOffset: false,
      offset: 0,
    };
  }

  /** Old GNU ('S', map in the header, extension blocks) and star sparse headers. */
  #oldSparse(b: Uint8Array, star: boolean, name: Name, entryStart: number, archive: number): void {
    const realField = fromHeader(b, star ? 452 : 483, 12, false);
    const sm = this.#sparseMember(star ? 'star' : 'gnu', name, entryStart, archive, Math.max(0, realField));
    let ext: boolean;
    if (!star || (b[345] === 0 && b[356 + 10] !== 0)) {
      const at = star ? 356 : 386;
      for (let i = 0; i < 4 && sm.rc === S_OK; i++) sm.rc = this.#addOld(sm, b, at + i * 24);
      ext = b[star ? 355 : GNU_ISEXTENDED_OFFSET] !== 0;
    } else ext = true; // new star: the whole map is in extension blocks
    if (sm.rc === S_OK && ext) {
      this.#sm = sm;
      this.kind = W_SPARSE_EXT;
      return;
    }
    this.#sparseDone(sm);
  }

  /** oldgnu_add_sparse: an entry ends the map when its numbytes is empty. */
  #addOld(sm: SparseMember, b: Uint8Array, at: number): number {
    if (b[at + 12] === 0) return S_FINISH;
    const off = fromHeader(b, at, 12, false);
    const len = fromHeader(b, at + 12, 12, false);
    if (off < 0 || len < 0 || off + len >= OFF_MAX_N || sm.real < off + len) return S_FAIL;
    sm.acc.add(off, len);
    return S_OK;
  }

  #sparseExtBlock(b: Uint8Array): void {
    const sm = this.#sm!;
    for (let i = 0; i < 21 && sm.rc === S_OK; i++) sm.rc = this.#addOld(sm, b, i * 24);
    if (sm.fmt === 'star') sm.dumpedPre += BLOCK;
    if (sm.rc === S_OK && b[GNU_EXT_ISEXTENDED_OFFSET] !== 0) return;
    this.#sm = null;
    this.#sparseDone(sm);
  }

  /** pax 1.0: decimal lines at the start of the data, as tar's COPY_BUF reads them (19 characters
   *  and a newline at most), the map ending with the block of its last newline. */
  #mapBlock(b: Uint8Array): void {
    const sm = this.#sm!;
    for (let i = 0; i < BLOCK; i++) {
      const c = b[i]!;
      sm.lineLen++;
      if (c === 0x0a) {
        const r = this.#mapLine(sm);
        if (r === S_FAIL) return this.#mapFail(sm, b);
        if (r === S_FINISH) {
          sm.dumpedPre += BLOCK;
          this.#sm = null;
          return this.#sparseDone(sm);
        }
        sm.lineLen = 0;
        sm.line.reset();
        continue;
      }
      sm.line.byte(c);
      if (sm.lineLen === 20) return this.#mapFail(sm, b);
    }
    sm.dumpedPre += BLOCK;
  }

  #mapLine(sm: SparseMember): number {
    if (sm.count < 0) {
      const n = sm.line.value(SIZE_MAX);
      if (n === null) return S_FAIL;
      sm.count = n;
      return n === 0 ? S_FINISH : S_OK;
    }
    const v = sm.line.value(OFF_MAX);
    if (v === null) return S_FAIL;
    if (!sm.haveOffset) {
      sm.offset = v;
      sm.haveOffset = true;
      return S_OK;
    }
    // tar 1.34 checks neither the run's end against the file size nor its overflow here
    sm.acc.add(sm.offset, v);
    sm.haveOffset = false;
    return sm.acc.n >= sm.count ? S_FINISH : S_OK;
  }

  /** A malformed 1.0 map: tar writes nothing and skips the member's size from the block it
   *  failed in, which it may then read again as a header. */
  #mapFail(sm: SparseMember, b: Uint8Array): void {
    this.#sm = null;
    const rest = roundUpPos(sm.archive);
    const name = sm.name;
    this.#report(this.ctx.place(name, false), this.offset - BLOCK - sm.entryStart, name);
    if (rest >= BLOCK) {
      this.#left = rest - BLOCK;
      this.kind = this.#left > 0 ? W_SKIP : W_HEADER;
      return;
    }
    this.kind = W_HEADER;
    this.#header(b);
  }

  /** The map is known: report, and read on as tar does when it extracts (and, if that differs,
   *  as it does when it skips the member). */
  #sparseDone(sm: SparseMember): void {
    const ctx = this.ctx;
    let d = ctx.place(sm.name, false);
    let read: number;
    let skipped: number;
    if (sm.rc === S_FAIL) read = skipped = roundUpPos(sm.archive - sm.dumpedPre);
    else {
      // tar counts every block a run is read from as member data
      read = sm.acc.dataBlocks * BLOCK + roundUpPos(sm.archive - sm.dumpedPre - sm.acc.dataBlocks * BLOCK);
      skipped = roundUpPos(sm.archive - sm.dumpedPre);
      if (d >= 0) d += sm.acc.worst;
    }
    // set against the headers and map only: the runs' own bytes are in `worst`, and what tar skips
    // after them (the member's size beyond its runs) may never come
    this.#report(d, this.offset - sm.entryStart, sm.name);
    this.#left = read;
    this.kind = read > 0 ? W_SKIP : W_HEADER;
    if (skipped !== read) this.#pendingFork = skipped;
  }

  #report(disk: number, archive: number, name: Name): void {
    const extra = disk - archive;
    if (extra > 0) this.ctx.onExtra(extra, nameText(name));
  }
}

/**
 * What the size limit counts for bytes about to go to `tar -x` for `member`: the bytes themselves,
 * and before them what the entries they complete take on disk beyond their bytes (blocks of empty
 * directories, of tiny sparse runs, of long links). Throws ERR_TOO_LARGE past the VM's limit, or
 * ERR_UNSAFE_CONTENT for a stream shaped so that no bound can be kept (never what GNU tar writes).
 * One per tar process (a format 2 volume is a tar of its own).
 */
export function tarBytesCounter(limit: SizeCounter, member: string): (bytes: Uint8Array) => void {
  const walk = new TarDiskCount((n, name) => limit.take(n, `${member} (${name})`));
  return (bytes) => {
    if (!walk.ended) {
      walk.push(bytes);
      if (walk.lost) throw new QvmBackupError('ERR_UNSAFE_CONTENT', `${member}: an inner archive of a shape GNU tar never writes (links or directories with data, or over-long sparse maps, nested past what can be followed): what it takes on disk cannot be bounded, so it is refused (--ignore-size-limit takes it as it is)`, { file: member });
    }
    limit.take(bytes.length, member);
  };
}
