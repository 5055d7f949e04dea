// Streaming restore against every archive written by Qubes OS code: head, full extraction checked
// file by file (sizes, sha256, holes, symlinks, template dirs, dom0 home), verify-only, wrong
// passphrase, a flipped byte inside one VM's chunk, and truncated archives.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { WorkerPool } from '../../../../src/main/pipeline/worker-pool.js';
import { includedDomainsBySubdir, readArchiveHead } from '../../../../src/main/restore/stream/index.js';
import { parseQubesXml } from '../../../../src/main/qubes-xml/index.js';
import { rewriteArchive } from './build-archive.js';
import { checkAll, fixtureNames, listFiles, loadFixture, memberOffsets, readerOf, runRestore, selectionOf } from './stream-helpers.js';

const names = fixtureNames();
let pool: WorkerPool;
const temps: string[] = [];

before(() => {
  pool = new WorkerPool({ threads: 2 });
});
after(async () => {
  await pool.destroy();
  for (const t of temps) fs.rmSync(t, { recursive: true, force: true });
});

test('fixtures are present', () => {
  assert.ok(names.length >= 9, `expected the Qubes-made fixtures, found ${names.length}`);
});

for (const name of names) {
  describe(name, () => {
    const { bin, exp } = loadFixture(name);

    test('head is authenticated and qubes.xml lists the included VMs', async () => {
      const head = await readArchiveHead(readerOf(bin), 'qubes', { pool });
      assert.equal(head.version, exp.format_version);
      assert.equal(head.header.encrypted, exp.encrypted);
      assert.equal(head.header.compressed, exp.compressed);
      if (exp.backup_id !== null) assert.equal(head.header.backupId, exp.backup_id);
      const subdirs = [...includedDomainsBySubdir(parseQubesXml(head.qubesXmlBytes)).keys()].sort();
      assert.deepEqual(subdirs, [...selectionOf(exp, '/x').keys()].sort());
    });

    test('restores every file byte for byte', async () => {
      const events: Array<{ bytesRead: number; bytesRestored: number }> = [];
      const done: string[] = [];
      const { result, staging } = await runRestore(pool, bin, exp, { onProgress: (e) => events.push(e), onVmDone: (vm, ok) => done.push(`${vm}:${ok}`) });
      temps.push(staging);
      assert.deepEqual(done.sort(), [...selectionOf(exp, '/x').values()].map((e) => `${e.vm}:true`).sort());
      for (let i = 1; i < events.length; i++) {
        assert.ok((events[i]?.bytesRead ?? 0) >= (events[i - 1]?.bytesRead ?? 0));
        assert.ok((events[i]?.bytesRestored ?? 0) >= (events[i - 1]?.bytesRestored ?? 0));
      }
      assert.equal(events.at(-1)?.bytesRestored, result.bytesRestored);
      assert.ok(result.bytesRead > bin.length * 0.9 && result.bytesRead <= bin.length);
      assert.equal(result.archiveError, undefined);
      for (const v of result.vms.values()) assert.ok(v.ok, `${v.vm}: ${v.error?.message}`);
      assert.ok(result.ok);
      assert.ok(result.bytesRestored > 0);
      assert.ok(checkAll(staging, exp) > 10);
    });

    test('verify-only passes; it extracts as a restore does, but every image written in-process is a placeholder of its size without data', async () => {
      const { result, staging } = await runRestore(pool, bin, exp, { verifyOnly: true });
      temps.push(staging);
      for (const v of result.vms.values()) assert.ok(v.ok, `${v.vm}: ${v.error?.message}`);
      assert.ok(result.ok);
      const sizes = new Map<string, number>();
      for (const v of Object.values(exp.expected.vms)) for (const [n, e] of Object.entries(v.members)) if (e.type !== 'dir' && e.type !== 'symlink' && e.size !== undefined) sizes.set(`${v.backup_subdir}/${n}`, e.size);
      let images = 0;
      for (const f of listFiles(staging)) {
        const rel = f.slice(staging.length + 1);
        if (exp.format_version === 2 || !rel.endsWith('.img')) continue;
        const st = fs.lstatSync(f);
        assert.ok(st.isFile(), rel);
        if (sizes.has(rel)) assert.equal(st.size, sizes.get(rel), `${rel}: the image's size`);
        // (an image inside a directory archive, as R3 templates have, is GNU tar's: extracted)
        if (st.blocks === 0) images++;
      }
      // what GNU tar extracts (format 2: everything) is there as a restore extracts it
      if (exp.format_version === 2) assert.ok(checkAll(staging, exp) > 10);
      else assert.ok(images > 0);
    });

    test('wrong passphrase is ERR_HEADER_AUTH', async () => {
      await assert.rejects(readArchiveHead(readerOf(bin), 'qubes!', { pool }), (e: { code?: string; message?: string }) => {
        assert.equal(e.code, 'ERR_HEADER_AUTH');
        assert.match(e.message ?? '', /wrong passphrase or corrupted backup/);
        return true;
      });
    });
  });
}

/** The work VM's private.img chunk in each format. */
const CORRUPT_CASES: Array<[string, string, string]> = [
  ['v4-nocomp', 'vm3/private.img.000.enc', 'work'],
  ['v3-aes-gzip', 'vm5/private.img.000', 'work'],
  ['v3-plain-gzip', 'appvms/work/private.img.000', 'work'],
  ['v2-gzip-sha1', 'vm5/private.img.000', 'work'],
];

describe('a flipped byte inside a data chunk', () => {
  for (const [name, member, vm] of CORRUPT_CASES) {
    test(`${name}: ${vm} fails with ERR_CHUNK_AUTH, the other VMs restore`, async (t) => {
      if (!names.includes(name)) return t.skip('fixture missing');
      const { bin, exp } = loadFixture(name);
      const at = (await memberOffsets(bin)).get(member);
      assert.ok(at, `${member} not in ${name}`);
      const bad = Buffer.from(bin);
      const i = at.offset + Math.floor(at.size / 2);
      bad[i] = (bad[i] ?? 0) ^ 0x01;
      const { result, staging } = await runRestore(pool, bad, exp);
      temps.push(staging);
      assert.equal(result.archiveError, undefined);
      assert.equal(result.ok, false);
      const failed = [...result.vms.values()].filter((v) => !v.ok);
      assert.deepEqual(failed.map((v) => v.vm), [vm]);
      assert.equal(failed[0]?.error?.code, 'ERR_CHUNK_AUTH');
      const workSubdir = `${exp.expected.vms[vm]?.backup_subdir}/`;
      assert.ok(checkAll(staging, exp, new Set([workSubdir])) > 10);
      assert.equal(fs.existsSync(`${staging}/${workSubdir}private.img`), false, 'nothing unverified was extracted');
    });
  }
});

describe('verification of completeness against qubes.xml', () => {
  test('v4-gzip: a VM without data and a VM without its private.img fail, naming them', async (t) => {
    if (!names.includes('v4-gzip')) return t.skip('fixture missing');
    const { bin, exp } = loadFixture('v4-gzip');
    const cut = await rewriteArchive(bin, (n) => n !== 'vm6/private.img.000.enc' && n !== 'vm4/private.img.000.enc');
    for (const verifyOnly of [true, false]) {
      const { result, staging } = await runRestore(pool, cut, exp, { verifyOnly });
      temps.push(staging);
      const failed = new Map([...result.vms.values()].filter((v) => !v.ok).map((v) => [v.vm, v.error?.message ?? '']));
      assert.deepEqual([...failed.keys()].sort(), ['mynet', 'standalone']);
      assert.match(failed.get('mynet') ?? '', /no data for mynet/);
      assert.match(failed.get('standalone') ?? '', /vm4\/private\.img/);
    }
  });
});

describe('a truncated archive', () => {
  for (const name of ['v4-gzip', 'v3-aes-gzip', 'v2-gzip-sha1']) {
    test(`${name}: clear ERR_CORRUPT, VMs before the cut restore, the rest fail`, async (t) => {
      if (!names.includes(name)) return t.skip('fixture missing');
      const { bin, exp } = loadFixture(name);
      const cut = bin.subarray(0, Math.floor(bin.length * 0.6) + 77);
      const { result, staging } = await runRestore(pool, cut, exp);
      temps.push(staging);
      assert.equal(result.ok, false);
      assert.equal(result.archiveError?.code, 'ERR_CORRUPT');
      assert.match(result.archiveError?.message ?? '', /truncated/);
      const vms = [...result.vms.values()];
      assert.ok(vms.some((v) => v.ok), 'VMs completely before the cut are restored');
      assert.ok(vms.some((v) => !v.ok), 'VMs after the cut fail');
      for (const v of vms) if (!v.ok) assert.equal(v.error?.code, 'ERR_CORRUPT', `${v.vm}: ${v.error?.message}`);
    });
  }

  test('cut inside the head: ERR_CORRUPT from readArchiveHead', async (t) => {
    if (!names.includes('v4-gzip')) return t.skip('fixture missing');
    const { bin } = loadFixture('v4-gzip');
    const offsets = await memberOffsets(bin);
    const q = offsets.get('qubes.xml.000.enc');
    assert.ok(q);
    await assert.rejects(readArchiveHead(readerOf(bin.subarray(0, q.offset + 100)), 'qubes', { pool }), { code: 'ERR_CORRUPT' });
  });
});
