// Restore of zstd inner archives: the filter choice (in-process where node:zlib has zstd, else the
// program run by tar), the one decoder both extractors use (streams of the zstd program and of our
// independent frames; trailing data, truncation and oversized windows refused), and both
// extractors end to end on a sparse image made by GNU tar with `zstd -3 -T2` (our Node 20 writer);
// what may follow the last frame is checked against the zstd program's verdict; the stream's tail
// arriving after tar exited (zstd and gzip) is still checked.
import { before, test } from 'node:test';
import { loadSpawner } from '../../../../src/main/io/spawn.js';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import type { Transform } from 'node:stream';
import { innerFilterOf, type InnerFilter } from '../../../../src/main/restore/stream/filters.js';
import { createInnerDecoder, zstdDecompressSmall } from '../../../../src/main/restore/stream/inner-decoder.js';
import { openImageExtractor } from '../../../../src/main/restore/stream/image-extractor.js';
import { openStreamExtractor, type InnerExtractor } from '../../../../src/main/restore/stream/file-extractor.js';
import { decompressSmall } from '../../../../src/main/restore/stream/small-decode.js';
import { tarCreateStream } from '../../../../src/main/tar/gnu-tar.js';
import { zstdBlockInto, zstdBound } from '../../../../src/workers/compress.js';
import { zstdZlib } from '../../../../src/workers/zstd-zlib.js';
import { isQvmBackupError } from '../../../../src/main/errors.js';
import type { BackupHeader } from '../../../../src/main/format/backup-header.js';
import { tempDir } from './stream-helpers.js';

// the code under test starts processes: the entry points load execa first, so does this file
before(loadSpawner);

const noZstd = zstdZlib === null ? `Node ${process.version} has no zstd in node:zlib` : false;
const haveProgram = spawnSync('sh', ['-c', 'command -v zstd'], { stdio: 'ignore' }).status === 0;
const noProgram = haveProgram ? false : 'zstd program not installed';

function zstdCli(args: string[], input: Uint8Array): Buffer {
  const r = spawnSync('zstd', args, { input, maxBuffer: 1 << 30 });
  assert.equal(r.status, 0, r.stderr?.toString());
  return r.stdout;
}

function data(n: number): Buffer {
  const out = Buffer.alloc(n);
  for (let i = 0; i < n; i++) out[i] = (i * 7 + (i >> 11)) % 251 < 120 ? 0 : (i * 2654435761) >>> 24;
  return out;
}

const header = (filter: string): BackupHeader => ({ version: 4, encrypted: true, compressed: true, compressionFilter: filter, hmacAlgorithm: 'scrypt', backupId: 'x' });

test('innerFilterOf: zstd and zstdmt decode in-process where node:zlib has zstd, else by the program', { skip: noProgram }, () => {
  for (const f of ['zstd', 'zstdmt']) {
    assert.deepEqual(innerFilterOf(header(f), true), { kind: 'zstd' });
    assert.deepEqual(innerFilterOf(header(f), false), { kind: 'program', program: f });
  }
  assert.deepEqual(innerFilterOf(header('zstd')), zstdZlib === null ? { kind: 'program', program: 'zstd' } : { kind: 'zstd' });
  assert.deepEqual(innerFilterOf(header('gzip'), false), { kind: 'gunzip' });
});

/** Feed `input` to a decoder in `piece`-byte writes; resolves with the output or rejects with its error. */
function decode(d: Transform, input: Uint8Array, piece = 7777): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const out: Buffer[] = [];
    d.on('data', (b: Buffer) => out.push(b));
    d.on('error', reject);
    d.on('end', () => resolve(Buffer.concat(out)));
    for (let off = 0; off < input.length; off += piece) d.write(input.subarray(off, off + piece));
    d.end();
  });
}

/** Our writer's stream: independent frames of `block` bytes. */
function frames(src: Uint8Array, block: number): Buffer {
  const parts: Buffer[] = [];
  for (let off = 0; off < src.length; off += block) {
    const b = src.subarray(off, off + block);
    const out = new Uint8Array(zstdBound(b.length));
    parts.push(Buffer.from(out.subarray(0, zstdBlockInto(b, out, 3) as number)));
  }
  return Buffer.concat(parts);
}

test('the decoder reads our concatenated frames and the zstd program\'s multi-threaded output', { skip: noZstd || noProgram }, async () => {
  const src = data(9_000_000);
  assert.ok((await decode(createInnerDecoder({ kind: 'zstd' })!, frames(src, 4 << 20))).equals(src), 'our frames');
  assert.ok((await decode(createInnerDecoder({ kind: 'zstd' })!, zstdCli(['-3', '-T2', '-c'], src), 65536)).equals(src), 'zstd -T2');
  assert.ok((await decode(createInnerDecoder({ kind: 'zstd' })!, zstdCli(['-19', '-c'], src.subarray(0, 1_000_000)))).equals(src.subarray(0, 1_000_000)), 'zstd -19');
  assert.ok(decompressSmall({ kind: 'zstd' }, frames(src.subarray(0, 300_000), 100_000), 1 << 20, 'qubes.xml.000').equals(src.subarray(0, 300_000)));
  assert.equal(createInnerDecoder({ kind: 'none' }), null);
  assert.equal(createInnerDecoder({ kind: 'program', program: 'zstd' }), null);
});

test('the decoder refuses trailing data, truncation and windows over 8 MiB', { skip: noZstd || noProgram }, async () => {
  const src = data(3_000_000);
  const good = frames(src, 1 << 20);
  const refused = async (input: Uint8Array, why: RegExp, what: string) => {
    await assert.rejects(decode(createInnerDecoder({ kind: 'zstd' })!, input), why, what);
  };
  // node:zlib alone stops at such bytes without an error
  await refused(Buffer.concat([good, Buffer.from('junk after the frames')]), /after the last zstd frame/, 'junk');
  await refused(Buffer.concat([good, Buffer.from('junk'), frames(src.subarray(0, 1000), 1000)]), /after the last zstd frame/, 'junk between frames');
  await refused(Buffer.concat([good, Buffer.alloc(4096)]), /after the last zstd frame|Unknown frame/, 'zero padding');
  // zlib's words (Node 24), or ours where zlib ends its output without them (Node 22)
  await refused(good.subarray(0, good.length - 100), /unexpected end of file|not a whole frame/, 'truncated');
  await refused(Buffer.from('not zstd at all, nothing like it'), /Unknown frame|not zstd data/, 'no frame');
  // --long=25 from a pipe (size unknown) declares a 32 MiB window
  await refused(zstdCli(['-3', '--long=25', '-c', '-'], src), /memory|window/i, 'window 2^25');
  assert.throws(() => zstdDecompressSmall(good, 1000), (e: unknown) => (e as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE' || e instanceof RangeError);
});

test('after the last frame the decoder refuses and accepts what the zstd program does (1-3 magic bytes, junk, skippable frames)', { skip: noZstd || noProgram }, async () => {
  const src = data(40_000);
  const skippable = (n: number): Buffer => Buffer.concat([Buffer.from([0x50, 0x2a, 0x4d, 0x18, n, 0, 0, 0]), Buffer.alloc(n, 0x28)]);
  const tails: [string, Buffer][] = [
    ['nothing', Buffer.alloc(0)],
    ['28', Buffer.from([0x28])],
    ['28 b5', Buffer.from([0x28, 0xb5])],
    ['28 b5 2f', Buffer.from([0x28, 0xb5, 0x2f])],
    ['the whole magic', Buffer.from([0x28, 0xb5, 0x2f, 0xfd])],
    ['a skippable magic\'s 3 bytes', Buffer.from([0x50, 0x2a, 0x4d])],
    ['a zero byte', Buffer.from([0])],
    ['junk', Buffer.from('junk')],
    ['an empty skippable frame', skippable(0)],
    ['a skippable frame', skippable(5)],
    ['a cut skippable frame', skippable(5).subarray(0, 10)],
    ['a skippable frame, then 28 b5', Buffer.concat([skippable(3), Buffer.from([0x28, 0xb5])])],
  ];
  for (const [base, stream] of [
    ['our frames', frames(src, 16 << 10)],
    ['zstd -3', zstdCli(['-3', '-c'], src)],
  ] as const) {
    for (const [what, tail] of tails) {
      const input = Buffer.concat([stream, tail]);
      const program = spawnSync('zstd', ['-d', '-c'], { input, maxBuffer: 1 << 30 });
      // the one-shot decoder of qubes.xml gives the same verdict
      const small = ((): { ok: true; out: Buffer } | { ok: false; message: string } => {
        try {
          return { ok: true, out: zstdDecompressSmall(input, 1 << 20) };
        } catch (e) {
          return { ok: false, message: (e as Error).message };
        }
      })();
      assert.equal(small.ok, program.status === 0, `${base} + ${what}, at once: zstd -d exits ${program.status}, ours ${JSON.stringify(small.ok ? 'ok' : small)}`);
      if (small.ok) assert.ok(small.out.equals(src), `${base} + ${what}, at once: same bytes`);
      // in 7777-byte writes, and with the end in 1-byte writes (the tail split across them)
      for (const piece of [7777, 1]) {
        const label = `${base} + ${what}, ${piece}-byte writes`;
        const d = createInnerDecoder({ kind: 'zstd' })!;
        if (piece === 1) d.write(input.subarray(0, stream.length - 5));
        const rest = piece === 1 ? input.subarray(stream.length - 5) : input;
        const ours = await decode(d, rest, piece).then(
          (out) => ({ ok: true, out }),
          (e: unknown) => ({ ok: false, message: (e as Error).message }),
        );
        assert.equal(ours.ok, program.status === 0, `${label}: zstd -d exits ${program.status} (${program.stderr.toString().trim()}), ours ${JSON.stringify(ours.ok ? 'ok' : ours)}`);
        if (ours.ok) assert.ok('out' in ours && ours.out.equals(src), `${label}: same bytes`);
      }
    }
  }
});

/** A sparse image (holes and data runs) and its inner archive, made the way our Node 20 writer makes it. */
async function sparseInner(dir: string, compressProgram = 'zstd -3 -T2'): Promise<{ image: string; inner: Buffer }> {
  fs.mkdirSync(path.join(dir, 'src'), { recursive: true });
  const image = path.join(dir, 'src', 'private.img');
  const fd = fs.openSync(image, 'w');
  const run = data(1_500_000);
  for (const at of [0, 10 << 20, 30 << 20]) fs.writeSync(fd, run, 0, run.length, at);
  fs.ftruncateSync(fd, 48 << 20);
  fs.closeSync(fd);
  const c = tarCreateStream({ dir: path.join(dir, 'src'), name: 'private.img', archiveName: 'vm3/private.img', dereference: true, compressProgram });
  const parts: Buffer[] = [];
  for await (const p of c.stdout) parts.push(p as Buffer);
  await c.done;
  return { image, inner: Buffer.concat(parts) };
}

async function feed(x: InnerExtractor, bytes: Buffer, piece = 1 << 20): Promise<void> {
  for (let off = 0; off < bytes.length; off += piece) await x.write(bytes.subarray(off, off + piece));
  await x.finish();
}

function allocatedKiB(p: string): number {
  return fs.statSync(p).blocks / 2;
}

for (const [which, open] of [
  ['image extractor (in-process writes)', openImageExtractor],
  ['stream extractor (GNU tar)', openStreamExtractor],
] as const) {
  test(`${which}: a zstd inner archive restores byte-identical with holes; trailing junk fails it`, { skip: noZstd || noProgram }, async () => {
    const dir = tempDir();
    try {
      const { image, inner } = await sparseInner(dir);
      const filter: InnerFilter = { kind: 'zstd' };
      const out = path.join(dir, 'out');
      fs.mkdirSync(out);
      await feed(open({ dir: out, member: 'vm3/private.img', listOnly: false }, filter), inner);
      const restored = path.join(out, 'vm3/private.img');
      assert.ok(fs.readFileSync(restored).equals(fs.readFileSync(image)), 'same bytes');
      assert.ok(allocatedKiB(restored) <= allocatedKiB(image) + 64, `holes kept: ${allocatedKiB(restored)} KiB vs ${allocatedKiB(image)} KiB`);
      const out2 = path.join(dir, 'out2');
      fs.mkdirSync(out2);
      const x = open({ dir: out2, member: 'vm3/private.img', listOnly: false }, filter);
      await assert.rejects(feed(x, Buffer.concat([inner, Buffer.from('trailing junk')])), (e: unknown) => isQvmBackupError(e) && e.code === 'ERR_CORRUPT' && /after the last zstd frame/.test(e.message));
      await x.abort();
      const out3 = path.join(dir, 'out3');
      fs.mkdirSync(out3);
      const y = open({ dir: out3, member: 'vm3/private.img', listOnly: false }, filter);
      await assert.rejects(feed(y, Buffer.concat([inner, Buffer.from([0x28, 0xb5, 0x2f])])), (e: unknown) => isQvmBackupError(e) && e.code === 'ERR_CORRUPT' && /3 bytes after the last zstd frame/.test(e.message));
      await y.abort();
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
}

/** The pids of this process's `tar` children (Linux /proc). */
function tarChildren(): number[] {
  const pids: number[] = [];
  for (const t of fs.readdirSync(`/proc/${process.pid}/task`)) {
    const kids = fs.readFileSync(`/proc/${process.pid}/task/${t}/children`, 'utf8').trim();
    for (const k of kids ? kids.split(/\s+/).map(Number) : []) {
      if (fs.readFileSync(`/proc/${k}/comm`, 'utf8').trim() === 'tar') pids.push(k);
    }
  }
  return pids;
}

/** Until tar has exited (it stops at its end-of-archive, before the zstd epilogue arrives). */
async function tarGone(): Promise<void> {
  const until = Date.now() + 20_000;
  while (tarChildren().length > 0) {
    assert.ok(Date.now() < until, 'tar did not exit after its end-of-archive');
    await new Promise((r) => setTimeout(r, 5));
  }
}

// tar exits 0 once it has read its end-of-archive, which the decoder outputs before the stream's
// checksum (zstd: 4 bytes; gzip: the 8-byte trailer) and anything after it arrive: the rest is
// still checked by the decoder, and a legitimate end is no "tar stopped reading" failure. The order
// is forced: tar has exited before the tail is written.
for (const [filter, program, tailBytes] of [
  [{ kind: 'zstd' }, 'zstd -3 -T2', 4],
  [{ kind: 'gunzip' }, 'gzip -6', 8],
] as const) {
  test(`stream extractor (GNU tar, ${filter.kind}): the tail after tar exited is still checked; a clean end restores`, { skip: (filter.kind === 'zstd' && noZstd) || noProgram }, async () => {
    const dir = tempDir();
    try {
      const { image, inner } = await sparseInner(dir, program);
      const body = inner.subarray(0, inner.length - tailBytes);
      const tail = inner.subarray(inner.length - tailBytes);
      const run = async (name: string, last: Buffer): Promise<string> => {
        const out = path.join(dir, name);
        fs.mkdirSync(out);
        const x = openStreamExtractor({ dir: out, member: 'vm3/private.img', listOnly: false }, filter);
        try {
          for (let off = 0; off < body.length; off += 1 << 20) await x.write(body.subarray(off, off + (1 << 20)));
          await tarGone();
          await x.write(last);
          await x.finish();
        } finally {
          await x.abort();
        }
        return path.join(out, 'vm3/private.img');
      };
      const restored = await run('clean', tail);
      assert.ok(fs.readFileSync(restored).equals(fs.readFileSync(image)), 'same bytes');
      const bad = Buffer.from(tail);
      bad[0]! ^= 0xff;
      await assert.rejects(run('checksum', bad), (e: unknown) => isQvmBackupError(e) && e.code === 'ERR_CORRUPT');
      if (filter.kind === 'zstd') {
        await assert.rejects(run('magic', Buffer.concat([tail, Buffer.from([0x28, 0xb5, 0x2f])])), (e: unknown) => isQvmBackupError(e) && e.code === 'ERR_CORRUPT' && /3 bytes after the last zstd frame/.test(e.message));
        await assert.rejects(run('junk', Buffer.concat([tail, Buffer.from('trailing junk')])), (e: unknown) => isQvmBackupError(e) && e.code === 'ERR_CORRUPT' && /after the last zstd frame/.test(e.message));
      } else {
        // node:zlib alone stops at a zero byte after the member and drops what follows
        await assert.rejects(run('junk', Buffer.concat([tail, Buffer.from([0]), Buffer.from('trailing junk')])), (e: unknown) => isQvmBackupError(e) && e.code === 'ERR_CORRUPT' && /after the end of the gzip stream/.test(e.message));
        assert.ok(fs.readFileSync(await run('zeros', Buffer.concat([tail, Buffer.alloc(100)]))).equals(fs.readFileSync(image)), 'zero bytes after the stream, as gzip -d: same bytes');
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
}
