// Our gzip members carry their size in a FEXTRA subfield ('Qv'): every reader still decodes them
// (gzip -d, pigz -d, node:zlib), and the exact member decoder used by the parallel restore accepts
// only a member that fills its bytes and its output exactly.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as zlib from 'node:zlib';
import { CodecError } from '../../src/workers/codec-error.js';
import { gunzipMemberInto, gzipBlockInto, gzipBound } from '../../src/workers/compress.js';
import { MARKED_HEADER_BYTES, memberHead } from '../../src/workers/gzip-member.js';
import { assertSameBytes, hasTool, run, sampleData } from './tools.js';

function members(data: Uint8Array, block: number, level = 6): Buffer[] {
  const out: Buffer[] = [];
  for (let off = 0; off < data.length; off += block) {
    const src = data.subarray(off, Math.min(off + block, data.length));
    const buf = new Uint8Array(gzipBound(src.length));
    const n = gzipBlockInto(src, buf, level);
    assert.equal(typeof n, 'number');
    out.push(Buffer.from(buf.subarray(0, n as number)));
  }
  return out;
}

const isize = (m: Uint8Array): number => Buffer.from(m.buffer, m.byteOffset, m.length).readUInt32LE(m.length - 4);

test('each member carries FEXTRA with one Qv subfield holding its own total size', () => {
  for (const level of [1, 6, 9, 0]) {
    for (const m of members(sampleData(700_000, 4), 300_000, level)) {
      assert.equal(m[3], 0x04, 'FLG is FEXTRA alone');
      assert.equal(m.readUInt16LE(10), 8, 'XLEN');
      assert.equal(String.fromCharCode(m[12]!, m[13]!), 'Qv');
      assert.equal(m.readUInt16LE(14), 4, 'LEN');
      assert.equal(m.readUInt32LE(16), m.length, 'the size field is the member length');
      assert.deepEqual(memberHead(m, 0), { kind: 'marked', size: m.length });
    }
  }
});

test('marked members: gzip -dc, pigz -dc and node:zlib decode the concatenation unchanged', (t) => {
  const data = sampleData(2_000_000, 9);
  const stream = Buffer.concat(members(data, 512 * 1024));
  assertSameBytes(zlib.gunzipSync(stream), data, 'node:zlib');
  assertSameBytes(run('gzip', ['-dc'], stream), data, 'gzip -dc');
  assert.equal(run('gzip', ['-t'], stream).length, 0, 'gzip -t is silent');
  if (!hasTool('pigz')) return t.skip('pigz not installed (gzip -d and zlib were checked)');
  assertSameBytes(run('pigz', ['-dc'], stream), data, 'pigz -dc');
});

test('memberHead: short, foreign and marked headers', () => {
  const m = members(sampleData(100_000, 2), 100_000)[0]!;
  for (let n = 0; n < MARKED_HEADER_BYTES; n++) assert.deepEqual(memberHead(m.subarray(0, n), 0), { kind: 'short' }, `${n} bytes`);
  assert.deepEqual(memberHead(Buffer.concat([Buffer.alloc(3), m]), 3), { kind: 'marked', size: m.length });
  assert.deepEqual(memberHead(zlib.gzipSync(Buffer.alloc(1000)), 0), { kind: 'other' }, 'zlib without FEXTRA');
  assert.deepEqual(memberHead(Buffer.from([0x1f, 0x8b, 8, 0]), 0), { kind: 'other' }, 'short but plainly not ours');
  assert.deepEqual(memberHead(Buffer.alloc(40), 0), { kind: 'other' });
  const otherSub = Buffer.from(m);
  otherSub[12] = 0x42; // a BGZF 'BC' subfield is not ours
  otherSub[13] = 0x43;
  assert.deepEqual(memberHead(otherSub, 0), { kind: 'other' });
  const withName = Buffer.from(m);
  withName[3] = 0x04 | 0x08; // FEXTRA + FNAME: not the layout we write
  assert.deepEqual(memberHead(withName, 0), { kind: 'other' });
});

test('gunzipMemberInto: exact member and size only', () => {
  const data = sampleData(400_000, 6);
  const [m] = members(data, data.length);
  const member = m!;
  const out = new Uint8Array(isize(member));
  assert.equal(out.length, data.length);
  assert.equal(gunzipMemberInto(member, out), data.length);
  assertSameBytes(out, data);
  const bad = (input: Uint8Array, output: Uint8Array, what: string): void =>
    assert.throws(() => gunzipMemberInto(input, output), (e: unknown) => e instanceof CodecError && e.reason === 'bad-data', what);
  bad(Buffer.concat([member, Buffer.alloc(1)]), new Uint8Array(data.length), 'one trailing zero byte');
  bad(Buffer.concat([member, Buffer.from('junk')]), new Uint8Array(data.length), 'trailing garbage');
  bad(member.subarray(0, member.length - 1), new Uint8Array(data.length), 'truncated');
  bad(member, new Uint8Array(data.length - 1), 'output one byte short');
  bad(member, new Uint8Array(data.length + 1), 'output one byte long');
  const flipped = Buffer.from(member);
  flipped[member.length >> 1] = (flipped[member.length >> 1] ?? 0) ^ 0x55;
  bad(flipped, new Uint8Array(data.length), 'corrupt deflate data');
  const second = members(sampleData(1000, 1), 1000)[0]!;
  bad(Buffer.concat([member, second]), new Uint8Array(data.length), 'a second member inside the bytes');
});
