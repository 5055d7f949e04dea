// Low-level tar header fields shared by the outer-archive writer and reader: field offsets, octal
// and base-256 numbers, checksums and pax extended-header records (POSIX.1-2001 / GNU tar 1.34).

export const BLOCK = 512;
/** GNU tar's default record: 20 blocks. Every `tar -c` output is padded to a multiple of it. */
export const RECORD = 10240;

/** Byte offsets and widths of the ustar header fields. */
export const F = {
  name: [0, 100],
  mode: [100, 8],
  uid: [108, 8],
  gid: [116, 8],
  size: [124, 12],
  mtime: [136, 12],
  chksum: [148, 8],
  typeflag: [156, 1],
  linkname: [157, 100],
  magic: [257, 6],
  version: [263, 2],
  uname: [265, 32],
  gname: [297, 32],
  devmajor: [329, 8],
  devminor: [337, 8],
  prefix: [345, 155],
} as const satisfies Record<string, readonly [number, number]>;

/** GNU old-sparse: `isextended` flag in a type-'S' header and in each extension block. */
export const GNU_ISEXTENDED_OFFSET = 482;
export const GNU_EXT_ISEXTENDED_OFFSET = 504;

export type Field = keyof typeof F;

/** Round `n` up to a multiple of `m`. */
export function roundUp(n: number, m: number): number {
  return Math.ceil(n / m) * m;
}

/** Write `value` as zero-padded octal with a trailing NUL, filling the field (GNU `%0*o\0`). */
export function writeOctal(block: Uint8Array, field: Field, value: number): void {
  const [off, len] = F[field];
  if (!writeOctalAt(block, off, len, value)) throw new RangeError(`${field} ${value} does not fit the ${len}-byte octal field`);
}

function writeOctalAt(block: Uint8Array, off: number, len: number, value: number): boolean {
  const digits = value.toString(8);
  if (!Number.isSafeInteger(value) || value < 0 || digits.length > len - 1) return false;
  writeAscii(block, off, digits.padStart(len - 1, '0'));
  block[off + len - 1] = 0;
  return true;
}

/** writeOctal for any offset and width, in GNU base-256 when the octal digits do not fit (as GNU
 *  tar writes sizes and sparse offsets of 8 GiB and more); the reverse of parseNumericAt. */
export function writeNumericAt(block: Uint8Array, off: number, len: number, value: number): void {
  if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`tar number ${value} out of range`);
  if (writeOctalAt(block, off, len, value)) return;
  block[off] = 0x80;
  let v = value;
  for (let i = len - 1; i >= 1; i--) {
    block[off + i] = v % 256;
    v = Math.floor(v / 256);
  }
}

/** Copy ASCII/UTF-8 text into a field (no terminator added beyond the zeroed block). */
export function writeBytes(block: Uint8Array, field: Field, bytes: Uint8Array): void {
  const [off, len] = F[field];
  if (bytes.length > len) throw new RangeError(`${field} longer than ${len} bytes`);
  block.set(bytes, off);
}

function writeAscii(block: Uint8Array, off: number, s: string): void {
  for (let i = 0; i < s.length; i++) block[off + i] = s.charCodeAt(i);
}

/** Unsigned sum of the header with the checksum field counted as spaces. */
export function headerChecksum(block: Uint8Array): { unsigned: number; signed: number } {
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const b = i >= 148 && i < 156 ? 0x20 : (block[i] ?? 0);
    unsigned += b;
    signed += b > 127 ? b - 256 : b;
  }
  return { unsigned, signed };
}

/** Fill in the checksum field the way GNU tar does: six octal digits, NUL, space. */
export function sealHeader(block: Uint8Array): void {
  const sum = headerChecksum(block).unsigned;
  writeAscii(block, 148, sum.toString(8).padStart(6, '0'));
  block[154] = 0;
  block[155] = 0x20;
}

/**
 * Parse a numeric header field: octal digits (leading spaces allowed, ended by NUL/space) or GNU
 * base-256 (high bit of the first byte). Returns null when the field is malformed or too large.
 */
export function parseNumeric(block: Uint8Array, field: Field): number | null {
  const [off, len] = F[field];
  const v = parseNumericAt(block, off, len);
  return v === 'empty' ? (field === 'chksum' ? null : 0) : v;
}

/** parseNumeric for any offset and width (GNU sparse map entries); 'empty' when there are no digits. */
export function parseNumericAt(block: Uint8Array, off: number, len: number): number | null | 'empty' {
  const first = block[off] ?? 0;
  if (first & 0x80) {
    if (first !== 0x80) return null; // negative (0xff) or unknown encoding
    let v = 0;
    for (let i = 1; i < len; i++) {
      v = v * 256 + (block[off + i] ?? 0);
      if (v > Number.MAX_SAFE_INTEGER) return null;
    }
    return v;
  }
  let i = 0;
  while (i < len && block[off + i] === 0x20) i++;
  let v = 0;
  let digits = 0;
  for (; i < len; i++) {
    const c = block[off + i] ?? 0;
    if (c === 0 || c === 0x20) break;
    if (c < 0x30 || c > 0x37) return null;
    v = v * 8 + (c - 0x30);
    digits++;
  }
  for (; i < len; i++) {
    const c = block[off + i];
    if (c !== 0 && c !== 0x20) return null; // garbage after the terminator
  }
  return digits === 0 ? 'empty' : v;
}

/** The bytes of a NUL-terminated string field (up to the first NUL). */
export function fieldBytes(block: Uint8Array, field: Field): Uint8Array {
  const [off, len] = F[field];
  const end = block.subarray(off, off + len).indexOf(0);
  return block.subarray(off, end === -1 ? off + len : off + end);
}

/** True if the header carries the POSIX `ustar\0` magic (prefix field is a path prefix). */
export function isPosixUstar(block: Uint8Array): boolean {
  const o = F.magic[0];
  return block[o] === 0x75 && block[o + 1] === 0x73 && block[o + 2] === 0x74 && block[o + 3] === 0x61 && block[o + 4] === 0x72 && block[o + 5] === 0;
}

/** One pax record `"<len> <key>=<value>\n"`, where len counts the whole record including itself. */
export function paxRecord(key: string, value: string): string {
  const body = ` ${key}=${value}\n`;
  const bodyLen = Buffer.byteLength(body);
  let len = bodyLen + 1;
  while (String(len).length + bodyLen !== len) len = String(len).length + bodyLen;
  return `${len}${body}`;
}

/**
 * Parse pax extended-header data into key → raw value bytes. Returns a string describing the
 * problem instead when a record is malformed.
 */
export function parsePaxRecords(data: Uint8Array): Map<string, Uint8Array> | string {
  const out = new Map<string, Uint8Array>();
  let pos = 0;
  while (pos < data.length) {
    if (data[pos] === 0) {
      // GNU tar accepts NUL padding after the last record.
      if (data.subarray(pos).every((b) => b === 0)) break;
      return `NUL inside pax data at ${pos}`;
    }
    let len = 0;
    let p = pos;
    while (p < data.length && data[p] !== 0x20) {
      const c = data[p] ?? 0;
      if (c < 0x30 || c > 0x39 || p - pos > 12) return `bad pax record length at ${pos}`;
      len = len * 10 + (c - 0x30);
      p++;
    }
    if (p === pos || len <= p - pos + 1 || pos + len > data.length) return `bad pax record length at ${pos}`;
    const rec = data.subarray(p + 1, pos + len);
    if (rec[rec.length - 1] !== 0x0a) return `pax record at ${pos} does not end in a newline`;
    const eq = rec.indexOf(0x3d);
    if (eq <= 0) return `pax record at ${pos} has no key`;
    out.set(Buffer.from(rec.subarray(0, eq)).toString('utf8'), rec.subarray(eq + 1, rec.length - 1));
    pos += len;
  }
  return out;
}

/** A pax time value: whole seconds, then up to 9 fraction digits with trailing zeros removed. */
export function paxTime(sec: number, nsec: number): string {
  if (nsec === 0) return String(sec);
  return `${sec}.${String(nsec).padStart(9, '0').replace(/0+$/, '')}`;
}

/** The member name of a ustar/GNU header as text: `prefix/name` for POSIX ustar, `name` otherwise. */
export function headerName(block: Uint8Array): string {
  const name = Buffer.from(fieldBytes(block, 'name')).toString('utf8');
  if (!isPosixUstar(block)) return name;
  const prefix = Buffer.from(fieldBytes(block, 'prefix')).toString('utf8');
  return prefix === '' ? name : `${prefix}/${name}`;
}

/** A member name without leading `./` (as `tar -x` treats it). */
export function stripDotSlash(name: string): string {
  let n = name;
  while (n.startsWith('./')) n = n.slice(2);
  return n;
}
