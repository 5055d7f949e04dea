// Test helper: inner tar archives made by hand, byte by byte, for the shapes GNU tar writes (pax
// GNU sparse 1.0) and the ones it never would (hostile maps, floods of extension headers).
import { headerChecksum } from '../../src/main/tar/tar-header.js';

/** A ustar header block of `name`, `type` and `bytes` of data. */
export function tarBlockHeader(name: string, type: string, bytes: number): Buffer {
  const b = Buffer.alloc(512);
  b.write(name, 0, 'latin1');
  b.write('0000644\0', 100, 'latin1');
  b.write(bytes.toString(8).padStart(11, '0') + '\0', 124, 'latin1');
  b.write('00000000000\0', 136, 'latin1');
  b[156] = type.charCodeAt(0);
  b.write('ustar\0' + '00', 257, 'latin1');
  b.write(headerChecksum(b).unsigned.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1');
  return b;
}

/** `b` padded with zeros to whole 512-byte blocks. */
export function toBlocks(b: Buffer): Buffer {
  return Buffer.concat([b, Buffer.alloc((512 - (b.length % 512)) % 512)]);
}

/** One pax record `<len> key=value\n`. */
export function paxRecord(k: string, v: string): string {
  const body = ` ${k}=${v}\n`;
  let n = body.length + 1;
  while (`${n}${body}`.length !== n) n++;
  return `${n}${body}`;
}

/** A pax 1.0 sparse member `name` (default vm3/private.img): its map text, then each run padded
 *  to a block (as GNU tar writes it), and the end of the archive. */
export function paxSparse(spans: { offset: number; length: number }[], size: number, data: (s: { offset: number; length: number }) => Buffer, mapText?: string, name = 'vm3/private.img'): Buffer {
  const slash = name.lastIndexOf('/');
  const dir = name.slice(0, slash + 1);
  const base = name.slice(slash + 1);
  const pax = Buffer.from(paxRecord('GNU.sparse.major', '1') + paxRecord('GNU.sparse.minor', '0') + paxRecord('GNU.sparse.name', name) + paxRecord('GNU.sparse.realsize', String(size)));
  const map = toBlocks(Buffer.from(mapText ?? `${spans.length}\n${spans.map((s) => `${s.offset}\n${s.length}\n`).join('')}`, 'latin1'));
  const runs = spans.map((s) => toBlocks(data(s)));
  const stored = map.length + runs.reduce((a, r) => a + r.length, 0);
  return Buffer.concat([tarBlockHeader(`${dir}PaxHeaders/${base}`, 'x', pax.length), toBlocks(pax), tarBlockHeader(`${dir}GNUSparseFile.0/${base}`, '0', stored), map, ...runs, Buffer.alloc(1024)]);
}
