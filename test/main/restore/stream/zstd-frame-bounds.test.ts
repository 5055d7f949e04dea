// The frame bounds the streaming zstd decoder follows beside node:zlib: for every prefix of a stream
// of frames made by hand (every header layout, raw and RLE blocks, checksums) and skippable frames,
// fed whole, byte by byte and in uneven pieces, partial() is exactly the bytes after the last whole
// frame; bytes that are no frame are left to the decoder (0). Pure: runs on every Node.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ZstdFrameBounds } from '../../../../src/main/restore/stream/zstd-frame-bounds.js';
import { frame } from '../../../workers/zstd-hand-frames.js';

function skippable(magicLow: number, data: Buffer): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt32LE(0x184d2a50 + magicLow, 0);
  h.writeUInt32LE(data.length, 4);
  return Buffer.concat([h, data]);
}

const units: Buffer[] = [
  frame({ fcsBytes: 0, blocks: [{ raw: Buffer.from('hello') }] }),
  frame({ fcsBytes: 1, singleSegment: true, checksum: true, blocks: [{ rle: 7, n: 200 }] }),
  skippable(0, Buffer.alloc(0)),
  frame({ fcsBytes: 8, dictBytes: 4, dictId: 99, checksum: true, blocks: [{ raw: Buffer.alloc(1000, 3) }, { rle: 1, n: 5000 }, { raw: Buffer.from('x') }] }),
  skippable(15, Buffer.from('user data 28 b5 2f fd')),
  frame({ fcsBytes: 2, dictBytes: 1, blocks: [{ raw: Buffer.alloc(0) }, { raw: Buffer.alloc(400, 5) }] }),
  frame({ fcsBytes: 4, dictBytes: 2, blocks: [{ raw: Buffer.alloc(300, 9) }, { rle: 0, n: 1 }] }),
];
const stream = Buffer.concat(units);
/** where each unit ends */
const ends = units.reduce<number[]>((a, u) => [...a, (a.at(-1) ?? 0) + u.length], []);

function partialOf(pieces: Uint8Array[]): number {
  const b = new ZstdFrameBounds();
  for (const p of pieces) b.feed(p);
  return b.partial();
}

test('frame bounds: exactly the bytes after the last whole frame, for every prefix and every split', () => {
  for (let n = 0; n <= stream.length; n++) {
    const lastEnd = [0, ...ends].filter((e) => e <= n).at(-1)!;
    const prefix = stream.subarray(0, n);
    assert.equal(partialOf([prefix]), n - lastEnd, `prefix ${n} whole`);
    // split at a point that moves through the stream, plus byte by byte for a few prefixes
    const cut = (n * 7919) % (n + 1);
    assert.equal(partialOf([prefix.subarray(0, cut), prefix.subarray(cut)]), n - lastEnd, `prefix ${n} cut at ${cut}`);
  }
  const bytes = [...stream].map((x) => Uint8Array.of(x));
  assert.equal(partialOf(bytes), 0, 'byte by byte');
  assert.equal(partialOf(bytes.slice(0, ends[3]! + 3)), 3, 'byte by byte, 3 bytes into a frame');
});

test('frame bounds: 1-3 bytes of a magic number after the last frame are partial; other bytes are the decoder\'s', () => {
  for (const tail of [[0x28], [0x28, 0xb5], [0x28, 0xb5, 0x2f], [0x5a], [0x50, 0x2a, 0x4d], [0x28, 0xb5, 0x2f, 0xfd], [0x50, 0x2a, 0x4d, 0x18, 9, 0, 0, 0]]) {
    assert.equal(partialOf([stream, Buffer.from(tail)]), tail.length, Buffer.from(tail).toString('hex'));
  }
  // not the start of any frame: nothing is followed any more (node:zlib leaves them unconsumed)
  assert.equal(partialOf([stream, Buffer.from('junk')]), 0, 'junk');
  assert.equal(partialOf([stream, Buffer.from([0])]), 0, 'a zero byte');
  assert.equal(partialOf([stream, Buffer.from([0x28, 0xb5, 0x2e])]), 0, 'a wrong third magic byte');
  // a reserved block type: the decoder fails on it
  const reserved = Buffer.concat([units[0]!.subarray(0, 6), Buffer.from([0x06, 0, 0])]);
  assert.equal(partialOf([stream, reserved]), 0, 'reserved block type');
  assert.equal(partialOf([]), 0, 'nothing');
});

test('frame bounds: where each frame (zstd or skippable) ends inside the bytes fed, for every split; where bytes begin no frame', () => {
  for (let cut = 0; cut <= stream.length; cut += 3) {
    const b = new ZstdFrameBounds();
    const first: number[] = [];
    const second: number[] = [];
    b.feed(stream.subarray(0, cut), first);
    b.feed(stream.subarray(cut), second);
    assert.deepEqual([...first, ...second.map((e) => e + cut)], ends, `cut at ${cut}`);
    assert.equal(b.lostAt, null);
  }
  const b = new ZstdFrameBounds();
  const found: number[] = [];
  b.feed(Buffer.concat([stream, Buffer.from('junk'), units[0]!]), found);
  assert.deepEqual(found, ends, 'nothing after bytes that begin no frame');
  assert.equal(b.lostAt, stream.length);
});
