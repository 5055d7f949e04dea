// The zstd frame walker (RFC 8878): frames made by hand (every header layout, raw and RLE blocks;
// the zstd program decodes them, so they are real frames) and by the zstd program (compressed blocks,
// checksums) are measured to their exact end from every prefix; skippable frames are recognised;
// reserved bits and block types, blocks over their maximum and frames over the limit are refused.
// Pure: runs on every Node.
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFrameHeader, walkFrame, type FrameHeader, type FrameWalk } from '../../src/workers/zstd-frame.js';
import { assertSameBytes, hasTool, run, sampleData } from './tools.js';
import { contentOf, frame, type Block, type FrameSpec } from './zstd-hand-frames.js';

/** What the restore's scanner allows a frame (zstdBound of 8 MiB). */
const MAX_FRAME_IN = 8 * 1024 * 1024 + 32 * 1024 + 64;

const noProgram = hasTool('zstd') ? false : 'zstd program not installed';

function header(b: Uint8Array): FrameHeader {
  const r = readFrameHeader(b);
  assert.equal(r.kind, 'frame', JSON.stringify(r));
  return (r as { header: FrameHeader }).header;
}

/** Walk `f` from every prefix length the walker asks for, as the scanner does across writes. */
function walkInSteps(f: Uint8Array, limit = MAX_FRAME_IN): FrameWalk {
  let need = 4;
  let resume = 0;
  for (;;) {
    const b = f.subarray(0, Math.min(need, f.length));
    const r = readFrameHeader(b);
    if (r.kind === 'short') {
      assert.ok(r.need > b.length, `header needs more than it has (${r.need} > ${b.length})`);
      need = r.need;
      continue;
    }
    if (r.kind !== 'frame') return { kind: 'bad', why: r.kind };
    const w = walkFrame(b, r.header, resume, limit);
    if (w.kind !== 'short') return w;
    assert.ok(w.need > b.length && w.resume >= resume, 'progress');
    if (b.length === f.length) return w;
    need = w.need;
    resume = w.resume;
  }
}

const small = sampleData(5000, 3);

/** The block types of a single frame `f` (read here independently of the walker). */
function blockTypes(f: Uint8Array): string[] {
  const seen = new Set<number>();
  for (let at = header(f).headerSize; ; ) {
    const bh = f[at]! | (f[at + 1]! << 8) | (f[at + 2]! << 16);
    const type = (bh >> 1) & 3;
    seen.add(type);
    at += 3 + (type === 1 ? 1 : bh >>> 3);
    if ((bh & 1) !== 0) break;
  }
  return [...seen].sort().map((t) => ['raw', 'RLE', 'compressed'][t]!);
}

test('header layouts: every FCS size, single segment, window descriptor, dictionary id, checksum flag', () => {
  const blocks: Block[] = [{ raw: small.subarray(0, 300) }];
  assert.deepEqual(header(frame({ fcsBytes: 1, singleSegment: true, blocks: [{ raw: small.subarray(0, 200) }] })), { headerSize: 6, contentSize: 200, windowSize: 200, dictId: 0, checksum: false });
  assert.deepEqual(header(frame({ fcsBytes: 2, blocks })), { headerSize: 8, contentSize: 300, windowSize: 2 * 1024 * 1024, dictId: 0, checksum: false });
  assert.deepEqual(header(frame({ fcsBytes: 2, singleSegment: true, blocks })), { headerSize: 7, contentSize: 300, windowSize: 300, dictId: 0, checksum: false });
  assert.deepEqual(header(frame({ fcsBytes: 4, blocks, checksum: true, wd: 0x59 })), { headerSize: 10, contentSize: 300, windowSize: 2 * 1024 * 1024 + 256 * 1024, dictId: 0, checksum: true });
  assert.deepEqual(header(frame({ fcsBytes: 8, blocks, fcs: 2 ** 40 + 5 })), { headerSize: 14, contentSize: 2 ** 40 + 5, windowSize: 2 * 1024 * 1024, dictId: 0, checksum: false });
  assert.deepEqual(header(frame({ fcsBytes: 0, blocks, wd: 0 })), { headerSize: 6, contentSize: null, windowSize: 1024, dictId: 0, checksum: false });
  for (const [dictBytes, dictId] of [[1, 200], [2, 60000], [4, 0xfedcba98]] as const) {
    assert.deepEqual(header(frame({ fcsBytes: 4, dictBytes, dictId, blocks })), { headerSize: 10 + dictBytes, contentSize: 300, windowSize: 2 * 1024 * 1024, dictId, checksum: false });
  }
  // the largest header: window, 4-byte dictionary id, 8-byte content size
  assert.equal(header(frame({ fcsBytes: 8, dictBytes: 4, blocks })).headerSize, 18);
});

test('hand-made frames (raw, RLE, empty blocks; every header layout): exact size from every prefix; the zstd program decodes them', { skip: noProgram }, () => {
  const specs: FrameSpec[] = [
    { fcsBytes: 1, singleSegment: true, blocks: [{ raw: small.subarray(0, 100) }] },
    { fcsBytes: 2, blocks: [{ raw: small.subarray(0, 1000) }, { rle: 0, n: 4000 }, { raw: small.subarray(1000, 1300) }] },
    { fcsBytes: 4, singleSegment: true, blocks: [{ rle: 0x41, n: 70_000 }, { raw: small }] },
    { fcsBytes: 8, blocks: [{ raw: new Uint8Array(0) }, { rle: 7, n: 128 * 1024 }, { raw: new Uint8Array(0) }] },
    { fcsBytes: 0, blocks: [{ raw: small.subarray(0, 10) }, { rle: 1, n: 1 }] },
    { fcsBytes: 1, singleSegment: true, fcs: 0, blocks: [{ raw: new Uint8Array(0) }] },
  ];
  for (const [i, s] of specs.entries()) {
    const f = frame(s);
    // the program is the reference for what a frame is: it decodes the concatenation of this frame
    // and another, so it found this one's end where the walker does
    const other = frame(specs[1]!);
    assertSameBytes(run('zstd', ['-dc'], Buffer.concat([f, other])), Buffer.concat([contentOf(s.blocks), contentOf(specs[1]!.blocks)]), `spec ${i}: zstd -dc`);
    const h = header(f);
    assert.deepEqual(walkFrame(f, h, 0, MAX_FRAME_IN), { kind: 'frame', size: f.length, header: h }, `spec ${i}`);
    assert.deepEqual(walkFrame(Buffer.concat([f, other]), h, 0, MAX_FRAME_IN), { kind: 'frame', size: f.length, header: h }, `spec ${i}: followed by another frame`);
    assert.deepEqual(walkInSteps(f), { kind: 'frame', size: f.length, header: h }, `spec ${i}: in steps`);
    for (let n = 0; n < f.length; n++) {
      const r = readFrameHeader(f.subarray(0, n));
      if (r.kind === 'short') {
        assert.ok(r.need > n && r.need <= h.headerSize, `spec ${i}, prefix ${n}: header need ${r.need}`);
        continue;
      }
      const w = walkFrame(f.subarray(0, n), h, 0, MAX_FRAME_IN);
      assert.equal(w.kind, 'short', `spec ${i}, prefix ${n}`);
      if (w.kind === 'short') assert.ok(w.need > n && w.need <= f.length, `spec ${i}, prefix ${n}: need ${w.need} of ${f.length}`);
    }
  }
});

test('frames of the zstd program (compressed, raw and RLE blocks, checksum): split exactly, each part decodes alone', { skip: noProgram }, () => {
  const inputs = [sampleData(3_000_000, 5), Buffer.alloc(600_000), randomBytes(300_000), sampleData(1, 1)];
  // from a pipe the program knows the size only when told (--stream-size): then it writes it
  const frames = inputs.map((d, i) => run('zstd', [i % 2 === 0 ? '-3' : '-19', '-c', `--stream-size=${d.length}`, i === 3 ? '--no-check' : '--check'], d));
  const stream = Buffer.concat(frames);
  assert.deepEqual(frames.map(blockTypes), [['compressed'], ['RLE', 'compressed'], ['raw'], ['raw']], 'every block type is walked');
  let at = 0;
  for (const [i, f] of frames.entries()) {
    const h = header(stream.subarray(at));
    assert.equal(h.contentSize, inputs[i]!.length, `frame ${i}: content size`);
    assert.equal(h.checksum, i !== 3, `frame ${i}: checksum flag`);
    const w = walkFrame(stream.subarray(at), h, 0, MAX_FRAME_IN);
    assert.deepEqual(w, { kind: 'frame', size: f.length, header: h }, `frame ${i}`);
    assert.deepEqual(walkInSteps(stream.subarray(at, at + f.length)), w, `frame ${i}: in steps`);
    assertSameBytes(run('zstd', ['-dc'], stream.subarray(at, at + f.length)), inputs[i]!, `frame ${i} alone`);
    at += f.length;
  }
});

test('skippable frames: all 16 magic numbers, their size; not zstd at all', () => {
  for (let m = 0; m < 16; m++) {
    const f = Buffer.concat([Buffer.from([0x50 + m, 0x2a, 0x4d, 0x18]), Buffer.from([3, 1, 0, 0]), Buffer.alloc(259)]);
    assert.deepEqual(readFrameHeader(f), { kind: 'skippable', size: 8 + 259 });
    for (let n = 0; n < 8; n++) assert.equal(readFrameHeader(f.subarray(0, n)).kind, 'short', `prefix ${n}`);
  }
  assert.deepEqual(readFrameHeader(Buffer.from([0x60, 0x2a, 0x4d, 0x18, 0, 0, 0, 0])), { kind: 'bad', why: 'not a zstd frame' });
  for (const junk of [Buffer.from('junk'), Buffer.alloc(8), Buffer.from([0x28, 0xb6]), Buffer.from([0x1f, 0x8b, 8, 0])]) {
    assert.equal(readFrameHeader(junk).kind, 'bad', junk.toString('hex'));
  }
  assert.equal(readFrameHeader(Buffer.from([0x28, 0xb5])).kind, 'short', 'a prefix of the magic');
});

test('malformed: reserved bit, reserved block type, blocks over their maximum, frames over the limit', () => {
  const ok = { fcsBytes: 4 as const, blocks: [{ raw: small.subarray(0, 1000) }] };
  assert.deepEqual(readFrameHeader(frame({ ...ok, fhdOr: 0x08 })), { kind: 'bad', why: 'reserved bit set in the frame header' });
  assert.equal(header(frame({ ...ok, fhdOr: 0x10 })).contentSize, 1000, 'the unused bit is ignored');
  const walk = (f: Buffer): FrameWalk => walkFrame(f, header(f), 0, MAX_FRAME_IN);
  const reserved = frame(ok);
  reserved[10] = (reserved[10]! & ~0x06) | 0x06; // the first block header's type bits: 3
  assert.deepEqual(walk(reserved), { kind: 'bad', why: 'reserved block type' });
  const over = 128 * 1024 + 1;
  assert.match(String((walk(frame({ fcsBytes: 4, blocks: [{ raw: new Uint8Array(over) }] })) as { why?: string }).why), /block of 131073 bytes over the maximum 131072/);
  assert.match(String((walk(frame({ fcsBytes: 4, blocks: [{ rle: 0, n: over }] })) as { why?: string }).why), /over the maximum/);
  // the maximum is the window when that is smaller: 1 KiB window (wd 0), or the content (single segment)
  assert.match(String((walk(frame({ fcsBytes: 4, wd: 0, blocks: [{ raw: new Uint8Array(1025) }] })) as { why?: string }).why), /block of 1025 bytes over the maximum 1024/);
  assert.match(String((walk(frame({ fcsBytes: 4, singleSegment: true, fcs: 10, blocks: [{ raw: new Uint8Array(11) }] })) as { why?: string }).why), /over the maximum 10/);
  // a hostile block size: the walk stops at the limit instead of asking for gigabytes
  const many = frame({ fcsBytes: 4, blocks: Array.from({ length: 40 }, () => ({ raw: new Uint8Array(128 * 1024) })) });
  assert.match(String((walkFrame(many, header(many), 0, 4 * 1024 * 1024) as { why?: string }).why), /frame larger than 4194304 bytes/);
  assert.equal(walkFrame(many.subarray(0, 100), header(many), 0, 64 * 1024).kind, 'bad', 'refused before its bytes arrive');
});
