// The VM size limit on the paths GNU tar extracts: what tar will put on disk beyond the bytes it is
// handed (tar-disk-count.ts) is counted before it gets them. A format 2 image is GNU tar's own
// multi-volume --sparse archive: a map of 1-byte runs far apart, 82 MB of disk for ~11 MB of
// archive, is refused under a limit of 64 MiB, and restores whole without a limit.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { WorkerPool } from '../../../../src/main/pipeline/worker-pool.js';
import { readArchiveHead, restoreData } from '../../../../src/main/restore/stream/index.js';
import { SizeLimit } from '../../../../src/main/restore/stream/size-limit.js';
import { hmacChunks, headOf } from './build-archive.js';
import { loadFixture, readerOf, tempDir } from './stream-helpers.js';

const RUNS = 20_000;
const GAP = 8192;
let pool: WorkerPool;
let work: string;
let volumes: Buffer[];

before(() => {
  pool = new WorkerPool({ threads: 1 });
  work = tempDir();
  const img = path.join(work, 'img');
  fs.mkdirSync(img);
  const fd = fs.openSync(path.join(img, 'private.img'), 'w');
  for (let i = 0; i < RUNS; i++) fs.writeSync(fd, 'x', i * GAP);
  fs.ftruncateSync(fd, RUNS * GAP);
  fs.closeSync(fd);
  // GNU tar asks for each next volume; the script answers with its name
  const vols = path.join(work, 'vols');
  fs.mkdirSync(vols);
  const next = path.join(vols, 'next.sh');
  fs.writeFileSync(next, `#!/bin/sh\necho "${vols}/vol.$TAR_VOLUME" >&$TAR_FD\n`, { mode: 0o755 });
  execFileSync('tar', ['-Pc', '--sparse', '--hole-detection=raw', '-M', '--tape-length=4000', '-F', next, '-f', path.join(vols, 'vol.1'), '-C', img, '--xform=s:^private.img:vm5/private.img:', 'private.img']);
  volumes = fs
    .readdirSync(vols)
    .filter((n) => /^vol\.\d+$/.test(n))
    .sort((a, b) => Number(a.slice(4)) - Number(b.slice(4)))
    .map((n) => fs.readFileSync(path.join(vols, n)));
});

after(async () => {
  await pool.destroy();
  fs.rmSync(work, { recursive: true, force: true });
});

async function restoreV2(limit: SizeLimit | undefined): Promise<{ ok: boolean; code: string | undefined; staging: string }> {
  const head = await headOf(loadFixture('v2-plain-sha512').bin);
  const reader = readerOf(Buffer.concat([head, ...hmacChunks('vm5/private.img', volumes, 'sha512', 'qubes')]));
  const h = await readArchiveHead(reader, 'qubes', { pool });
  const staging = tempDir();
  const r = await restoreData(reader, { head: h, passphrase: 'qubes', pool, slotBytes: 4 * 1024 * 1024 }, new Map([['vm5/', { vm: 'work', stagingDir: staging, ...(limit ? { sizeLimit: limit } : {}) }]]));
  const v = [...r.vms.values()][0]!;
  return { ok: v.ok, code: v.error?.code, staging };
}

test('format 2: a sparse image of tiny runs far apart counts its disk blocks, not its archive bytes', { timeout: 120_000 }, async () => {
  assert.ok(volumes.length >= 2, 'a multi-volume archive');
  const stated = 4096;
  const refused = await restoreV2(new SizeLimit('work', stated));
  try {
    assert.equal(refused.ok, false);
    assert.equal(refused.code, 'ERR_TOO_LARGE');
    const du = Number(execFileSync('du', ['-sB1', refused.staging]).toString().split('\t')[0]);
    assert.ok(du < 8 * 1024 * 1024, `${du} bytes on disk`);
  } finally {
    fs.rmSync(refused.staging, { recursive: true, force: true });
  }
  const whole = await restoreV2(undefined);
  try {
    assert.equal(whole.ok, true);
    const st = fs.statSync(path.join(whole.staging, 'vm5/private.img'));
    assert.equal(st.size, RUNS * GAP);
    assert.ok(st.blocks * 512 >= RUNS * 4096);
  } finally {
    fs.rmSync(whole.staging, { recursive: true, force: true });
  }
});
