// Format 1 directories (qubes.xml read directly, VM dirs copied sparse) and headerless R2-beta3
// archives (digest guessed on qubes.xml.000; plain, and `openssl enc -z` encrypted+compressed).
import assert from 'node:assert/strict';
import { createHash, createHmac } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { deflateSync } from 'node:zlib';
import { WorkerPool } from '../../../../src/main/pipeline/worker-pool.js';
import { OuterTarReader } from '../../../../src/main/tar/outer-tar-reader.js';
import { readArchiveHead, readV1, restoreData, restoreV1 } from '../../../../src/main/restore/stream/index.js';
import { opensslEncryptFile } from '../../../../src/workers/openssl-enc.js';
import { innerStream, makeImage, outerMember } from './build-archive.js';
import { fixtureNames, loadFixture, readerOf, tempDir } from './stream-helpers.js';

let pool: WorkerPool;
let work: string;
let img: { file: string; sha256: string };
let qubesXmlTar: Buffer | undefined;

before(async () => {
  pool = new WorkerPool({ threads: 2 });
  work = tempDir();
  fs.mkdirSync(path.join(work, 'src'));
  img = makeImage(path.join(work, 'src'), 1);
  if (fixtureNames().includes('v2-plain-sha512')) {
    const r = new OuterTarReader(Readable.from([loadFixture('v2-plain-sha512').bin]));
    for (let e = await r.next(); e !== null; e = await r.next()) {
      if (e.untrustedName !== 'qubes.xml.000') {
        await e.skip();
        continue;
      }
      qubesXmlTar = Buffer.alloc(e.size);
      await e.readInto(qubesXmlTar);
      break;
    }
  }
});
after(async () => {
  await pool.destroy();
  fs.rmSync(work, { recursive: true, force: true });
});

const md5Hmac = (d: Uint8Array): Buffer => Buffer.from(`(stdin)= ${createHmac('md5', 'qubes').update(d).digest('hex')}\n`);
const sha = (p: string): string => createHash('sha256').update(fs.readFileSync(p)).digest('hex');

describe('headerless R2-beta3 archives', () => {
  for (const mode of ['plain', 'encrypted+compressed'] as const) {
    test(`${mode}: digest guessed (MD5), header synthesised, data restored`, async (t) => {
      if (!qubesXmlTar) return t.skip('fixture missing');
      // `openssl enc -e -z`: zlib applies to the whole openssl file (Salted__ ‖ salt ‖ ciphertext)
      const enc = (b: Buffer): Buffer => (mode === 'plain' ? b : deflateSync(opensslEncryptFile('aes-256-cbc', Buffer.from('qubes'), b)));
      const xml = enc(qubesXmlTar);
      const vm = enc(innerStream(path.join(work, 'src'), 'vm5/', false));
      const archive = Buffer.concat([
        outerMember('qubes.xml.000', xml),
        outerMember('qubes.xml.000.hmac', md5Hmac(xml)),
        outerMember('vm5/private.img.000', vm),
        outerMember('vm5/private.img.000.hmac', md5Hmac(vm)),
      ]);
      const reader = readerOf(archive);
      const head = await readArchiveHead(reader, 'qubes', { pool });
      assert.equal(head.headerless, true);
      assert.equal(head.version, 2);
      assert.equal(head.header.hmacAlgorithm.toLowerCase(), 'md5');
      assert.equal(head.header.encrypted, mode !== 'plain');
      assert.equal(head.header.compressed, mode !== 'plain');
      assert.match(head.qubesXmlBytes.toString('utf8'), /QubesVmCollection/);
      const staging = tempDir();
      const r = await restoreData(reader, { head, passphrase: 'qubes', pool, slotBytes: 4 << 20 }, new Map([['vm5/', { vm: 'work', stagingDir: staging }]]));
      assert.ok(r.ok, [...r.vms.values()].map((v) => v.error?.message).join());
      assert.equal(sha(path.join(staging, 'vm5/private.img')), img.sha256);
      fs.rmSync(staging, { recursive: true, force: true });
      await assert.rejects(readArchiveHead(readerOf(archive), 'wrong', { pool }), { code: 'ERR_HEADER_AUTH' });
    });
  }
});

describe('format 1 directory', () => {
  test('qubes.xml is read and VM dirs are copied with holes kept', async () => {
    const backup = path.join(work, 'qubes-2014-01-01-000000');
    const vmdir = path.join(backup, 'appvms', 'work');
    fs.mkdirSync(vmdir, { recursive: true });
    fs.writeFileSync(path.join(backup, 'qubes.xml'), '<QubesVmCollection/>');
    const sparse = path.join(vmdir, 'private.img');
    fs.writeFileSync(sparse, 'data at the start');
    fs.truncateSync(sparse, 64 * 1024 * 1024);
    fs.symlinkSync('/usr/share/qubes/icons/green.png', path.join(vmdir, 'icon.png'));
    const { qubesXmlBytes, version } = await readV1(backup);
    assert.equal(version, 1);
    assert.equal(qubesXmlBytes.toString(), '<QubesVmCollection/>');

    const staging = tempDir();
    const sel = new Map([
      ['appvms/work/', { vm: 'work', stagingDir: staging }],
      ['appvms/gone/', { vm: 'gone', stagingDir: staging }],
      ['../etc/', { vm: 'evil', stagingDir: staging }],
    ]);
    const done: string[] = [];
    const r = await restoreV1(backup, sel, { onVmDone: (vm, ok) => done.push(`${vm}:${ok}`) });
    assert.equal(r.ok, false);
    assert.equal(r.vms.get('appvms/work/')?.ok, true);
    assert.equal(r.vms.get('appvms/gone/')?.error?.code, 'ERR_CORRUPT');
    assert.equal(r.vms.get('../etc/')?.error?.code, 'ERR_UNSAFE_NAME');
    assert.deepEqual(done.sort(), ['evil:false', 'gone:false', 'work:true']);
    const copy = path.join(staging, 'appvms/work/private.img');
    assert.equal(sha(copy), sha(sparse));
    assert.ok(fs.statSync(copy).blocks * 512 < 1024 * 1024, 'holes kept');
    assert.equal(fs.readlinkSync(path.join(staging, 'appvms/work/icon.png')), '/usr/share/qubes/icons/green.png');
    fs.rmSync(staging, { recursive: true, force: true });
  });
});
