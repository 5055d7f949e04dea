// The exact zstd frame decoder of the parallel restore (a worker task): one frame filling its input
// to the last byte, decoded straight into an output of exactly its content size; anything else —
// bytes after the frame, a second frame, an output one byte off, truncation, corruption, a bad
// checksum — fails 'bad-data'. Needs zstd in node:zlib (Node >= 22.15): skipped on Node 20.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { unzstdFrameInto, zstdBlockInto, zstdBound } from '../../src/workers/compress.js';
import { unzstdFrame } from '../../src/workers/chunk-worker.js';
import { CodecError } from '../../src/workers/codec-error.js';
import { zstdDirectAvailable } from '../../src/workers/zlib-into.js';
import { zstdZlib } from '../../src/workers/zstd-zlib.js';
import { assertSameBytes, inShared, sampleData } from './tools.js';

const noZstd = zstdZlib === null ? `Node ${process.version} has no zstd in node:zlib` : false;

function frameOf(data: Uint8Array, level = 3): Buffer {
  const out = new Uint8Array(zstdBound(data.length));
  return Buffer.from(out.subarray(0, zstdBlockInto(data, out, level) as number));
}

/** `f` (our frame: magic, descriptor, window byte, 4-byte content size) declaring `size` instead. */
function withSize(f: Buffer, size: number): Buffer {
  assert.equal(f[4]! >> 6, 2, 'a 4-byte content size field');
  const c = Buffer.from(f);
  c.writeUInt32LE(size, 6);
  return c;
}

const badData = (e: unknown): boolean => e instanceof CodecError && e.reason === 'bad-data';

test('zstdDirectAvailable: true exactly where node:zlib has zstd', () => {
  assert.equal(zstdDirectAvailable(), zstdZlib !== null);
});

test('unzstdFrameInto: the exact frame into its exact size; every other shape fails bad-data', { skip: noZstd }, () => {
  const data = sampleData(4 * 1024 * 1024, 21);
  const f = frameOf(data);
  const out = new Uint8Array(data.length);
  assert.equal(unzstdFrameInto(f, out), data.length);
  assertSameBytes(out, data, 'decoded');
  const other = frameOf(sampleData(1000, 2));
  const flipped = Buffer.from(f);
  flipped[f.length >> 1] = flipped[f.length >> 1]! ^ 0x20;
  const badSum = Buffer.from(f);
  badSum[f.length - 1] = badSum[f.length - 1]! ^ 0x01; // the last byte is the checksum's
  const cases: [string, Uint8Array, number, RegExp][] = [
    ['output one byte short', f, data.length - 1, /declares 4194304 content size, not 4194303/],
    ['output one byte long', f, data.length + 1, /declares 4194304 content size, not 4194305/],
    ['header content size one byte short', withSize(f, data.length - 1), data.length - 1, /corrupt/i],
    ['header content size one byte long', withSize(f, data.length + 1), data.length + 1, /corrupt/i],
    ['junk after the frame', Buffer.concat([f, Buffer.from('junk')]), data.length, /it ends at byte/],
    ['zeros after the frame', Buffer.concat([f, Buffer.alloc(8)]), data.length, /it ends at byte/],
    ['a second frame', Buffer.concat([f, other]), data.length, /it ends at byte/],
    ['a second frame, room for both', Buffer.concat([f, other]), data.length + 1000, /not exactly one zstd frame: it ends at byte/],
    ['the next frame\'s header only', Buffer.concat([f, other.subarray(0, 10)]), data.length, /not exactly one zstd frame/],
    ['truncated', f.subarray(0, f.length - 10), data.length, /not exactly one zstd frame: truncated/],
    ['truncated inside the last block', f.subarray(0, f.length - 4), data.length, /not exactly one zstd frame: truncated/],
    ['a skippable frame', Buffer.from([0x50, 0x2a, 0x4d, 0x18, 0, 0, 0, 0]), 0, /a skippable frame/],
    ['corrupt block', flipped, data.length, /corrupt/i],
    ['bad checksum', badSum, data.length, /checksum/i],
    ['not zstd', Buffer.from('not a frame at all, not at all'), 10, /not a zstd frame/],
  ];
  for (const [what, input, size, msg] of cases) {
    assert.throws(() => unzstdFrameInto(input, new Uint8Array(size)), (e: unknown) => badData(e) && msg.test((e as Error).message), what);
  }
});

test('the worker task: a result value, never a throw, for bad frames', { skip: noZstd }, () => {
  const data = sampleData(300_000, 4);
  const f = frameOf(data, 19);
  const { sab } = inShared(f, f.length + data.length);
  const ok = unzstdFrame({ input: { sab, offset: 0, length: f.length }, output: { sab, offset: f.length, length: data.length } });
  assert.deepEqual(ok, { ok: true, length: data.length });
  assertSameBytes(new Uint8Array(sab, f.length, data.length), data, 'decoded into the slot');
  const bad = unzstdFrame({ input: { sab, offset: 0, length: f.length - 1 }, output: { sab, offset: f.length, length: data.length } });
  assert.equal(bad.ok, false);
  assert.equal(bad.ok ? '' : bad.reason, 'bad-data');
});
