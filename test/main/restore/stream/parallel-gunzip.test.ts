// The restore's image path with our marked gzip members (format 4): the members are decompressed by
// the workers (counted in the stage profile), also when they straddle chunks, and the image is
// byte-identical; a member whose size field lies, or that hides trailing garbage, fails its VM with
// ERR_CORRUPT while the other VM is restored; a stream without the marker (gzip's) takes the
// streaming decoder and is restored the same.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { execFileSync } from 'node:child_process';
import { WorkerPool } from '../../../../src/main/pipeline/worker-pool.js';
import { readArchiveHead, restoreData, type RestoreDataResult } from '../../../../src/main/restore/stream/index.js';
import { RunStats } from '../../../../src/main/stats/run-stats.js';
import { gzipBlockInto, gzipBound } from '../../../../src/workers/compress.js';
import { headOf, innerStream, makeImage, scryptChunks, split } from './build-archive.js';
import { fixtureNames, loadFixture, readerOf, tempDir } from './stream-helpers.js';

const ID = '20161020T123455-1234';
const have = new Set(fixtureNames());
let work: string;
let img5: { file: string; sha256: string };
let img6: { file: string; sha256: string };

before(() => {
  work = tempDir();
  fs.mkdirSync(path.join(work, 'a'));
  fs.mkdirSync(path.join(work, 'b'));
  img5 = makeImage(path.join(work, 'a'), 3);
  img6 = makeImage(path.join(work, 'b'), 0.25);
});
after(() => {
  fs.rmSync(work, { recursive: true, force: true });
});

/** The inner tar of `dir` compressed the way our backup does: independent marked members. */
function ourGzip(dir: string, subdir: string, block: number): Buffer[] {
  const tar = innerStream(dir, subdir, false);
  const out: Buffer[] = [];
  for (let off = 0; off < tar.length; off += block) {
    const src = tar.subarray(off, Math.min(off + block, tar.length));
    const buf = new Uint8Array(gzipBound(src.length));
    out.push(Buffer.from(buf.subarray(0, gzipBlockInto(src, buf, 6) as number)));
  }
  return out;
}

async function restore(body: Buffer[]): Promise<{ r: RestoreDataResult; staging: string; members: number }> {
  const stats = new RunStats({ enabled: true });
  const pool = new WorkerPool({ threads: 2, stats });
  try {
    const head = await headOf(loadFixture('v4-gzip').bin);
    const reader = readerOf(Buffer.concat([head, ...body]));
    const h = await readArchiveHead(reader, 'qubes', { pool });
    const staging = tempDir();
    const sel = new Map(Object.entries({ 'vm5/': 'work', 'vm6/': 'mynet' }).map(([s, vm]) => [s, { vm, stagingDir: staging }]));
    const r = await restoreData(reader, { head: h, passphrase: 'qubes', pool, slotBytes: 4 * 1024 * 1024, stats }, sel);
    const members = stats.report().stages.find((s) => s.stage === 'decompress (workers)')?.count ?? 0;
    return { r, staging, members };
  } finally {
    await pool.destroy();
  }
}

const sha = (p: string): string => createHash('sha256').update(fs.readFileSync(p)).digest('hex');
const small = (): Buffer[] => scryptChunks('vm6/private.img', [Buffer.concat(ourGzip(path.dirname(img6.file), 'vm6/', 256 * 1024))], ID, 'qubes');

test('marked members straddling chunks: decoded by the workers, image identical', async (t) => {
  if (!have.has('v4-gzip')) return t.skip('fixture missing');
  const members = ourGzip(path.dirname(img5.file), 'vm5/', 256 * 1024);
  const chunks = split(Buffer.concat(members), 300_000); // not a multiple of any member: they straddle
  assert.ok(chunks.length >= 8);
  const { r, staging, members: decoded } = await restore([...scryptChunks('vm5/private.img', chunks, ID, 'qubes'), ...small()]);
  for (const v of r.vms.values()) assert.ok(v.ok, `${v.vm}: ${v.error?.message}`);
  assert.equal(sha(path.join(staging, 'vm5/private.img')), img5.sha256);
  assert.equal(sha(path.join(staging, 'vm6/private.img')), img6.sha256);
  assert.ok(decoded >= members.length, `every member went to a worker (${decoded} tasks for ${members.length}+ members)`);
  fs.rmSync(staging, { recursive: true, force: true });
});

test('gzip without the marker: the streaming decoder restores it, no member task', async (t) => {
  if (!have.has('v4-gzip')) return t.skip('fixture missing');
  const gz = execFileSync('gzip', ['-c'], { input: innerStream(path.dirname(img5.file), 'vm5/', false), maxBuffer: 1 << 30 });
  const plainSmall = scryptChunks('vm6/private.img', [innerStream(path.dirname(img6.file), 'vm6/', true)], ID, 'qubes');
  const { r, staging, members } = await restore([...scryptChunks('vm5/private.img', split(gz, 300_000), ID, 'qubes'), ...plainSmall]);
  for (const v of r.vms.values()) assert.ok(v.ok, `${v.vm}: ${v.error?.message}`);
  assert.equal(sha(path.join(staging, 'vm5/private.img')), img5.sha256);
  assert.equal(members, 0);
  fs.rmSync(staging, { recursive: true, force: true });
});

test('hostile: a lying size field or trailing garbage in a member fails its VM (ERR_CORRUPT), the other VM is restored', async (t) => {
  if (!have.has('v4-gzip')) return t.skip('fixture missing');
  const members = ourGzip(path.dirname(img5.file), 'vm5/', 256 * 1024);
  const k = 3;
  const m = members[k]!;
  const next = members[k + 1]!;
  const lyingSize = Buffer.from(m);
  lyingSize.writeUInt32LE(m.length + next.length, 16); // names the next member's bytes too
  const garbage = Buffer.concat([m, m.subarray(m.length - 8)]); // a trailer-like tail after the member
  garbage.writeUInt32LE(garbage.length, 16);
  const variants: [string, Buffer[]][] = [
    ['size naming two members', [...members.slice(0, k), lyingSize, ...members.slice(k + 1)]],
    ['trailing garbage inside the named bytes', [...members.slice(0, k), garbage, ...members.slice(k + 1)]],
  ];
  for (const [what, stream] of variants) {
    const { r, staging } = await restore([...scryptChunks('vm5/private.img', split(Buffer.concat(stream), 300_000), ID, 'qubes'), ...small()]);
    const failed = [...r.vms.values()].filter((v) => !v.ok);
    assert.deepEqual(failed.map((v) => v.vm), ['work'], what);
    assert.equal(failed[0]?.error?.code, 'ERR_CORRUPT', `${what}: ${failed[0]?.error?.message}`);
    assert.match(failed[0]?.error?.message ?? '', /cannot decompress the inner archive/, what);
    assert.equal(sha(path.join(staging, 'vm6/private.img')), img6.sha256, what);
    fs.rmSync(staging, { recursive: true, force: true });
  }
});
