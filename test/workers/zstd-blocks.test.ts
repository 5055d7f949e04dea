// zstd blocks compressed in workers (node:zlib, Node >= 22.15): independent frames that the stock
// `zstd -d` reads as one stream. On a runtime without zlib zstd (Node 20) only the detection and
// the refusal are checked; CI runs this file on both.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { blockBound, blockCodecAvailable, zstdBlockInto, zstdBound, compressBlockInto } from '../../src/workers/compress.js';
import { compressBlock, view } from '../../src/workers/chunk-worker.js';
import { zlibInto } from '../../src/workers/zlib-into.js';
import { zstdZlib } from '../../src/workers/zstd-zlib.js';
import { zstdDecompressSmall } from '../../src/main/restore/stream/inner-decoder.js';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { assertSameBytes, hasTool, inShared, run, sampleData, tempDir } from './tools.js';

const [major = 0, minor = 0] = process.versions.node.split('.').map(Number);
const RUNTIME_HAS_ZSTD = major > 22 || (major === 22 && minor >= 15);
const noZstd = RUNTIME_HAS_ZSTD ? false : `Node ${process.version} has no zstd in node:zlib`;

test('zstd detection matches the runtime version (Node >= 22.15 has zlib zstd)', () => {
  assert.equal(zstdZlib !== null, RUNTIME_HAS_ZSTD);
  assert.equal(blockCodecAvailable('zstd'), RUNTIME_HAS_ZSTD);
  assert.equal(blockCodecAvailable('gzip'), true);
});

test('without zlib zstd the worker task fails as a value, never with a wrong stream', { skip: RUNTIME_HAS_ZSTD ? 'this runtime has zlib zstd' : false }, () => {
  const data = sampleData(10_000, 1);
  const { sab } = inShared(data, data.length + zstdBound(data.length));
  const r = compressBlock({ codec: 'zstd', level: 3, input: { sab, offset: 0, length: data.length }, output: { sab, offset: data.length, length: zstdBound(data.length) } });
  assert.equal(r.ok, false);
  assert.match(r.ok ? '' : r.message, /no zstd in node:zlib/);
});

/** Blocks of `data` compressed one by one into frames, concatenated. */
function framesOf(data: Uint8Array, block: number, level: number, opts: { publicApi?: boolean } = {}): Buffer {
  const frames: Buffer[] = [];
  for (let off = 0; off < data.length; off += block) {
    const src = data.subarray(off, Math.min(off + block, data.length));
    const out = new Uint8Array(zstdBound(src.length));
    const n = opts.publicApi ? zlibInto('zstd', src, out, level, opts) : zstdBlockInto(src, out, level);
    assert.equal(typeof n, 'number');
    frames.push(Buffer.from(out.subarray(0, n as number)));
  }
  return Buffer.concat(frames);
}

test('zstd frames of independent blocks concatenate into one stream that zstd -d decodes', { skip: noZstd }, (t) => {
  const data = sampleData(3_000_000, 3);
  const stream = framesOf(data, 700_000, 3);
  assert.ok(stream.length < data.length * 0.8, 'the sample compresses');
  // frame by frame, as the restore decodes them (Node 22's one-shot zlib stops after the first)
  assertSameBytes(zstdDecompressSmall(stream, data.length), data, 'node:zlib');
  if (!hasTool('zstd')) return t.skip('zstd program not installed');
  assertSameBytes(run('zstd', ['-dc'], stream), data, 'zstd -dc');
  // each frame carries its content size and a checksum, as the zstd program writes them
  const one = framesOf(data.subarray(0, 700_000), 700_000, 3);
  const tmp = tempDir();
  let info: string;
  try {
    const file = join(tmp.dir, 'one.zst');
    writeFileSync(file, one);
    info = run('zstd', ['-lv', file]).toString();
  } finally {
    tmp.cleanup();
  }
  assert.match(info, /Check: XXH64/);
  assert.match(info, /Decompressed Size: .*\(700000 B\)/);
});

test('zstd levels 1, 3, 6 and 19; the direct path and the public API agree', { skip: noZstd }, () => {
  const data = sampleData(600_000, 9);
  const sizes = [1, 3, 6, 19].map((level) => {
    const direct = framesOf(data, data.length, level);
    const viaApi = framesOf(data, data.length, level, { publicApi: true });
    assert.ok(direct.equals(viaApi), `level ${level}: same frame either way`);
    assertSameBytes(zstdZlib!.zstdDecompressSync(direct), data, `level ${level}`);
    return direct.length;
  });
  assert.ok(sizes[3]! < sizes[0]!, `level 19 (${sizes[3]}) smaller than level 1 (${sizes[0]})`);
  assert.throws(() => zstdBlockInto(data, new Uint8Array(zstdBound(data.length)), 20), RangeError);
  assert.throws(() => zstdBlockInto(data, new Uint8Array(zstdBound(data.length)), 0), RangeError);
});

test('incompressible and empty blocks fit zstdBound; a too small output is reported, not truncated', { skip: noZstd }, () => {
  const random = run('head', ['-c', String(4 * 1024 * 1024), '/dev/urandom']);
  const out = new Uint8Array(zstdBound(random.length));
  const n = zstdBlockInto(random, out, 3);
  assert.equal(typeof n, 'number');
  assert.ok(blockBound(random.length) >= zstdBound(random.length));
  assertSameBytes(zstdZlib!.zstdDecompressSync(out.subarray(0, n as number)), random);
  assert.equal(zstdBlockInto(random, new Uint8Array(random.length - 1000), 3), 'too-large');
  assert.equal(zstdBlockInto(random, new Uint8Array(100), 3), 'too-large');
  const empty = new Uint8Array(zstdBound(0));
  const e = zstdBlockInto(new Uint8Array(0), empty, 3) as number;
  assert.equal(zstdZlib!.zstdDecompressSync(empty.subarray(0, e)).length, 0);
});

test('compressBlock task with codec zstd writes one frame into the shared output slice', { skip: noZstd }, () => {
  const data = sampleData(1_000_000, 4);
  const cap = blockBound(data.length);
  const { sab } = inShared(data, data.length + cap);
  const output = { sab, offset: data.length, length: cap };
  const r = compressBlock({ codec: 'zstd', level: 3, input: { sab, offset: 0, length: data.length }, output });
  assert.equal(r.ok, true);
  const frame = view(output).subarray(0, r.ok ? r.length : 0);
  assertSameBytes(zstdZlib!.zstdDecompressSync(frame), data);
  // the default codec stays gzip
  const g = compressBlock({ level: 6, input: { sab, offset: 0, length: data.length }, output });
  assert.equal(g.ok && view(output)[0] === 0x1f && view(output)[1] === 0x8b, true, 'gzip magic');
  assert.equal(compressBlockInto('zstd', data, new Uint8Array(10), 3), 'too-large');
});
