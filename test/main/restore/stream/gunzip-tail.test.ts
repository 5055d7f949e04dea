// What may follow the end of a gzip inner archive: the streaming gunzip (both extractors) gives
// `gzip -d`'s verdict. node:zlib alone stops without an error at bytes after a member that do not
// start with 0x1f (junk led by a zero byte, a member after a zero byte) and drops them; `gzip -d`
// accepts only zero bytes there and calls anything else trailing garbage (exit 2). Found by review,
// as was the stream extractor's heap growth per write (last test).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { Transform } from 'node:stream';
import { before, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { loadSpawner } from '../../../../src/main/io/spawn.js';
import { isQvmBackupError } from '../../../../src/main/errors.js';
import { createInnerDecoder } from '../../../../src/main/restore/stream/inner-decoder.js';
import { openImageExtractor } from '../../../../src/main/restore/stream/image-extractor.js';
import { openStreamExtractor, type InnerExtractor } from '../../../../src/main/restore/stream/file-extractor.js';
import { sampleData } from '../../../workers/tools.js';
import { youngGc } from '../../../../src/workers/young-gc.js';
import { sparseImage, tempDir } from './stream-helpers.js';

// the stream extractor starts tar: load execa first, as the entry points do
before(loadSpawner);

/** Feed `input` in `piece`-byte writes; the output, or the decoder's error. */
function decode(d: Transform, input: Uint8Array, piece: number): Promise<{ ok: true; out: Buffer } | { ok: false; message: string }> {
  return new Promise((resolve) => {
    const out: Buffer[] = [];
    d.on('data', (b: Buffer) => out.push(b));
    d.on('error', (e) => resolve({ ok: false, message: e.message }));
    d.on('end', () => resolve({ ok: true, out: Buffer.concat(out) }));
    for (let off = 0; off < input.length; off += piece) d.write(input.subarray(off, off + piece));
    d.end();
  });
}

test('after the end of a gzip stream the decoder refuses and accepts what gzip -d does', async () => {
  const src = sampleData(300_000, 3);
  const stream = gzipSync(src);
  const other = gzipSync(Buffer.from('another member\n'));
  const tails: [string, Buffer][] = [
    ['nothing', Buffer.alloc(0)],
    ['4 zero bytes', Buffer.alloc(4)],
    ['70000 zero bytes', Buffer.alloc(70_000)],
    ['a zero byte, then junk', Buffer.concat([Buffer.from([0]), Buffer.from('junk')])],
    ['zero bytes, then one 01', Buffer.from([0, 0, 1])],
    ['70000 zero bytes, then junk', Buffer.concat([Buffer.alloc(70_000), Buffer.from('junk')])],
    ['junk', Buffer.from('junk')],
    ['a zero byte, then a gzip member', Buffer.concat([Buffer.from([0]), other])],
    ['a gzip member', other],
    ['1f', Buffer.from([0x1f])],
    ['1f 8b', Buffer.from([0x1f, 0x8b])],
  ];
  for (const [what, tail] of tails) {
    const input = Buffer.concat([stream, tail]);
    const gzip = spawnSync('gzip', ['-d', '-c'], { input, maxBuffer: 1 << 30 });
    for (const piece of [input.length, 7777, 1]) {
      const label = `${what}, ${piece === input.length ? 'at once' : `${piece}-byte writes`}`;
      const d = createInnerDecoder({ kind: 'gunzip' })!;
      // 1-byte writes: only for the last bytes of the stream and the tail
      if (piece === 1) d.write(input.subarray(0, stream.length - 5));
      const ours = await decode(d, piece === 1 ? input.subarray(stream.length - 5) : input, piece);
      assert.equal(ours.ok, gzip.status === 0, `${label}: gzip -d exits ${gzip.status} (${gzip.stderr.toString().trim()}), ours ${JSON.stringify(ours.ok ? 'ok' : ours)}`);
      if (ours.ok) assert.ok(ours.out.equals(gzip.stdout), `${label}: gzip -d's bytes`);
      else assert.match(ours.message, /after the end of the gzip stream|incorrect header check|unexpected end of file/, label);
    }
  }
});

async function feed(x: InnerExtractor, bytes: Buffer, piece = 256 * 1024): Promise<void> {
  for (let off = 0; off < bytes.length; off += piece) await x.write(bytes.subarray(off, off + piece));
  await x.finish();
}

for (const [which, open] of [
  ['image extractor (in-process writes)', openImageExtractor],
  ['stream extractor (GNU tar)', openStreamExtractor],
] as const) {
  test(`${which}: junk led by a zero byte after the gzip stream fails the file; zero bytes restore`, async () => {
    const dir = tempDir();
    try {
      const { image, tar } = sparseImage(path.join(dir, 'src'), { runBytes: 1_000_000, seed: 9, offsets: [0, 6 << 20], size: 16 << 20 });
      const inner = gzipSync(tar);
      const run = async (name: string, tail: Buffer): Promise<string> => {
        const out = path.join(dir, name);
        fs.mkdirSync(out);
        const x = open({ dir: out, member: 'vm3/private.img', listOnly: false }, { kind: 'gunzip' });
        try {
          await feed(x, Buffer.concat([inner, tail]));
        } finally {
          await x.abort();
        }
        return path.join(out, 'vm3/private.img');
      };
      assert.ok(fs.readFileSync(await run('zeros', Buffer.alloc(1000))).equals(fs.readFileSync(image)), 'zero bytes after the stream: same bytes');
      for (const [name, tail] of [
        ['junk', Buffer.concat([Buffer.from([0]), Buffer.from('junk after the stream')])],
        ['member', Buffer.concat([Buffer.alloc(3), gzipSync(Buffer.from('x'))])],
      ] as const) {
        await assert.rejects(run(name, tail), (e: unknown) => isQvmBackupError(e) && e.code === 'ERR_CORRUPT' && /after the end of the gzip stream/.test(e.message), name);
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
}

// Found by review: every write to the stream extractor raced tar's exit and the decoder's failure,
// promises that stay pending for the whole file, and each race left reactions on them (~1.4 KiB a
// write: 28 MiB over the 19 500 writes here, 56 MiB for a 40 MB file).
test('stream extractor: many small writes do not grow the heap', async () => {
  const gc = youngGc();
  if (gc === null) return;
  const dir = tempDir();
  try {
    const src = path.join(dir, 'src', 'vm3', 'apps');
    fs.mkdirSync(src, { recursive: true });
    fs.writeFileSync(path.join(src, 'a'), Buffer.alloc(10_000_000, 1));
    const tar = spawnSync('tar', ['-C', path.join(dir, 'src'), '-c', 'vm3/apps'], { maxBuffer: 1 << 30 }).stdout;
    fs.mkdirSync(path.join(dir, 'out'));
    const x = openStreamExtractor({ dir: path.join(dir, 'out'), member: 'vm3/apps', listOnly: false }, { kind: 'none' });
    gc();
    const before = process.memoryUsage().heapUsed;
    let writes = 0;
    for (let off = 0; off < tar.length; off += 512, writes++) await x.write(tar.subarray(off, off + 512));
    gc();
    const growth = process.memoryUsage().heapUsed - before;
    await x.finish();
    assert.ok(writes > 19_000);
    assert.ok(growth < 4 * 2 ** 20, `the heap grew by ${(growth / 2 ** 20).toFixed(1)} MiB over ${writes} writes`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
