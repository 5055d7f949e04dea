// Parallel zstd decoding on restore: which frames the workers take (pure, every Node); then, where
// node:zlib has zstd, the scanner over our frames (in order, whatever the cuts, skippable frames
// skipped), the hand-over to the streaming decoder at the first frame without a content size (the
// zstd program reading a pipe, as Qubes' archives are made), hostile frames (a lying content size,
// corruption, a bad checksum: ERR_CORRUPT, never other bytes), truncation, and the image extractor
// on a sparse image: our frames, a Qubes-style stream and both mixed restore identically.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { isQvmBackupError } from '../../../../src/main/errors.js';
import { WorkerPool } from '../../../../src/main/pipeline/worker-pool.js';
import { MAX_FRAME_IN, zstdFrames } from '../../../../src/main/restore/stream/frame-unzstd.js';
import { openImageExtractor } from '../../../../src/main/restore/stream/image-extractor.js';
import { createInnerDecoder } from '../../../../src/main/restore/stream/inner-decoder.js';
import { MAX_UNIT_OUT, UnitScanner, unitPoolBytes, unitPoolsFor, type UnitOutput, type UnitPools } from '../../../../src/main/restore/stream/parallel-units.js';
import { RunStats } from '../../../../src/main/stats/run-stats.js';
import { zstdBlockInto, zstdBound } from '../../../../src/workers/compress.js';
import { readFrameHeader } from '../../../../src/workers/zstd-frame.js';
import { zstdZlib } from '../../../../src/workers/zstd-zlib.js';
import { busyLoops } from '../../../helpers/load.js';
import { assertSameBytes, sampleData } from '../../../workers/tools.js';
import { frame, type Block } from '../../../workers/zstd-hand-frames.js';
import { sparseImage, tempDir } from './stream-helpers.js';

const noZstd = zstdZlib === null ? `Node ${process.version} has no zstd in node:zlib` : false;
const noProgram = spawnSync('sh', ['-c', 'command -v zstd'], { stdio: 'ignore' }).status === 0 ? false : 'zstd program not installed';

test('the format: units only for frames the workers can decode exactly; anything else goes to the streaming decoder', () => {
  const small = sampleData(5000, 3);
  const blocks: Block[] = [{ raw: small.subarray(0, 1000) }, { rle: 0, n: 5000 }];
  const unit = frame({ fcsBytes: 4, checksum: true, blocks });
  assert.deepEqual(zstdFrames.measure(unit, 0), { kind: 'unit', size: unit.length, outSize: 6000 });
  assert.deepEqual(zstdFrames.measure(Buffer.concat([unit, Buffer.from('more')]), 0), { kind: 'unit', size: unit.length, outSize: 6000 });
  assert.equal(zstdFrames.measure(unit.subarray(0, 12), 0).kind, 'short');
  assert.equal(zstdFrames.measure(unit.subarray(0, 3), 0).kind, 'short');
  const other = { kind: 'other' };
  assert.deepEqual(zstdFrames.measure(frame({ fcsBytes: 0, blocks }), 0), other, 'no content size (the zstd program reading a pipe)');
  assert.deepEqual(zstdFrames.measure(frame({ fcsBytes: 4, dictBytes: 2, blocks }), 0), other, 'a dictionary');
  assert.deepEqual(zstdFrames.measure(frame({ fcsBytes: 4, wd: (14 << 3) | 1, blocks }), 0), other, 'window 2^24 + 2^21');
  assert.equal(zstdFrames.measure(frame({ fcsBytes: 4, wd: 13 << 3, blocks }), 0).kind, 'unit', 'window 2^23 fits');
  assert.deepEqual(zstdFrames.measure(frame({ fcsBytes: 4, fcs: MAX_UNIT_OUT + 1, blocks }), 0), other, 'more content than a slot');
  assert.deepEqual(zstdFrames.measure(frame({ fcsBytes: 4, fcs: 0, blocks: [{ raw: new Uint8Array(0) }] }), 0), other, 'empty');
  assert.deepEqual(zstdFrames.measure(frame({ fcsBytes: 4, fhdOr: 0x08, blocks }), 0), other, 'reserved bit');
  assert.deepEqual(zstdFrames.measure(Buffer.from('junk after the frames'), 0), other, 'not zstd');
  assert.equal(zstdFrames.measure(frame({ fcsBytes: 4, fcs: MAX_UNIT_OUT, blocks }), 0).kind, 'unit', 'a slot full (the worker checks the real size)');
  const skippable = Buffer.from([0x5e, 0x2a, 0x4d, 0x18, 3, 1, 0, 0]);
  assert.deepEqual(zstdFrames.measure(skippable, 0), { kind: 'skip', size: 8 + 259 });
  assert.ok(MAX_FRAME_IN >= MAX_UNIT_OUT + 64 * 3 + 18 + 4, 'a frame of raw blocks filling a slot fits the scratch slots');
});

let pool: WorkerPool;
before(() => {
  pool = new WorkerPool({ threads: 2 });
});
after(async () => {
  await pool.destroy();
});

function pools(): UnitPools {
  const p = unitPoolsFor(pool, zstdFrames);
  assert.ok(p !== undefined, 'two threads and node:zlib zstd: parallel frames are used');
  return p;
}

/** Our writer's frames for `data` in blocks of `block` bytes. */
function ours(data: Uint8Array, block: number): Buffer[] {
  const out: Buffer[] = [];
  for (let off = 0; off < data.length; off += block) {
    const src = data.subarray(off, Math.min(off + block, data.length));
    const buf = new Uint8Array(zstdBound(src.length));
    out.push(Buffer.from(buf.subarray(0, zstdBlockInto(src, buf, 3) as number)));
  }
  return out;
}

/** `zstd -c` reading a pipe: one frame without a content size (how Qubes' `-Z zstd` archives are made). */
function program(data: Uint8Array, args: string[] = ['-3']): Buffer {
  const r = spawnSync('zstd', [...args, '-c'], { input: data, maxBuffer: 1 << 30 });
  assert.equal(r.status, 0, r.stderr?.toString());
  return r.stdout;
}

/** The streaming decoder alone (the reference the parallel path must equal), or 'error'. */
function streaming(input: Uint8Array): Promise<Buffer | 'error'> {
  return new Promise((resolve) => {
    const d = createInnerDecoder({ kind: 'zstd' })!;
    const out: Buffer[] = [];
    d.on('data', (b: Buffer) => out.push(b));
    d.on('error', () => resolve('error'));
    d.on('end', () => resolve(Buffer.concat(out)));
    d.end(input);
  });
}

function shared(bytes: Uint8Array): Uint8Array {
  const v = new Uint8Array(new SharedArrayBuffer(bytes.length));
  v.set(bytes);
  return v;
}

interface Run {
  parallel: Buffer;
  handed: Buffer;
  frames: number;
  error?: unknown;
}

/** Feed `stream` cut at `cuts` through a scanner and collect what comes out (as the extractor does). */
async function scan(p: UnitPools, stream: Uint8Array, cuts: number[], o: { shared?: boolean } = {}): Promise<Run> {
  const ac = new AbortController();
  const parts: Buffer[] = [];
  let error: unknown;
  let frames = 0;
  let chain = Promise.resolve();
  const deliver = (out: Promise<UnitOutput>): void => {
    frames++;
    chain = chain.then(async () => {
      try {
        const m = await out;
        if (error === undefined) parts.push(Buffer.from(m.bytes));
        m.release();
      } catch (e) {
        error ??= e;
      }
    });
  };
  const s = new UnitScanner(p, { what: 'vm1/private.img', signal: ac.signal, deliver });
  const handed: Uint8Array[] = [];
  let at = 0;
  let tail = null as Uint8Array[] | null;
  try {
    for (const end of [...cuts, stream.length]) {
      const piece = stream.subarray(at, end);
      at = end;
      tail = await s.write(o.shared === false ? Buffer.from(piece) : shared(piece));
      if (tail !== null) {
        handed.push(...tail, stream.subarray(at));
        break;
      }
    }
    if (tail === null) s.finish();
  } catch (e) {
    error ??= e;
    s.close();
  }
  await chain;
  assert.equal(p.out.inUse(), 0, 'output slots all free');
  assert.equal(p.scratch.inUse(), 0, 'scratch slots all free');
  return { parallel: Buffer.concat(parts), handed: Buffer.concat(handed), frames, ...(error !== undefined ? { error } : {}) };
}

const corrupt = (e: unknown): boolean => isQvmBackupError(e) && e.code === 'ERR_CORRUPT';
const even = (n: number, parts: number): number[] => Array.from({ length: parts - 1 }, (_, i) => Math.floor(((i + 1) * n) / parts));

test('our frames: decoded by the workers in order, whatever the cuts; skippable frames skipped', { skip: noZstd }, async () => {
  const p = pools();
  assert.equal(unitPoolBytes(p), 4 * MAX_UNIT_OUT + 2 * MAX_FRAME_IN, 'the memory the plan counts');
  const data = sampleData(3_000_000, 11);
  const frames = ours(data, 256 * 1024);
  const skip = (n: number): Buffer => {
    const h = Buffer.from([0x50 + (n & 15), 0x2a, 0x4d, 0x18, 0, 0, 0, 0]);
    h.writeUInt32LE(n, 4);
    return Buffer.concat([h, Buffer.alloc(n, 0xee)]);
  };
  const withSkips = Buffer.concat([skip(0), frames[0]!, skip(300), ...frames.slice(1, 4), skip(70_000), ...frames.slice(4), skip(5)]);
  for (const stream of [Buffer.concat(frames), withSkips]) {
    const cutSets: number[][] = [
      [],
      [frames[0]!.length], // at a boundary
      [frames[0]!.length + 3, frames[0]!.length + 9], // inside the next header, twice
      even(stream.length, 41), // straddling many
      Array.from({ length: 300 }, (_, i) => i * 7 + 1), // many tiny writes at the start
    ];
    for (const cuts of cutSets) {
      const r = await scan(p, stream, cuts);
      assert.equal(r.error, undefined, `cuts ${cuts.length}: ${String(r.error)}`);
      assert.equal(r.handed.length, 0, 'nothing for the streaming decoder');
      assert.equal(r.frames, frames.length);
      assertSameBytes(r.parallel, data, `cuts ${cuts.length}`);
    }
  }
  const r = await scan(p, Buffer.concat(frames), [100_000, 900_000], { shared: false });
  assert.equal(r.frames, frames.length);
  assertSameBytes(r.parallel, data, 'unshared input (gathered in scratch slots)');
  // the stream ends inside a skippable frame: as truncated as inside any other
  const cut = await scan(p, withSkips.subarray(0, withSkips.length - 2), []);
  assert.ok(corrupt(cut.error), String(cut.error));
  assert.match((cut.error as Error).message, /ends inside a zstd frame/);
});

test('fallback in the middle: from the first frame without a content size (zstd program, pipe) the rest is handed over', { skip: noZstd || noProgram }, async () => {
  const p = pools();
  const a = sampleData(900_000, 4);
  const b = sampleData(700_000, 5);
  const first = ours(a, 300_000);
  const theirs = program(b, ['-3', '-T2']);
  const more = ours(a.subarray(0, 5000), 5000);
  const stream = Buffer.concat([...first, theirs, ...more]);
  const boundary = first.reduce((n, f) => n + f.length, 0);
  for (const cuts of [[], [boundary + 3], [boundary - 7], [boundary + theirs.length + 2]]) {
    const r = await scan(p, stream, cuts);
    assert.equal(r.error, undefined);
    assert.equal(r.frames, first.length);
    assertSameBytes(r.parallel, a, 'our frames');
    assertSameBytes(r.handed, stream.subarray(boundary), `handed over from the program's frame on (cuts ${cuts.join(',')})`);
    assertSameBytes((await streaming(r.handed)) as Buffer, Buffer.concat([b, a.subarray(0, 5000)]), 'which the streaming decoder reads');
  }
  // a whole Qubes-style stream: nothing for the workers
  const q = program(b);
  const r = await scan(p, q, [1000]);
  assert.equal(r.frames, 0);
  assertSameBytes(r.handed, q, 'all handed over');
});

test('hostile frames: a lying content size, corruption, a bad checksum fail as corrupt; other bytes go to the streaming decoder; the output never differs', { skip: noZstd }, async () => {
  const p = pools();
  const data = sampleData(900_000, 6);
  const frames = ours(data, 300_000);
  const f0 = frames[0]!;
  const rest = frames.slice(1);
  const patched = (f: Buffer, at: number, v: (x: number) => number): Buffer => {
    const c = Buffer.from(f);
    c[at] = v(c[at]!) & 0xff;
    return c;
  };
  const withSize = (f: Buffer, size: number): Buffer => {
    const c = Buffer.from(f);
    assert.equal(c[4]! >> 6, 2, 'a 4-byte content size field');
    c.writeUInt32LE(size, (c[4]! & 0x20) !== 0 ? 5 : 6); // after the window byte unless single-segment
    return c;
  };
  const h = readFrameHeader(f0);
  assert.equal(h.kind, 'frame');
  const firstBlock = h.kind === 'frame' ? h.header.headerSize : 0;
  const cases: [string, Buffer, boolean][] = [
    ['content size one short', Buffer.concat([withSize(f0, 299_999), ...rest]), true],
    ['content size one long', Buffer.concat([withSize(f0, 300_001), ...rest]), true],
    ['content size of two frames', Buffer.concat([withSize(f0, 600_000), ...rest]), true],
    ['corrupt block', Buffer.concat([patched(f0, f0.length >> 1, (x) => x ^ 0x20), ...rest]), true],
    ['bad checksum', Buffer.concat([patched(f0, f0.length - 1, (x) => x ^ 1), ...rest]), true],
    ['junk between frames', Buffer.concat([f0, Buffer.from('junk'), ...rest]), false],
    ['zeros after the frames', Buffer.concat([...frames, Buffer.alloc(64)]), false],
    ['reserved block type', Buffer.concat([patched(f0, firstBlock, (x) => x | 0x06), ...rest]), false],
    ['a block over 128 KiB', Buffer.concat([patched(f0, firstBlock + 2, (x) => x | 0x80), ...rest]), false],
  ];
  for (const [what, stream, isCorrupt] of cases) {
    const reference = await streaming(stream);
    for (const cuts of [[], [f0.length - 3], even(stream.length, 7)]) {
      const r = await scan(p, stream, cuts);
      if (r.error !== undefined) {
        assert.ok(isCorrupt, `${what}: ${String(r.error)}`);
        assert.ok(corrupt(r.error), `${what}: ${String(r.error)}`);
        assert.match((r.error as Error).message, /cannot decompress the inner archive/);
        assert.equal(r.parallel.length, 0, `${what}: nothing written from the failing frame on`);
        assert.equal(reference, 'error', `${what}: the streaming decoder refuses it too`);
        continue;
      }
      assert.ok(!isCorrupt, `${what}: must fail`);
      const handed = r.handed.length > 0 ? await streaming(r.handed) : Buffer.alloc(0);
      const combined = handed === 'error' ? 'error' : Buffer.concat([r.parallel, handed]);
      assert.ok(combined === 'error' ? reference === 'error' : reference !== 'error' && combined.equals(reference), `${what}: same result as the streaming decoder`);
    }
  }
});

test('truncated inside a frame or its header: ERR_CORRUPT; a frame over 8 MiB of content is handed over', { skip: noZstd }, async () => {
  const p = pools();
  const frames = ours(sampleData(400_000, 8), 200_000);
  const stream = Buffer.concat(frames);
  for (const cut of [stream.length - 1, frames[0]!.length + 5, frames[0]!.length + 2]) {
    const r = await scan(p, stream.subarray(0, cut), []);
    assert.ok(corrupt(r.error), `cut at ${cut}: ${String(r.error)}`);
    assert.match((r.error as Error).message, /ends inside a zstd frame/);
  }
  const big = sampleData(MAX_UNIT_OUT + 4096, 9);
  const small = ours(sampleData(100_000, 2), 100_000);
  const huge = ours(big, big.length);
  const r = await scan(p, Buffer.concat([...small, ...huge]), [small[0]!.length + 1000]);
  assert.equal(r.error, undefined);
  assert.equal(r.frames, 1);
  assertSameBytes(r.handed, huge[0]!, 'handed over from the big frame');
});

test('under load: random cuts and aborts mid-stream; output identical, every slot free once the tasks ended', { skip: noZstd, timeout: 120_000 }, async () => {
  const p = pools();
  const data = sampleData(4_000_000, 12);
  const stream = Buffer.concat(ours(data, 256 * 1024));
  const load = busyLoops(2);
  try {
    let seed = 9;
    const rnd = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    for (let round = 0; round < 20; round++) {
      const cuts = Array.from({ length: 1 + rnd(12) }, () => rnd(stream.length)).sort((a, b) => a - b);
      const r = await scan(p, stream, cuts);
      assert.equal(r.error, undefined, `round ${round}`);
      assertSameBytes(r.parallel, data, `round ${round}`);
    }
    for (let round = 0; round < 10; round++) {
      const ac = new AbortController();
      const outputs: Promise<UnitOutput>[] = [];
      const s = new UnitScanner(p, { what: 'x', signal: ac.signal, deliver: (o) => outputs.push(o) });
      const first = s.write(shared(stream.subarray(0, 1 + rnd(stream.length - 1))));
      const aborted = new Promise<void>((resolve) =>
        setImmediate(() => {
          ac.abort();
          s.close();
          resolve();
        }),
      );
      const settled = await first.then(
        () => 'resolved',
        (e: unknown) => (isQvmBackupError(e) ? e.code : String(e)),
      );
      assert.ok(settled === 'resolved' || settled === 'ERR_CANCELLED', `round ${round}: ${settled}`);
      await aborted;
      for (const o of outputs) await o.then((m) => m.release(), () => undefined);
      assert.equal(p.out.inUse(), 0, `round ${round}: output slots free`);
      assert.equal(p.scratch.inUse(), 0, `round ${round}: scratch slots free`);
    }
  } finally {
    load.stop();
  }
});

/** A sparse image (data runs and holes) and its inner tar stream. */
const imageIn = (dir: string): { image: string; tar: Buffer } => sparseImage(dir, { runBytes: 2_500_000, seed: 13, offsets: [0, 10 << 20, 30 << 20], size: 48 << 20 });

const sha = (p: string): string => createHash('sha256').update(fs.readFileSync(p)).digest('hex');

test('image extractor: our frames, a Qubes-style stream and both mixed restore identically; a corrupt frame fails the image', { skip: noZstd || noProgram, timeout: 120_000 }, async () => {
  const work = tempDir();
  const stats = new RunStats({ enabled: true });
  const statsPool = new WorkerPool({ threads: 2, stats });
  try {
    const { image, tar } = imageIn(path.join(work, 'src'));
    const p = unitPoolsFor(statsPool, zstdFrames)!;
    const tasks = (): number => stats.report().stages.find((s) => s.stage === 'decompress (workers)')?.count ?? 0;
    const half = 1024 * 1024 * 3;
    const variants: [string, Buffer, number][] = [
      ['our frames', Buffer.concat(ours(tar, 1 << 20)), Math.ceil(tar.length / (1 << 20))],
      ['Qubes-style (zstd -3 -T2 from a pipe)', program(tar, ['-3', '-T2']), 0],
      ['ours, then the program', Buffer.concat([...ours(tar.subarray(0, half), 1 << 20), program(tar.subarray(half))]), 3],
    ];
    for (const [i, [what, inner, expectTasks]] of variants.entries()) {
      const out = path.join(work, `out${i}`);
      fs.mkdirSync(out);
      const before = tasks();
      const x = openImageExtractor({ dir: out, member: 'vm3/private.img', listOnly: false }, { kind: 'zstd' }, p);
      for (const piece of even(inner.length, 9).concat(inner.length).map((end, k, a) => inner.subarray(k === 0 ? 0 : a[k - 1], end))) await x.write(shared(piece));
      await x.finish();
      const restored = path.join(out, 'vm3/private.img');
      assert.equal(sha(restored), sha(image), `${what}: same bytes`);
      assert.ok(fs.statSync(restored).blocks <= fs.statSync(image).blocks + 128, `${what}: holes kept`);
      assert.equal(tasks() - before, expectTasks, `${what}: frames decoded by the workers`);
    }
    const frames = ours(tar, 1 << 20);
    const bad = Buffer.from(frames[1]!);
    bad[bad.length >> 1] = bad[bad.length >> 1]! ^ 0x40;
    const out = path.join(work, 'bad');
    fs.mkdirSync(out);
    const x = openImageExtractor({ dir: out, member: 'vm3/private.img', listOnly: false }, { kind: 'zstd' }, p);
    const fed = async (): Promise<void> => {
      for (const f of [frames[0]!, bad, ...frames.slice(2)]) await x.write(shared(f));
      await x.finish();
    };
    await assert.rejects(fed(), (e: unknown) => corrupt(e) && /vm3\/private\.img: cannot decompress the inner archive/.test((e as Error).message));
    await x.abort();
    assert.equal(p.out.inUse() + p.scratch.inUse(), 0, 'slots free');
  } finally {
    await statsPool.destroy();
    fs.rmSync(work, { recursive: true, force: true });
  }
});
