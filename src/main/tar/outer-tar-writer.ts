// Writes the outer backup archive: a concatenation of one-member POSIX archives, each exactly like
// `tar -cO --posix <file>` from GNU tar 1.34 makes it (FORMAT.md §2.2): pax 'x' header, ustar
// header, data, two zero blocks, padding to a 10240-byte record.
import { QvmBackupError, fail } from '../errors.js';
import { USTAR_NAME_BYTES, USTAR_PREFIX_BYTES } from '../format/limits.js';
import type { Sink } from '../io/sink.js';
import { BLOCK, RECORD, paxRecord, paxTime, roundUp, sealHeader, writeBytes, writeOctal } from './tar-header.js';

/** A timestamp: seconds (fractions allowed) or exact seconds + nanoseconds. */
export type TarTime = number | { sec: number; nsec: number };

export interface OuterMemberOptions {
  /** Modification time; also used for atime/ctime unless those are given. */
  mtimeSec: TarTime;
  atimeSec?: TarTime;
  ctimeSec?: TarTime;
  mode?: number;
  uid?: number;
  gid?: number;
  uname?: string;
  gname?: string;
}

/** Bytes of `outerMemberHead` output: pax header block, pax data block, ustar header block. */
export const OUTER_HEAD_BYTES = 3 * BLOCK;
const MAX_USTAR_SIZE = 0o77777777777;
const MAX_ID = 0o7777777;
/** A streamed member is written in pieces of at most this many bytes (the progress hears of each). */
const STREAM_WRITE_BYTES = 1024 * 1024;

function splitTime(t: TarTime): { sec: number; nsec: number } {
  let sec: number;
  let nsec: number;
  if (typeof t === 'number') {
    sec = Math.floor(t);
    nsec = Math.round((t - sec) * 1e9);
    if (nsec >= 1e9) {
      sec += 1;
      nsec = 0;
    }
  } else {
    ({ sec, nsec } = t);
  }
  if (!Number.isSafeInteger(sec) || sec < 0 || sec > 0o77777777777 || !Number.isInteger(nsec) || nsec < 0 || nsec >= 1e9) {
    fail('ERR_INTERNAL', `bad tar timestamp ${JSON.stringify(t)}`);
  }
  return { sec, nsec };
}

/**
 * Split a member name into the ustar `prefix` and `name` fields; throws ERR_UNSAFE_NAME when it is
 * not a plain relative path or fits neither the 100-byte name nor a prefix(≤155)/name(≤100) split.
 */
export function splitUstarName(name: string): { prefix: Buffer; name: Buffer } {
  const bytes = Buffer.from(name, 'utf8');
  const bad = (why: string): never => fail('ERR_UNSAFE_NAME', `outer member name ${JSON.stringify(name)}: ${why}`, { file: name });
  if (name === '' || name.includes('\0')) bad('empty or contains NUL');
  if (name.startsWith('/') || name.endsWith('/')) bad('must be a relative file path');
  if (name.split('/').some((c) => c === '' || c === '.' || c === '..')) bad("empty, '.' or '..' component");
  if (bytes.length <= USTAR_NAME_BYTES) return { prefix: Buffer.alloc(0), name: bytes };
  // Longest prefix that fits, so the name part is as short as possible (like POSIX pax/star).
  for (let i = Math.min(bytes.length - 1, USTAR_PREFIX_BYTES); i > 0; i--) {
    if (bytes[i] === 0x2f && bytes.length - i - 1 <= USTAR_NAME_BYTES) {
      return { prefix: bytes.subarray(0, i), name: bytes.subarray(i + 1) };
    }
  }
  return bad(`does not fit a ustar header (name ≤ ${USTAR_NAME_BYTES} bytes or prefix ≤ ${USTAR_PREFIX_BYTES} + name ≤ ${USTAR_NAME_BYTES})`);
}

/** GNU tar 1.34's pax header name `%d/PaxHeaders/%f`, cut to the 100-byte name field. */
function paxHeaderName(name: string): Buffer {
  const slash = name.lastIndexOf('/');
  const dir = slash === -1 ? '.' : name.slice(0, slash);
  const full = Buffer.from(`${dir}/PaxHeaders/${name.slice(slash + 1)}`, 'utf8');
  return full.subarray(0, USTAR_NAME_BYTES);
}

/** Header bytes of one outer member (pax 'x' header + its records + ustar header), 1536 bytes. */
export function outerMemberHead(name: string, size: number, opts: OuterMemberOptions): Buffer {
  const split = splitUstarName(name);
  if (!Number.isSafeInteger(size) || size < 0) fail('ERR_INTERNAL', `bad member size ${size}`, { file: name });
  if (size > MAX_USTAR_SIZE) fail('ERR_TOO_LARGE', `outer member ${name} is ${size} bytes; the limit is 8 GiB - 1`, { file: name });
  const { mode = 0o644, uid = 0, gid = 0, uname = 'root', gname = 'root' } = opts;
  for (const [k, v] of [['uid', uid], ['gid', gid]] as const) {
    if (!Number.isInteger(v) || v < 0 || v > MAX_ID) fail('ERR_INTERNAL', `${k} ${v} does not fit a ustar header`);
  }
  const mtime = splitTime(opts.mtimeSec);
  const atime = opts.atimeSec === undefined ? mtime : splitTime(opts.atimeSec);
  const ctime = opts.ctimeSec === undefined ? mtime : splitTime(opts.ctimeSec);

  // GNU tar writes mtime only when it has a fraction; atime and ctime always.
  let records = '';
  if (mtime.nsec !== 0) records += paxRecord('mtime', paxTime(mtime.sec, mtime.nsec));
  records += paxRecord('atime', paxTime(atime.sec, atime.nsec));
  records += paxRecord('ctime', paxTime(ctime.sec, ctime.nsec));

  const out = Buffer.alloc(OUTER_HEAD_BYTES);
  const x = out.subarray(0, BLOCK);
  writeBytes(x, 'name', paxHeaderName(name));
  writeOctal(x, 'mode', 0o644);
  writeOctal(x, 'uid', 0);
  writeOctal(x, 'gid', 0);
  writeOctal(x, 'size', Buffer.byteLength(records));
  writeOctal(x, 'mtime', mtime.sec);
  x[156] = 0x78; // 'x'
  writeBytes(x, 'magic', Buffer.from('ustar\0', 'latin1'));
  writeBytes(x, 'version', Buffer.from('00', 'latin1'));
  sealHeader(x);
  out.write(records, BLOCK, 'utf8');

  const h = out.subarray(2 * BLOCK, 3 * BLOCK);
  writeBytes(h, 'name', split.name);
  writeOctal(h, 'mode', mode & 0o7777);
  writeOctal(h, 'uid', uid);
  writeOctal(h, 'gid', gid);
  writeOctal(h, 'size', size);
  writeOctal(h, 'mtime', mtime.sec);
  h[156] = 0x30; // '0' regular file
  writeBytes(h, 'magic', Buffer.from('ustar\0', 'latin1'));
  writeBytes(h, 'version', Buffer.from('00', 'latin1'));
  writeBytes(h, 'uname', Buffer.from(uname, 'utf8').subarray(0, 32));
  writeBytes(h, 'gname', Buffer.from(gname, 'utf8').subarray(0, 32));
  writeOctal(h, 'devmajor', 0);
  writeOctal(h, 'devminor', 0);
  writeBytes(h, 'prefix', split.prefix);
  sealHeader(h);
  return out;
}

/** Zero bytes after `size` data bytes: padding to 512, two zero blocks, padding to the 10240 record. */
export function outerMemberTail(size: number): Buffer {
  const used = OUTER_HEAD_BYTES + roundUp(size, BLOCK) + 2 * BLOCK;
  return Buffer.alloc(roundUp(used, RECORD) - OUTER_HEAD_BYTES - size);
}

/** Total bytes one outer member of `size` data bytes occupies. */
export function outerMemberBytes(size: number): number {
  return roundUp(OUTER_HEAD_BYTES + roundUp(size, BLOCK) + 2 * BLOCK, RECORD);
}

/** Appends outer members to a Sink, one at a time, in call order. */
export class OuterTarWriter {
  readonly #sink: Sink;
  #bytesWritten = 0;
  #queue: Promise<void> = Promise.resolve();
  readonly #defaults: Omit<OuterMemberOptions, 'mtimeSec'> & { mtimeSec?: TarTime };

  constructor(sink: Sink, defaults: Omit<OuterMemberOptions, 'mtimeSec'> & { mtimeSec?: TarTime } = {}) {
    this.#sink = sink;
    this.#defaults = defaults;
  }

  /** Bytes handed to the sink so far (complete members only once their addMember resolved). */
  get bytesWritten(): number {
    return this.#bytesWritten;
  }

  /** Write one member: header, `parts` in order (their lengths must sum to `size`), padding. */
  addMember(name: string, parts: Uint8Array | Uint8Array[], size?: number, opts?: Partial<OuterMemberOptions>): Promise<void> {
    const list = Array.isArray(parts) ? parts : [parts];
    const total = list.reduce((n, p) => n + p.length, 0);
    if (size !== undefined && size !== total) {
      return Promise.reject(new QvmBackupError('ERR_INTERNAL', `outer member ${name}: size ${size} but parts hold ${total} bytes`, { file: name }));
    }
    return this.#member(name, total, opts, async () => {
      for (const p of list) if (p.length > 0) await this.#write(p);
    });
  }

  /** Write one member whose data is still being made: header, then each piece as `pieces` yields
   *  it (`size` bytes in all: another count fails the member after its pieces), padding. `timeWrite`
   *  opens a profile interval around each write (header and padding too), so that the waits for the
   *  pieces stay out of it. */
  addMemberStream(name: string, size: number, pieces: AsyncIterable<Uint8Array>, timeWrite: () => () => void = () => () => {}): Promise<void> {
    const timed = async (data: Uint8Array): Promise<void> => {
      const end = timeWrite();
      try {
        await this.#write(data);
      } finally {
        end();
      }
    };
    const body = async (): Promise<void> => {
      let n = 0;
      for await (const p of pieces) {
        n += p.length;
        if (n > size) break;
        // in writes of at most 1 MiB, each told (timeWrite's end): a piece can be a whole chunk
        // when the encryption is ahead, and a slow destination would hold the progress for it
        for (let at = 0; at < p.length; at += STREAM_WRITE_BYTES) await timed(p.subarray(at, Math.min(p.length, at + STREAM_WRITE_BYTES)));
      }
      if (n !== size) fail('ERR_INTERNAL', `outer member ${name}: size ${size} but its pieces held ${n > size ? 'more' : `${n}`} bytes`, { file: name });
    };
    return this.#member(name, size, undefined, body, timed);
  }

  /** Header, `body` (exactly `size` data bytes), padding, the header and padding by `write`: after
   *  every member queued before. */
  #member(name: string, size: number, opts: Partial<OuterMemberOptions> | undefined, body: () => Promise<void>, write = (data: Uint8Array) => this.#write(data)): Promise<void> {
    const mtimeSec = opts?.mtimeSec ?? this.#defaults.mtimeSec ?? Date.now() / 1000;
    let head: Buffer;
    try {
      head = outerMemberHead(name, size, { ...this.#defaults, ...opts, mtimeSec });
    } catch (e) {
      return Promise.reject(e as Error);
    }
    const run = async (): Promise<void> => {
      await write(head);
      await body();
      await write(outerMemberTail(size));
    };
    const next = this.#queue.then(run);
    this.#queue = next.catch(() => undefined);
    return next;
  }

  async #write(data: Uint8Array): Promise<void> {
    await this.#sink.write(data);
    this.#bytesWritten += data.length;
  }
}
