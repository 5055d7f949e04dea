// A streaming reader for an inner archive that must hold exactly one regular file — the shape of a
// VM image member (`vm3/private.img`). It understands what GNU tar and Qubes write for such files:
// ustar/GNU headers, pax 'x' records and GNU long names, GNU old-sparse ('S', with extension
// blocks) and pax GNU sparse 0.1/1.0. It hands out the data spans with their file offsets (holes
// are simply never written) and refuses anything else: another member, a link, a device, a
// directory, a sparse map that is out of order, overlapping or past the file's end.
import { QvmBackupError } from '../errors.js';
import {
  BLOCK,
  F,
  GNU_EXT_ISEXTENDED_OFFSET,
  GNU_ISEXTENDED_OFFSET,
  headerName,
  parseNumeric,
  parseNumericAt,
  parsePaxRecords,
  roundUp,
  stripDotSlash,
} from './tar-header.js';
import { checksumMatches, isExtensionHeader, longNameText, paxDecimal, typeflagOf } from './tar-codec.js';

/** One stored run of data of a sparse file. */
export interface Span {
  offset: number;
  length: number;
}

/**
 * A sparse map, 16 bytes a run: a map may hold millions (MAX_SPANS), which as objects took up to
 * ~100 bytes each (~400 MB for one image of a hostile archive, outside --max-memory).
 */
/** The bytes of the `block`-sized file system blocks the runs touch (in order, as the reader keeps
 *  them): what writing them takes on disk, which tiny runs far apart multiply. A restore counts it
 *  against the VM's size limit; a backup counts the same for the files it reads (inner-tar-source.ts). */
export function blockBytesOf(runs: Iterable<Span>, block = 4096): number {
  let blocks = 0;
  let covered = 0; // blocks before this run's are counted
  for (const { offset, length } of runs) {
    if (length === 0) continue;
    const first = Math.max(Math.floor(offset / block), covered);
    const end = Math.ceil((offset + length) / block);
    if (end > first) blocks += end - first;
    covered = Math.max(covered, end);
  }
  return blocks * block;
}

export class SpanList implements Iterable<Span> {
  #a = new Float64Array(32);
  #n = 0;

  static from(spans: Iterable<Span>): SpanList {
    const l = new SpanList();
    for (const s of spans) l.push(s.offset, s.length);
    return l;
  }

  get length(): number {
    return this.#n;
  }

  push(offset: number, length: number): void {
    if (2 * this.#n + 2 > this.#a.length) {
      const a = new Float64Array(this.#a.length * 2);
      a.set(this.#a);
      this.#a = a;
    }
    this.#a[2 * this.#n] = offset;
    this.#a[2 * this.#n + 1] = length;
    this.#n++;
  }

  offsetAt(i: number): number {
    return this.#a[2 * i]!;
  }

  lengthAt(i: number): number {
    return this.#a[2 * i + 1]!;
  }

  /** blockBytesOf these runs */
  blockBytes(block = 4096): number {
    return blockBytesOf(this, block);
  }

  /** The data bytes of all runs. */
  get dataBytes(): number {
    let n = 0;
    for (let i = 0; i < this.#n; i++) n += this.#a[2 * i + 1]!;
    return n;
  }

  *[Symbol.iterator](): Iterator<Span> {
    for (let i = 0; i < this.#n; i++) yield { offset: this.#a[2 * i]!, length: this.#a[2 * i + 1]! };
  }
}

/** The one member, as described by its headers. */
export interface MemberInfo {
  name: string;
  /** apparent size of the file */
  size: number;
  mode: number;
  mtimeSec: number;
  /** the data runs in order; holes between them (and up to `size`) stay holes */
  spans: SpanList;
}

/** Where the member goes (a file writer, or nothing for verify-only). */
export interface MemberSink {
  begin(info: MemberInfo): Promise<void>;
  /** `bytes` belong at `position` of the file; resolve only when they are no longer referenced */
  data(position: number, bytes: Uint8Array): Promise<void>;
  end(): Promise<void>;
}

export interface SingleMemberOptions {
  /** the member name the archive must hold (a leading `./` in the archive is ignored) */
  expectedName: string;
  /** largest apparent size accepted */
  maxSize: number;
  /** for messages */
  what: string;
  /** accept only the plainest shape, which GNU tar reads the same way: no zero block before the
   *  member, no extension header (pax, global, long name), a plain regular file (type 0) named
   *  exactly `expectedName`, well-formed octal mode (permission bits, not 0), mtime, uid and gid.
   *  Anything else is refused (small-file-extractor.ts hands it to GNU tar). */
  strict?: boolean;
}

const MAX_META_BYTES = 1024 * 1024;
const TYPE_WORDS: Record<string, string> = { '1': 'a hard link', '2': 'a symbolic link', '3': 'a character device node', '4': 'a block device node', '5': 'a directory', '6': 'a FIFO' };
/** A sparse map longer than this is refused (24 bytes each in GNU extension blocks). */
const MAX_SPANS = 4_000_000;
/** Extension headers (pax, global, long name) before the member: GNU tar writes one or two. Each
 *  may hold 1 MiB of records, and an archive of thousands kept CPU and memory busy for minutes. */
const MAX_EXTENSIONS = 16;
/** The pax keys of GNU sparse formats that are read; any other GNU.sparse key marks a variant that
 *  is refused, and every other key is ignored (nothing else is kept). */
const SPARSE_KEYS = new Set(['GNU.sparse.name', 'GNU.sparse.major', 'GNU.sparse.minor', 'GNU.sparse.realsize', 'GNU.sparse.size', 'GNU.sparse.map']);

type State = 'header' | 'meta' | 'sparse-ext' | 'pax-map' | 'data' | 'trailer';

/** Push-based reader: feed the inner archive's bytes in order with push(), then call end(). */
export class SingleMemberReader {
  readonly #o: SingleMemberOptions;
  readonly #sink: MemberSink;
  #state: State = 'header';
  readonly #block = new Uint8Array(BLOCK);
  #blockFill = 0;
  // pax / GNU long-name records that apply to the next header
  #meta: { type: string; left: number; padded: number; bytes: Uint8Array; fill: number } | null = null;
  #paxPath: string | undefined;
  #paxSize: number | undefined;
  #pax: Map<string, string> = new Map();
  /** a GNU.sparse key not in SPARSE_KEYS was seen (an unsupported variant, e.g. 0.0) */
  #otherSparseKey = false;
  /** extension headers read before the member */
  #extensions = 0;
  #longName: string | undefined;
  // the member being read
  #info: MemberInfo | null = null;
  #storedSize = 0;
  #mapBytesLeft = 0;
  #mapBytesRead = 0;
  /** the pax 1.0 map's last line so far (not ended by \n yet) */
  #mapPartial = '';
  /** its count line, once read */
  #mapCount: number | undefined;
  /** an entry's offset line, until its length line arrives */
  #mapOffset: number | undefined;
  #span = 0;
  #spanLeft = 0;
  #padLeft = 0;
  #done = false;

  constructor(opts: SingleMemberOptions, sink: MemberSink) {
    this.#o = opts;
    this.#sink = sink;
  }

  /** Consume the next bytes of the inner archive. */
  async push(chunk: Uint8Array): Promise<void> {
    let pos = 0;
    while (pos < chunk.length) {
      if (this.#state === 'data') {
        pos += await this.#data(chunk, pos);
        continue;
      }
      if (this.#state === 'meta') {
        pos += this.#metaBytes(chunk, pos);
        continue;
      }
      // every other state works in whole 512-byte blocks
      const n = Math.min(BLOCK - this.#blockFill, chunk.length - pos);
      this.#block.set(chunk.subarray(pos, pos + n), this.#blockFill);
      this.#blockFill += n;
      pos += n;
      if (this.#blockFill < BLOCK) continue;
      this.#blockFill = 0;
      await this.#onBlock(this.#block);
    }
  }

  /** The archive ended: the member must be complete. */
  async end(): Promise<void> {
    if (!this.#done) {
      if (this.#info === null) this.#fail('ERR_CORRUPT', `the inner archive ends before ${this.#o.expectedName} (no such member)`);
      this.#fail('ERR_CORRUPT', `the inner archive ends in the middle of ${this.#o.expectedName}`);
    }
    if (this.#blockFill !== 0) this.#fail('ERR_CORRUPT', 'the inner archive does not end on a 512-byte block');
  }

  #fail(code: 'ERR_CORRUPT' | 'ERR_UNSAFE_CONTENT' | 'ERR_TOO_LARGE', why: string): never {
    throw new QvmBackupError(code, `${this.#o.what}: ${why}`, { file: this.#o.what });
  }

  async #onBlock(b: Uint8Array): Promise<void> {
    switch (this.#state) {
      case 'header':
        return this.#header(b);
      case 'sparse-ext':
        return this.#sparseExtension(b);
      case 'pax-map':
        return this.#paxMapBlock(b);
      case 'trailer':
        if (b.some((x) => x !== 0)) this.#fail('ERR_UNSAFE_CONTENT', `the inner archive holds more than ${this.#o.expectedName}`);
        return;
      default:
        this.#fail('ERR_CORRUPT', `internal state ${this.#state} read a block`);
    }
  }

  async #header(b: Uint8Array): Promise<void> {
    if (b.every((x) => x === 0)) {
      if (this.#o.strict === true) this.#fail('ERR_CORRUPT', 'a zero block before the member (strict)');
      if (this.#meta !== null || this.#paxPath !== undefined || this.#longName !== undefined) this.#fail('ERR_CORRUPT', 'extended header without a member');
      return; // zero blocks before the member: tolerated like tar -i
    }
    if (!checksumMatches(b)) this.#fail('ERR_CORRUPT', 'inner tar header checksum mismatch');
    const size = parseNumeric(b, 'size');
    if (size === null) this.#fail('ERR_CORRUPT', 'inner tar header has a malformed size');
    const type = typeflagOf(b);
    if (this.#o.strict === true) this.#strictHeader(b, type);
    if (isExtensionHeader(type)) {
      if (size > MAX_META_BYTES) this.#fail('ERR_TOO_LARGE', `inner tar extended header of ${size} bytes`);
      if (++this.#extensions > MAX_EXTENSIONS) this.#fail('ERR_CORRUPT', `more than ${MAX_EXTENSIONS} extension headers before the member`);
      this.#meta = { type, left: size, padded: roundUp(size, BLOCK) - size, bytes: new Uint8Array(size), fill: 0 };
      this.#state = 'meta';
      if (size === 0) this.#metaDone();
      return;
    }
    const name = normalize(this.#pax.get('GNU.sparse.name') ?? this.#paxPath ?? this.#longName ?? headerName(b));
    if (name !== this.#o.expectedName) this.#fail('ERR_UNSAFE_CONTENT', `unexpected member ${JSON.stringify(name.slice(0, 200))} (only ${this.#o.expectedName} belongs here)`);
    if (this.#info !== null) this.#fail('ERR_UNSAFE_CONTENT', `${this.#o.expectedName} appears twice`);
    if (type !== '0' && type !== '\0' && type !== '7' && type !== 'S') {
      this.#fail('ERR_UNSAFE_CONTENT', `arrived as ${TYPE_WORDS[type] ?? `tar type ${JSON.stringify(type)}`}, not a regular file`);
    }
    const stored = this.#paxSize ?? size;
    const mode = parseNumeric(b, 'mode') ?? 0o644;
    const mtimeSec = parseNumeric(b, 'mtime') ?? 0;
    this.#storedSize = stored;
    const major = this.#pax.get('GNU.sparse.major');
    const minor = this.#pax.get('GNU.sparse.minor');
    const info: MemberInfo = { name, size: stored, mode: mode & 0o777, mtimeSec, spans: new SpanList() };
    this.#info = info;
    if (type === 'S') {
      const real = parseNumericAt(b, 483, 12);
      if (typeof real !== 'number') this.#fail('ERR_CORRUPT', 'GNU sparse header without a real size');
      info.size = real;
      this.#addEntries(b, 386, 4);
      if (b[GNU_ISEXTENDED_OFFSET] !== 0) {
        this.#state = 'sparse-ext';
        return;
      }
      return this.#startData();
    }
    if (major === '1' && minor === '0') {
      info.size = this.#paxNumber('GNU.sparse.realsize');
      this.#state = 'pax-map';
      this.#mapBytesLeft = stored;
      return;
    }
    if (this.#pax.has('GNU.sparse.map')) {
      info.size = this.#paxNumber('GNU.sparse.size');
      const nums = (this.#pax.get('GNU.sparse.map') ?? '').split(',');
      if (nums.length % 2 !== 0) this.#fail('ERR_CORRUPT', 'odd GNU.sparse.map');
      for (let i = 0; i < nums.length; i += 2) this.#pushSpan(decimal(nums[i]!), decimal(nums[i + 1]!));
      return this.#startData();
    }
    if (this.#otherSparseKey || this.#pax.size > 0) this.#fail('ERR_CORRUPT', 'unsupported pax GNU sparse variant');
    info.spans.push(0, stored);
    return this.#startData();
  }

  /** The strict shape (SingleMemberOptions.strict), checked on the member's header. */
  #strictHeader(b: Uint8Array, type: string): void {
    const refuse = (why: string): never => this.#fail('ERR_CORRUPT', `${why} (strict)`);
    if (type !== '0' && type !== '\0') refuse(`tar type ${JSON.stringify(type)}`);
    if (headerName(b) !== this.#o.expectedName) refuse('a member name other than exactly the expected one');
    const mode = parseNumeric(b, 'mode');
    if (mode === null || mode === 0 || (mode & ~0o777) !== 0) refuse('a mode field that is not plain permission bits');
    for (const f of ['mtime', 'uid', 'gid'] as const) if (typeof parseNumericAt(b, F[f][0], F[f][1]) !== 'number') refuse(`a malformed ${f} field`);
  }

  #paxNumber(key: string): number {
    const v = this.#pax.get(key);
    const n = v === undefined ? NaN : decimal(v);
    if (!Number.isSafeInteger(n) || n < 0) this.#fail('ERR_CORRUPT', `bad ${key}`);
    return n;
  }

  #metaBytes(chunk: Uint8Array, pos: number): number {
    const m = this.#meta!;
    if (m.left > 0) {
      const n = Math.min(m.left, chunk.length - pos);
      m.bytes.set(chunk.subarray(pos, pos + n), m.fill);
      m.fill += n;
      m.left -= n;
      if (m.left === 0 && m.padded === 0) this.#metaDone();
      return n;
    }
    const n = Math.min(m.padded, chunk.length - pos);
    m.padded -= n;
    if (m.padded === 0) this.#metaDone();
    return n;
  }

  #metaDone(): void {
    const m = this.#meta!;
    this.#meta = null;
    this.#state = 'header';
    if (m.type === 'L') {
      this.#longName = longNameText(m.bytes);
      return;
    }
    if (m.type !== 'x') return; // 'g' (global) and 'K' (link name) do not matter for a regular file
    const recs = parsePaxRecords(m.bytes);
    if (typeof recs === 'string') this.#fail('ERR_CORRUPT', `bad pax header: ${recs}`);
    for (const [k, v] of recs) {
      const text = Buffer.from(v).toString('utf8');
      if (k === 'path') this.#paxPath = text;
      else if (k === 'size') this.#paxSize = paxDecimal(text) ?? NaN;
      else if (SPARSE_KEYS.has(k)) this.#pax.set(k, text);
      else if (k.startsWith('GNU.sparse.')) this.#otherSparseKey = true;
    }
    if (this.#paxSize !== undefined && !Number.isSafeInteger(this.#paxSize)) this.#fail('ERR_CORRUPT', 'bad pax size');
  }

  /** Entries of a GNU old-sparse map: `count` pairs of 12-byte numbers from `off`. */
  #addEntries(b: Uint8Array, off: number, count: number): void {
    for (let i = 0; i < count; i++) {
      const o = parseNumericAt(b, off + i * 24, 12);
      const n = parseNumericAt(b, off + i * 24 + 12, 12);
      if (o === 'empty') return; // the map ends
      if (o === null || typeof n !== 'number') this.#fail('ERR_CORRUPT', 'malformed GNU sparse map entry');
      this.#pushSpan(o, n);
    }
  }

  #pushSpan(offset: number, length: number): void {
    const spans = this.#info!.spans;
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) this.#fail('ERR_CORRUPT', 'malformed sparse map entry');
    const last = spans.length - 1;
    if (last >= 0) {
      // GNU tar writes an empty run only as the last entry (a file that ends in a hole): empty
      // runs anywhere else would make a map of millions of entries from a few bytes each
      if (spans.lengthAt(last) === 0) this.#fail('ERR_CORRUPT', 'an empty run before the end of the sparse map');
      if (offset < spans.offsetAt(last) + spans.lengthAt(last)) this.#fail('ERR_CORRUPT', 'sparse map entries overlap or are out of order');
    }
    if (spans.length >= MAX_SPANS) this.#fail('ERR_TOO_LARGE', `sparse map longer than ${MAX_SPANS} entries`);
    spans.push(offset, length);
  }

  async #sparseExtension(b: Uint8Array): Promise<void> {
    this.#addEntries(b, 0, 21);
    if (b[GNU_EXT_ISEXTENDED_OFFSET] === 0) await this.#startData();
  }

  /** pax GNU sparse 1.0: the map is decimal lines at the start of the data, padded to a block.
   *  Only the lines a block completes are parsed (the whole text again at each block took hours
   *  for a map of millions of runs). */
  async #paxMapBlock(b: Uint8Array): Promise<void> {
    if (this.#mapBytesLeft < BLOCK) this.#fail('ERR_CORRUPT', 'pax sparse map runs past the member data');
    this.#mapBytesLeft -= BLOCK;
    this.#mapBytesRead += BLOCK;
    if (this.#mapBytesRead > MAX_SPANS * 42) this.#fail('ERR_TOO_LARGE', 'pax sparse map too long');
    const lines = (this.#mapPartial + Buffer.from(b).toString('latin1')).split('\n');
    this.#mapPartial = lines.pop()!;
    const spans = this.#info!.spans;
    for (const line of lines) {
      if (this.#mapCount === undefined) {
        const count = decimal(line);
        if (!Number.isSafeInteger(count) || count > MAX_SPANS) this.#fail('ERR_CORRUPT', 'bad pax sparse map count');
        this.#mapCount = count;
      } else if (this.#mapOffset === undefined) this.#mapOffset = decimal(line);
      else {
        this.#pushSpan(this.#mapOffset, decimal(line));
        this.#mapOffset = undefined;
      }
      if (spans.length === this.#mapCount && this.#mapOffset === undefined) break; // the rest is padding
    }
    if (spans.length !== this.#mapCount || this.#mapOffset !== undefined) {
      // no number has 17 digits: a longer unfinished line is refused now, not re-read at every block
      if (this.#mapPartial.length > 16) this.#fail('ERR_CORRUPT', this.#mapCount === undefined ? 'bad pax sparse map count' : 'malformed sparse map entry');
      return; // the map goes on in the next block (the last number must end in \n)
    }
    this.#storedSize = this.#mapBytesLeft;
    await this.#startData();
  }

  async #startData(): Promise<void> {
    const info = this.#info!;
    const spans = info.spans;
    if (info.size > this.#o.maxSize) this.#fail('ERR_TOO_LARGE', `${info.name} claims ${info.size} bytes (limit ${this.#o.maxSize})`);
    let stored = 0;
    for (let i = 0; i < spans.length; i++) {
      if (spans.offsetAt(i) + spans.lengthAt(i) > info.size) this.#fail('ERR_CORRUPT', 'sparse map reaches past the end of the file');
      stored += roundUp(spans.lengthAt(i), BLOCK);
    }
    // GNU tar stores every run from a block boundary, so the runs fill the member's blocks exactly
    if (stored !== roundUp(this.#storedSize, BLOCK)) this.#fail('ERR_CORRUPT', `sparse map (${stored} bytes in blocks) does not match the member size ${this.#storedSize}`);
    await this.#sink.begin(info);
    this.#span = -1;
    this.#spanLeft = 0;
    this.#padLeft = 0;
    this.#state = 'data';
    await this.#nextSpan();
  }

  /** Move to the next non-empty run, or finish the member. */
  async #nextSpan(): Promise<void> {
    const spans = this.#info!.spans;
    while (this.#spanLeft === 0 && this.#padLeft === 0) {
      this.#span++;
      if (this.#span >= spans.length) {
        this.#done = true;
        this.#state = 'trailer';
        this.#pax = new Map();
        this.#otherSparseKey = false;
        this.#extensions = 0;
        this.#paxPath = this.#longName = undefined;
        this.#paxSize = undefined;
        await this.#sink.end();
        return;
      }
      const length = spans.lengthAt(this.#span);
      this.#spanLeft = length;
      this.#padLeft = roundUp(length, BLOCK) - length;
    }
  }

  async #data(chunk: Uint8Array, pos: number): Promise<number> {
    if (this.#spanLeft > 0) {
      const n = Math.min(this.#spanLeft, chunk.length - pos);
      const spans = this.#info!.spans;
      await this.#sink.data(spans.offsetAt(this.#span) + (spans.lengthAt(this.#span) - this.#spanLeft), chunk.subarray(pos, pos + n));
      this.#spanLeft -= n;
      if (this.#spanLeft === 0 && this.#padLeft === 0) await this.#nextSpan();
      return n;
    }
    const n = Math.min(this.#padLeft, chunk.length - pos);
    this.#padLeft -= n;
    if (this.#padLeft === 0) await this.#nextSpan();
    return n;
  }
}

function decimal(s: string): number {
  return /^[0-9]{1,16}$/.test(s) ? Number(s) : NaN;
}

function normalize(name: string): string {
  let n = stripDotSlash(name);
  while (n.endsWith('/')) n = n.slice(0, -1); // a directory entry: refused by its type next
  return n;
}
