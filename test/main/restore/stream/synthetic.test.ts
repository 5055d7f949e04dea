// Streaming restore of hand-made multi-chunk files behind a Qubes-made head: v2 multi-volume
// (plain and gzip), v3 chained CBC with aligned/unaligned pieces and an empty trailing chunk,
// v4 scrypt chunks; unselected data is skipped; broken chunk sequences fail only their VM.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { OuterTarReader } from '../../../../src/main/tar/outer-tar-reader.js';
import { WorkerPool } from '../../../../src/main/pipeline/worker-pool.js';
import { readArchiveHead, restoreData, type RestoreDataResult } from '../../../../src/main/restore/stream/index.js';
import { hmacChunks, hmacFile, headOf, v2Head, innerStream, makeImage, multiVolumes, opensslEncrypt, outerMember, scryptChunks, split } from './build-archive.js';
import { fixtureNames, loadFixture, readerOf, tempDir } from './stream-helpers.js';

const ID = '20161020T123455-1234';
const have = new Set(fixtureNames());
let pool: WorkerPool;
let work: string;
let img5: { file: string; sha256: string };
let img6: { file: string; sha256: string };
const dir5 = () => path.dirname(img5.file);
const dir6 = () => path.dirname(img6.file);

before(() => {
  pool = new WorkerPool({ threads: 2 });
  work = tempDir();
  fs.mkdirSync(path.join(work, 'a'));
  fs.mkdirSync(path.join(work, 'b'));
  img5 = makeImage(path.join(work, 'a'), 2.5);
  img6 = makeImage(path.join(work, 'b'), 0.25);
});
after(async () => {
  await pool.destroy();
  fs.rmSync(work, { recursive: true, force: true });
});

async function restore(fixture: string, body: Buffer[], subdirs: Record<string, string>): Promise<{ r: RestoreDataResult; staging: string }> {
  const head = await headOf(loadFixture(fixture).bin);
  const reader = readerOf(Buffer.concat([head, ...body]));
  const h = await readArchiveHead(reader, 'qubes', { pool });
  const staging = tempDir();
  const sel = new Map(Object.entries(subdirs).map(([s, vm]) => [s, { vm, stagingDir: staging }]));
  const r = await restoreData(reader, { head: h, passphrase: 'qubes', pool, slotBytes: 4 * 1024 * 1024 }, sel);
  return { r, staging };
}

function sha(p: string): string {
  return createHash('sha256').update(fs.readFileSync(p)).digest('hex');
}

function expectOk(r: RestoreDataResult, staging: string, files: Record<string, string>): void {
  for (const v of r.vms.values()) assert.ok(v.ok, `${v.vm}: ${v.error?.code} ${v.error?.message}`);
  assert.ok(r.ok);
  for (const [rel, sum] of Object.entries(files)) assert.equal(sha(path.join(staging, rel)), sum, rel);
  fs.rmSync(staging, { recursive: true, force: true });
}

/** Only `vm` failed (with `code`); the other VMs' files are intact. */
function failedOnly(r: RestoreDataResult, staging: string, vm: string, code: string, message: RegExp, others: Record<string, string>): void {
  const failed = [...r.vms.values()].filter((v) => !v.ok);
  assert.deepEqual(failed.map((v) => v.vm), [vm]);
  assert.equal(failed[0]?.error?.code, code, failed[0]?.error?.message);
  assert.match(failed[0]?.error?.message ?? '', message);
  assert.equal(r.archiveError, undefined);
  assert.equal(r.ok, false);
  for (const [rel, sum] of Object.entries(others)) assert.equal(sha(path.join(staging, rel)), sum, rel);
  fs.rmSync(staging, { recursive: true, force: true });
}

describe('format 2: one GNU tar volume per chunk', () => {
  for (const [fixture, algo, gzip] of [['v2-plain-sha512', 'sha512', false], ['v2-gzip-sha1', 'sha1', true]] as const) {
    test(`${fixture}: a 3-volume file and a single-volume file`, async (t) => {
      if (!have.has(fixture)) return t.skip('fixture missing');
      const mv = path.join(work, `mv-${fixture}`);
      fs.mkdirSync(mv);
      const vols = multiVolumes(dir5(), 'vm5/', 1024, mv);
      assert.equal(vols.length, 3);
      const one = multiVolumes(dir6(), 'vm6/', 1024, path.join(mv));
      const enc = (b: Buffer[]): Buffer[] => (gzip ? b.map((v) => gzipSync(v)) : b);
      const body = [...hmacChunks('vm5/private.img', enc(vols), algo, 'qubes'), ...hmacChunks('vm6/private.img', enc(one.slice(0, 1)), algo, 'qubes')];
      const { r, staging } = await restore(fixture, body, { 'vm5/': 'work', 'vm6/': 'custom' });
      expectOk(r, staging, { 'vm5/private.img': img5.sha256, 'vm6/private.img': img6.sha256 });
    });
  }
});

describe('format 2, encrypted (R2 GA): each volume its own openssl file', () => {
  test('a 3-volume file and a single-volume file', async (t) => {
    if (!have.has('v2-plain-sha512')) return t.skip('fixture missing');
    const mv = path.join(work, 'mv-enc');
    fs.mkdirSync(mv);
    const vols = multiVolumes(dir5(), 'vm5/', 1024, mv).map((v) => opensslEncrypt(v, 'qubes'));
    const one = multiVolumes(dir6(), 'vm6/', 1024, mv).slice(0, 1).map((v) => opensslEncrypt(v, 'qubes'));
    const head = await v2Head(loadFixture('v2-plain-sha512').bin, true, 'qubes');
    const reader = readerOf(Buffer.concat([head, ...hmacChunks('vm5/private.img', vols, 'sha512', 'qubes'), ...hmacChunks('vm6/private.img', one, 'sha512', 'qubes')]));
    const h = await readArchiveHead(reader, 'qubes', { pool });
    assert.equal(h.header.encrypted, true);
    assert.match(h.qubesXmlBytes.toString('utf8'), /QubesVmCollection/);
    const staging = tempDir();
    const sel = new Map([['vm5/', { vm: 'work', stagingDir: staging }], ['vm6/', { vm: 'custom', stagingDir: staging }]]);
    const r = await restoreData(reader, { head: h, passphrase: 'qubes', pool, slotBytes: 4 * 1024 * 1024 }, sel);
    expectOk(r, staging, { 'vm5/private.img': img5.sha256, 'vm6/private.img': img6.sha256 });
  });
});

describe('format 3: one continuous openssl stream cut into chunks', () => {
  const cases: Array<[string, number, boolean, boolean]> = [
    ['v3-aes-gzip', 100_003, true, false], // unaligned pieces: the tail block is carried over
    ['v3-aes-gzip', 65_536, true, true], // aligned, plus an empty trailing chunk
    ['v3-aes-nocomp', 300_017, false, false],
  ];
  for (const [fixture, size, gzip, emptyTail] of cases) {
    test(`${fixture}: chunks of ${size} bytes${emptyTail ? ' + empty trailing chunk' : ''}`, async (t) => {
      if (!have.has(fixture)) return t.skip('fixture missing');
      const chunks = split(opensslEncrypt(innerStream(dir5(), 'vm5/', gzip), 'qubes'), size);
      assert.ok(chunks.length >= 3);
      if (emptyTail) chunks.push(Buffer.alloc(0));
      const small = [opensslEncrypt(innerStream(dir6(), 'vm6/', gzip), 'qubes')];
      const body = [...hmacChunks('vm5/private.img', chunks, 'sha512', 'qubes'), ...hmacChunks('vm6/private.img', small, 'sha512', 'qubes')];
      const { r, staging } = await restore(fixture, body, { 'vm5/': 'work', 'vm6/': 'custom' });
      expectOk(r, staging, { 'vm5/private.img': img5.sha256, 'vm6/private.img': img6.sha256 });
    });
  }

  test('unselected VMs are skipped without being decoded', async (t) => {
    if (!have.has('v3-aes-gzip')) return t.skip('fixture missing');
    const chunks = split(opensslEncrypt(innerStream(dir5(), 'vm5/', true), 'qubes'), 100_000);
    chunks[1] = Buffer.from('garbage that would fail authentication');
    const small = [opensslEncrypt(innerStream(dir6(), 'vm6/', true), 'qubes')];
    const body = [...hmacChunks('vm5/private.img', chunks, 'sha512', 'qubes'), ...hmacChunks('vm6/private.img', small, 'sha512', 'qubes')];
    const { r, staging } = await restore('v3-aes-gzip', body, { 'vm6/': 'custom' });
    assert.ok(r.bytesRestored < 400_000);
    assert.equal(fs.existsSync(path.join(staging, 'vm5')), false);
    expectOk(r, staging, { 'vm6/private.img': img6.sha256 });
  });

  test('missing .hmac, orphan .hmac and a wrong .hmac fail only their VM', async (t) => {
    if (!have.has('v3-aes-gzip')) return t.skip('fixture missing');
    const big = split(opensslEncrypt(innerStream(dir5(), 'vm5/', true), 'qubes'), 100_000);
    const small = [opensslEncrypt(innerStream(dir6(), 'vm6/', true), 'qubes')];
    const good6 = hmacChunks('vm6/private.img', small, 'sha512', 'qubes');
    const m = hmacChunks('vm5/private.img', big, 'sha512', 'qubes');
    const variants: Array<[string, Buffer[], string, RegExp]> = [
      ['missing .hmac', [...m.slice(0, 3), ...m.slice(4)], 'ERR_CORRUPT', /is not followed by .*\.hmac/],
      ['data missing before its .hmac', [...m.slice(0, 2), ...m.slice(3)], 'ERR_CORRUPT', /without its data/],
      ['orphan .hmac', [...m, outerMember('vm5/root.img.000.hmac', hmacFile('sha512', 'qubes', Buffer.alloc(1)))], 'ERR_CORRUPT', /without its data/],
      ['wrong .hmac', [...m.slice(0, 3), outerMember('vm5/private.img.001.hmac', hmacFile('sha512', 'qubes', Buffer.from('x'))), ...m.slice(4)], 'ERR_CHUNK_AUTH', /HMAC/],
      ['gap', [...m.slice(0, 2), ...m.slice(4)], 'ERR_CORRUPT', /out of order/],
    ];
    for (const [what, body, code, msg] of variants) {
      const { r, staging } = await restore('v3-aes-gzip', [...body, ...good6], { 'vm5/': 'work', 'vm6/': 'custom' });
      assert.doesNotThrow(() => failedOnly(r, staging, 'work', code, msg, { 'vm6/private.img': img6.sha256 }), what);
    }
  });
});

describe('format 4: scrypt chunks bound to their names', () => {
  const stream = () => split(innerStream(dir5(), 'vm5/', true), 300_000);
  const small = () => scryptChunks('vm6/private.img', [innerStream(dir6(), 'vm6/', true)], ID, 'qubes');

  test('v4-gzip: multi-chunk file with an empty trailing chunk', async (t) => {
    if (!have.has('v4-gzip')) return t.skip('fixture missing');
    const chunks = stream();
    assert.ok(chunks.length >= 3);
    chunks.push(Buffer.alloc(0));
    const { r, staging } = await restore('v4-gzip', [...scryptChunks('vm5/private.img', chunks, ID, 'qubes'), ...small()], { 'vm5/': 'work', 'vm6/': 'mynet' });
    expectOk(r, staging, { 'vm5/private.img': img5.sha256, 'vm6/private.img': img6.sha256 });
  });

  test('gap, duplicate, swapped chunks and a trailing stray chunk fail only their VM', async (t) => {
    if (!have.has('v4-gzip')) return t.skip('fixture missing');
    const c = scryptChunks('vm5/private.img', stream(), ID, 'qubes');
    const swapped = scryptChunks('vm5/private.img', stream(), ID, 'qubes', ['vm5/private.img.000', 'vm5/private.img.002', 'vm5/private.img.001']);
    const variants: Array<[string, Buffer[], string, RegExp]> = [
      ['gap', [c[0] as Buffer, ...c.slice(2), ...small()], 'ERR_CORRUPT', /out of order: .*\.001 is missing/],
      ['duplicate', [...c, c[0] as Buffer, ...small()], 'ERR_CORRUPT', /duplicate/],
      ['swapped', [swapped[0] as Buffer, renamed(swapped[1] as Buffer, 1), renamed(swapped[2] as Buffer, 2), ...small()], 'ERR_CHUNK_AUTH', /authentication failed/],
      ['stray', [...c, ...small(), renamed(c[1] as Buffer, 1)], 'ERR_CORRUPT', /without the preceding chunks/],
    ];
    for (const [what, body, code, msg] of variants) {
      const { r, staging } = await restore('v4-gzip', body, { 'vm5/': 'work', 'vm6/': 'mynet' });
      assert.doesNotThrow(() => failedOnly(r, staging, 'work', code, msg, { 'vm6/private.img': img6.sha256 }), what);
    }
  });
});

describe('format 4: a VM whose files are all extracted is said before the end, and again after more of them', () => {
  test('a VM reopened by a later member is said reopened, then extracted again; every VM ends extracted and done', async (t) => {
    if (!have.has('v4-gzip')) return t.skip('fixture missing');
    const rootTar = (): Buffer => {
      const tar = execFileSync('tar', ['-Pc', '--sparse', '-C', dir6(), '--xform=s:^private.img:vm5/root.img:', '-f', '-', 'private.img']);
      return gzipSync(tar);
    };
    const body = [
      ...scryptChunks('vm5/private.img', [innerStream(dir6(), 'vm5/', true)], ID, 'qubes'),
      ...scryptChunks('vm6/private.img', split(innerStream(dir5(), 'vm6/', true), 300_000), ID, 'qubes'),
      ...scryptChunks('vm5/root.img', [rootTar()], ID, 'qubes'),
    ];
    const head = await headOf(loadFixture('v4-gzip').bin);
    // the member that reopens `work` comes once `work` was said extracted (5 s at most): the run
    // then has to take it back
    let saidWork: () => void = () => undefined;
    const workSaid = new Promise<void>((resolve) => {
      saidWork = resolve;
      setTimeout(resolve, 5000).unref();
    });
    const last = body.pop()!;
    const reader = new OuterTarReader(Readable.from((async function* () {
      yield Buffer.concat([head, ...body]);
      await workSaid;
      yield last;
    })()));
    const h = await readArchiveHead(reader, 'qubes', { pool });
    const staging = tempDir();
    const sel = new Map([['vm5/', { vm: 'work', stagingDir: staging }], ['vm6/', { vm: 'mynet', stagingDir: staging }]]);
    const events: string[] = [];
    const files = (vm: string): string[] => fs.readdirSync(path.join(staging, vm === 'work' ? 'vm5' : 'vm6')).sort();
    const r = await restoreData(reader, {
      head: h, passphrase: 'qubes', pool, slotBytes: 4 * 1024 * 1024,
      // what the VM's directory holds when it is said extracted is all it will hold, unless reopened
      onVmExtracted: (vm) => {
        events.push(`extracted ${vm} ${files(vm).join(',')}`);
        if (vm === 'work') saidWork();
      },
      onVmReopened: (vm) => events.push(`reopened ${vm}`),
      onVmDone: (vm, ok) => events.push(`done ${vm} ${ok}`),
    }, sel);
    assert.ok(r.ok, JSON.stringify(events));
    for (const vm of ['work', 'mynet']) {
      const mine = events.filter((e) => e.split(' ')[1] === vm);
      mine.forEach((e, i) => {
        if (e.startsWith('reopened')) assert.match(mine[i - 1] ?? '', /^extracted /, `${vm}: reopened only after extracted: ${mine.join(' | ')}`);
      });
      assert.equal(mine.at(-1), `done ${vm} true`, mine.join(' | '));
      assert.match(mine.at(-2) ?? '', /^extracted /, `${vm} ends extracted: ${mine.join(' | ')}`);
    }
    assert.deepEqual(events.filter((e) => e.includes('work')), ['extracted work private.img', 'reopened work', 'extracted work private.img,root.img', 'done work true']);
    assert.equal(sha(path.join(staging, 'vm5/root.img')), img6.sha256);
    fs.rmSync(staging, { recursive: true, force: true });
  });
});

/** Give an encrypted member the name of chunk `i` (its passphrase binds another name). */
function renamed(member: Buffer, i: number): Buffer {
  const data = member.subarray(1536, 1536 + Number.parseInt(member.subarray(2 * 512 + 124, 2 * 512 + 135).toString('latin1'), 8));
  return outerMember(`vm5/private.img.${String(i).padStart(3, '0')}.enc`, data);
}
