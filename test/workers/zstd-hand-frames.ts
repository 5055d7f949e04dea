// Test helper: zstd frames laid out by hand (RFC 8878): any header layout, raw and RLE blocks (and
// given compressed block bytes), an optional checksum field (its value is not computed).

export type Block = { raw: Uint8Array } | { rle: number; n: number } | { compressed: Uint8Array };

export interface FrameSpec {
  /** FCS field bytes: 0 (none, or 1 with singleSegment), 1 (single segment only), 2, 4 or 8 */
  fcsBytes: 0 | 1 | 2 | 4 | 8;
  singleSegment?: boolean;
  /** window descriptor byte (when not single-segment); default 0x58: 2 MiB */
  wd?: number;
  dictBytes?: 0 | 1 | 2 | 4;
  dictId?: number;
  /** a checksum field (its value is not checked by the walker; the program is not asked to decode those) */
  checksum?: boolean;
  blocks: Block[];
  /** content size written in the header (default: the blocks' content) */
  fcs?: number;
  /** extra FHD bits */
  fhdOr?: number;
}

export const contentOf = (blocks: Block[]): Buffer =>
  Buffer.concat(blocks.map((b) => ('raw' in b ? Buffer.from(b.raw) : 'rle' in b ? Buffer.alloc(b.n, b.rle) : Buffer.alloc(0))));

function blockHeader(last: boolean, type: number, size: number): Buffer {
  const v = (last ? 1 : 0) | (type << 1) | (size << 3);
  return Buffer.from([v & 0xff, (v >> 8) & 0xff, (v >> 16) & 0xff]);
}

/** A frame laid out by hand from `s`. */
export function frame(s: FrameSpec): Buffer {
  const fcs = s.fcs ?? contentOf(s.blocks).length;
  if ((s.fcsBytes === 1) !== (s.singleSegment === true && s.fcsBytes < 2)) throw new Error('a 1-byte content size is the single-segment layout');
  const fcsFlag = { 0: 0, 1: 0, 2: 1, 4: 2, 8: 3 }[s.fcsBytes];
  const dictBytes = s.dictBytes ?? 0;
  const fhd = (fcsFlag << 6) | (s.singleSegment ? 0x20 : 0) | (s.checksum ? 0x04 : 0) | { 0: 0, 1: 1, 2: 2, 4: 3 }[dictBytes] | (s.fhdOr ?? 0);
  const parts: Buffer[] = [Buffer.from([0x28, 0xb5, 0x2f, 0xfd, fhd])];
  if (!s.singleSegment) parts.push(Buffer.from([s.wd ?? 0x58]));
  const le = (v: number, n: number): Buffer => {
    const b = Buffer.alloc(n);
    for (let i = 0; i < n; i++) b[i] = Math.floor(v / 2 ** (8 * i)) & 0xff;
    return b;
  };
  if (dictBytes > 0) parts.push(le(s.dictId ?? 7, dictBytes));
  if (s.fcsBytes > 0) parts.push(le(s.fcsBytes === 2 ? fcs - 256 : fcs, s.fcsBytes));
  s.blocks.forEach((b, i) => {
    const last = i === s.blocks.length - 1;
    if ('raw' in b) parts.push(blockHeader(last, 0, b.raw.length), Buffer.from(b.raw));
    else if ('rle' in b) parts.push(blockHeader(last, 1, b.n), Buffer.from([b.rle]));
    else parts.push(blockHeader(last, 2, b.compressed.length), Buffer.from(b.compressed));
  });
  if (s.checksum) parts.push(Buffer.from([1, 2, 3, 4]));
  return Buffer.concat(parts);
}
