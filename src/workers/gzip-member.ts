// The size subfield our gzip members carry (BGZF-style, RFC 1952 FEXTRA): SI1 'Q', SI2 'v', LEN 4,
// the member's total size in bytes (uint32 LE). It lets a reader find member boundaries without
// inflating, so members can be decompressed in parallel. Every gzip reader skips FEXTRA (gzip -d,
// pigz, zlib, Qubes' reader); the subfield is a hint only: a reader that uses it must check that
// each member decodes exactly within the bytes it names.

/** Bytes the FEXTRA field adds to a member: XLEN (2) + SI1 SI2 LEN (4) + size (4). */
export const MEMBER_MARKER_BYTES = 10;
/** Size of the fixed gzip header (magic, CM, FLG, MTIME, XFL, OS). */
export const GZIP_HEADER_BYTES = 10;
/** The header and the FEXTRA field of a marked member: where its deflate data begins. */
export const MARKED_HEADER_BYTES = GZIP_HEADER_BYTES + MEMBER_MARKER_BYTES;
const FEXTRA = 0x04;
const SI1 = 0x51; // 'Q'
const SI2 = 0x76; // 'v'

/**
 * Turn a member just written by zlib at `out[MEMBER_MARKER_BYTES ..][0, n)` (a bare 10-byte header,
 * FLG 0) into a marked member at `out[0, n + MEMBER_MARKER_BYTES)`; returns its length. Returns the
 * member unchanged (moved to the front) when zlib's header is not the bare one we expect.
 */
export function markMember(out: Uint8Array, n: number): number {
  const at = MEMBER_MARKER_BYTES;
  const total = n + MEMBER_MARKER_BYTES;
  const bare = n >= GZIP_HEADER_BYTES && out[at] === 0x1f && out[at + 1] === 0x8b && out[at + 2] === 8 && out[at + 3] === 0;
  if (!bare || total > 0xffffffff) {
    out.copyWithin(0, at, at + n);
    return n;
  }
  out.copyWithin(0, at, at + GZIP_HEADER_BYTES);
  out[3] = FEXTRA;
  const v = new DataView(out.buffer, out.byteOffset, out.byteLength);
  v.setUint16(10, 8, true); // XLEN: one subfield of 4 + 4 bytes
  out[12] = SI1;
  out[13] = SI2;
  v.setUint16(14, 4, true);
  v.setUint32(16, total, true);
  return total;
}

/** What the start of a gzip member says about its size. */
export type MemberHead =
  /** fewer bytes than the header needs */
  | { kind: 'short' }
  /** a gzip member with our size subfield: `size` bytes in all (not yet checked) */
  | { kind: 'marked'; size: number }
  /** anything else (another writer's member, or not gzip at all) */
  | { kind: 'other' };

/** Parse the start of a member at `b[pos..]`: our marked header, or anything else. Only the exact
 *  layout markMember writes counts as marked (FLG = FEXTRA alone, XLEN 8, one 'Qv' subfield). */
export function memberHead(b: Uint8Array, pos: number): MemberHead {
  const left = b.length - pos;
  if (left < MARKED_HEADER_BYTES) {
    // enough to tell it is not ours?
    for (let i = 0; i < Math.min(left, 4); i++) if (b[pos + i] !== [0x1f, 0x8b, 8, FEXTRA][i]) return { kind: 'other' };
    return { kind: 'short' };
  }
  const u16 = (o: number): number => b[pos + o]! | (b[pos + o + 1]! << 8);
  if (b[pos] !== 0x1f || b[pos + 1] !== 0x8b || b[pos + 2] !== 8 || b[pos + 3] !== FEXTRA) return { kind: 'other' };
  if (u16(10) !== 8 || b[pos + 12] !== SI1 || b[pos + 13] !== SI2 || u16(14) !== 4) return { kind: 'other' };
  const size = (u16(16) | (u16(18) << 16)) >>> 0;
  return { kind: 'marked', size };
}
