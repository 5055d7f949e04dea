// Streaming reader for untrusted outer archives (FORMAT.md §2.2) from any Readable, without seeking:
// skips zero blocks like `tar -i`, verifies checksums, applies pax 'x' path/size and GNU L/K names.
import { Readable } from 'node:stream';
import { fail } from '../errors.js';
import { StreamInput, type ByteInput } from './byte-input.js';
import {
  BLOCK,
  GNU_EXT_ISEXTENDED_OFFSET,
  GNU_ISEXTENDED_OFFSET,
  fieldBytes,
  isPosixUstar,
  parseNumeric,
  parsePaxRecords,
} from './tar-header.js';
import { checksumMatches, paxDecimal, trimTrailingNuls, typeflagOf } from './tar-codec.js';

/** One member of the outer archive. Call exactly one of readInto()/skip() before the next next()
 *  (readHead() may come first). */
export interface OuterEntry {
  /** The member name as stored; validate it before use. */
  untrustedName: string;
  size: number;
  /** The header's typeflag character ('0' for regular files; NUL is reported as '0'). */
  typeflag: string;
  /** The first min(n, size) bytes of the data, read now (a copy; at most once, before readInto or
   *  skip): a format 4 chunk's scrypt header, so that its key is derived while the reader waits
   *  for a slot to read the rest into. */
  readHead(n: number): Promise<Uint8Array>;
  /** Copy exactly `size` bytes of data into dst[0..size) (what readHead() read included). */
  readInto(dst: Uint8Array): Promise<void>;
  /** Discard the data. */
  skip(): Promise<void>;
}

export interface OuterTarReaderOptions {
  /** Largest member data accepted (ERR_TOO_LARGE beyond). Default 1 GiB. */
  maxMemberBytes?: number;
}

/** Largest pax/GNU long-name payload we buffer. */
const MAX_META_BYTES = 1024 * 1024;
const ZERO_BLOCK = Buffer.alloc(BLOCK);
const utf8 = new TextDecoder('utf-8', { fatal: true });

function decodeName(bytes: Uint8Array, where: string): string {
  if (bytes.includes(0)) fail('ERR_UNSAFE_NAME', `member name contains NUL (${where})`);
  try {
    return utf8.decode(bytes);
  } catch {
    return fail('ERR_UNSAFE_NAME', `member name is not valid UTF-8 (${where})`);
  }
}

/** Pull-based reader of a tar stream; `bytesRead` is the archive offset consumed so far. */
export class OuterTarReader {
  readonly #input: ByteInput;
  readonly #max: number;
  #bytesRead = 0;
  #eof = false;
  #busy = false; // an entry's data has not been consumed yet
  #started = false; // a member was returned
  #startBlock: { offset: number; bytes: Uint8Array } | undefined;
  readonly #header = Buffer.alloc(BLOCK);

  /** `source`: a stream, or a ByteInput (FileInput reads a regular file without copies). */
  constructor(source: Readable | ByteInput, opts: OuterTarReaderOptions = {}) {
    this.#input = source instanceof Readable ? new StreamInput(source) : source;
    this.#max = opts.maxMemberBytes ?? 1024 * 1024 * 1024;
  }

  get bytesRead(): number {
    return this.#bytesRead;
  }

  /** Before the first member: the first non-zero block read (or the bytes of a short one), so that
   *  an input that is no tar at all can be described (not a Qubes backup: gzip data, text, …). */
  get startBlock(): { offset: number; bytes: Uint8Array } | undefined {
    return this.#startBlock;
  }

  /** Stop reading and release (destroy) the source stream. */
  async close(): Promise<void> {
    this.#eof = true;
    await this.#input.close();
  }

  /** Copy up to `len` bytes into dst at `off` (dst null: discard); returns how many were available. */
  async #take(dst: Uint8Array | null, off: number, len: number): Promise<number> {
    if (this.#eof) return 0;
    const n = await this.#input.take(dst, off, len);
    this.#bytesRead += n;
    return n;
  }

  /** Exactly `len` bytes or ERR_CORRUPT "archive truncated in <what>". */
  async #takeExact(dst: Uint8Array | null, off: number, len: number, what: string): Promise<void> {
    const got = await this.#take(dst, off, len);
    if (got < len) fail('ERR_CORRUPT', `archive truncated in ${what}`, { file: what, offset: this.#bytesRead });
  }

  /** A member's data (from `from` on: what came before is in dst already) and its padding. */
  async #takeData(dst: Uint8Array | null, size: number, what: string, from = 0): Promise<void> {
    await this.#takeExact(dst, from, size - from, what);
    await this.#takeExact(null, 0, (BLOCK - (size % BLOCK)) % BLOCK, what);
  }

  /** Payload of a pax/GNU meta header, bounded. */
  async #readMeta(size: number, what: string): Promise<Buffer> {
    if (size > MAX_META_BYTES) fail('ERR_TOO_LARGE', `${what} of ${size} bytes (limit ${MAX_META_BYTES})`, { offset: this.#bytesRead });
    const buf = Buffer.alloc(size);
    await this.#takeData(buf, size, what);
    return buf;
  }

  /** The next member, or null at the end of the archive. */
  async next(): Promise<OuterEntry | null> {
    if (this.#busy) fail('ERR_INTERNAL', 'OuterTarReader.next() before the previous entry was read or skipped');
    let paxPath: string | undefined;
    let paxSize: number | undefined;
    let longName: string | undefined;
    let pending = false; // meta headers seen that must be followed by a member
    const h = this.#header;
    for (;;) {
      const offset = this.#bytesRead;
      const got = await this.#take(h, 0, BLOCK);
      if (got === 0) {
        if (pending) fail('ERR_CORRUPT', 'archive truncated after an extended header', { offset });
        return null;
      }
      if (!this.#started && this.#startBlock === undefined && !(got === BLOCK && h.equals(ZERO_BLOCK))) this.#startBlock = { offset, bytes: Uint8Array.from(h.subarray(0, got)) };
      if (got < BLOCK) fail('ERR_CORRUPT', `archive truncated in the header at offset ${offset}`, { offset });
      if (h.equals(ZERO_BLOCK)) continue;
      if (!checksumMatches(h)) {
        fail('ERR_CORRUPT', `bad tar header checksum at offset ${offset}`, { offset });
      }
      const rawSize = parseNumeric(h, 'size');
      if (rawSize === null) fail('ERR_CORRUPT', `bad size field in the tar header at offset ${offset}`, { offset });
      const type = h[156] === 0 ? '0' : typeflagOf(h);
      const where = `header at offset ${offset}`;

      if (type === 'x') {
        const recs = parsePaxRecords(await this.#readMeta(rawSize, `pax header at offset ${offset}`));
        if (typeof recs === 'string') fail('ERR_CORRUPT', `bad pax header at offset ${offset}: ${recs}`, { offset });
        const p = recs.get('path');
        if (p !== undefined) paxPath = p.length === 0 ? undefined : decodeName(p, `pax path, ${where}`);
        const s = recs.get('size');
        if (s !== undefined) {
          const txt = Buffer.from(s).toString('latin1');
          if (txt === '') paxSize = undefined;
          else paxSize = paxDecimal(txt) ?? fail('ERR_CORRUPT', `bad pax size ${JSON.stringify(txt)} at offset ${offset}`, { offset });
        }
        pending = true;
        continue;
      }
      if (type === 'g') {
        await this.#takeData(null, rawSize, `global pax header at offset ${offset}`);
        continue;
      }
      if (type === 'L' || type === 'K') {
        const meta = await this.#readMeta(rawSize, `GNU long name at offset ${offset}`);
        if (type === 'L') longName = decodeName(trimTrailingNuls(meta), `GNU long name, ${where}`);
        pending = true;
        continue;
      }

      let name = paxPath ?? longName;
      if (name === undefined) {
        const base = fieldBytes(h, 'name');
        const prefix = isPosixUstar(h) ? fieldBytes(h, 'prefix') : new Uint8Array(0);
        name = decodeName(prefix.length > 0 ? Buffer.concat([prefix, Buffer.from('/'), base]) : base, where);
      }
      if (name === '') fail('ERR_CORRUPT', `empty member name at offset ${offset}`, { offset });
      // GNU old-sparse headers may be followed by extension blocks before the data.
      if (type === 'S' && h[GNU_ISEXTENDED_OFFSET] !== 0) {
        const ext = Buffer.alloc(BLOCK);
        do await this.#takeExact(ext, 0, BLOCK, name);
        while (ext[GNU_EXT_ISEXTENDED_OFFSET] !== 0);
      }
      // Like GNU tar: a directory entry carries no data whatever its size field says.
      const size = type === '5' ? 0 : (paxSize ?? rawSize);
      if (size > this.#max) fail('ERR_TOO_LARGE', `member ${name} is ${size} bytes (limit ${this.#max})`, { file: name, offset });
      return this.#entry(name, size, type);
    }
  }

  #entry(name: string, size: number, typeflag: string): OuterEntry {
    this.#busy = true;
    this.#started = true;
    let used = false;
    let head: Uint8Array | undefined;
    const once = (): void => {
      if (used) fail('ERR_INTERNAL', `data of ${name} was already consumed`);
      used = true;
    };
    return {
      untrustedName: name,
      size,
      typeflag,
      readHead: async (n) => {
        if (used || head !== undefined) fail('ERR_INTERNAL', `data of ${name} was already read`);
        const h = new Uint8Array(Math.max(0, Math.min(n, size)));
        await this.#takeExact(h, 0, h.length, name);
        head = h;
        return Uint8Array.from(h);
      },
      readInto: async (dst) => {
        once();
        if (dst.length < size) fail('ERR_INTERNAL', `buffer of ${dst.length} bytes for ${name} (${size} bytes)`);
        if (head !== undefined) dst.set(head);
        await this.#takeData(dst, size, name, head?.length ?? 0);
        this.#busy = false;
      },
      skip: async () => {
        once();
        await this.#takeData(null, size, name, head?.length ?? 0);
        this.#busy = false;
      },
    };
  }
}
