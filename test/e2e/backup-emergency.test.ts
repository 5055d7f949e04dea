// qvm-backup end to end: archives in formats 4 (gzip and zstd), 3 and 2 of a sample collection (template, AppVMs,
// sparse multi-chunk images, firewall.xml, dom0 home) restored BY HAND with stock tools following
// the documented emergency procedures (test/emergency/*.sh): every file byte-identical, holes kept.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, statSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { makeSampleCollection } from '../../scripts/make-sample.js';
import { tempDir, passFile, node, run, duKiB, haveCmd, BACKUP_BIN, EMERGENCY } from '../helpers/cli.js';

const MiB = 1024 * 1024;

function members(archive: string): string[] {
  const r = run('tar', ['-i', '-tf', archive]);
  assert.equal(r.status, 0, r.stderr);
  return r.stdout.split('\n').filter(Boolean);
}

/** Compare an original VM file with the restored one: bytes equal, and not less sparse. */
function sameFile(orig: string, restored: string): void {
  assert.ok(existsSync(restored), `missing restored file ${restored}`);
  const r = run('cmp', [orig, restored]);
  assert.equal(r.status, 0, `${restored} differs: ${r.stdout}${r.stderr}`);
  assert.ok(duKiB(restored) <= duKiB(orig) + 64, `${restored} lost its holes: du ${duKiB(restored)} KiB vs ${duKiB(orig)} KiB`);
}

interface Case {
  format: '2' | '3' | '4';
  schema: 'r4' | 'r3';
  extra: string[];
  script: string;
  needs?: string[];
}

const cases: Case[] = [
  { format: '4', schema: 'r4', extra: ['--scrypt-logn', '14', '--chunk-size', '2M'], script: 'restore-v4.sh', needs: ['scrypt'] },
  // zstd frames from the workers (Node >= 22.15) or the zstd program's stream (Node 20): `zstd -d`
  { format: '4', schema: 'r4', extra: ['--scrypt-logn', '14', '--chunk-size', '2M', '-Z', 'zstd'], script: 'restore-v4.sh', needs: ['scrypt', 'zstd'] },
  { format: '3', schema: 'r3', extra: ['--chunk-size', '2M'], script: 'restore-v3.sh' },
  { format: '2', schema: 'r3', extra: ['--chunk-size', '2560K', '--no-compress'], script: 'restore-v2.sh' },
  { format: '2', schema: 'r3', extra: ['--chunk-size', '2560K', '--no-encrypt'], script: 'restore-v2.sh' },
];

for (const c of cases) {
  test(`format ${c.format} (${c.extra.join(' ')}) restores by hand with stock tools`, { timeout: 600_000 }, (t) => {
    const missing = (c.needs ?? []).filter((n) => !haveCmd(n));
    if (missing.length > 0) {
      t.skip(`${missing.join(', ')} CLI not installed`);
      return;
    }
    const tmp = tempDir();
    try {
      const root = join(tmp.dir, 'qubes');
      const home = join(tmp.dir, 'home', 'user');
      makeSampleCollection({ root, home, schema: c.schema, bigImageBytes: 400 * MiB, bigDataBytes: 12 * MiB, smallImageBytes: 64 * MiB, smallDataBytes: 1 * MiB });
      const pw = passFile(tmp.dir);
      const archive = join(tmp.dir, `backup-v${c.format}.bin`);
      const r = node(BACKUP_BIN, ['--qubes-root', root, '--dom0-home', home, '-p', pw, '-y', '--format', c.format, ...c.extra, archive]);
      assert.equal(r.status, 0, `qvm-backup failed: ${r.stderr}`);
      const names = members(archive);
      assert.equal(names[0], 'backup-header');
      assert.equal(names[1], 'backup-header.hmac');
      assert.ok(names[2]!.startsWith('qubes.xml.000'), names[2]);
      assert.ok(names[names.length - 1]!.startsWith('dom0-home/user.'), 'dom0 home is last');
      const bigChunks = names.filter((n) => /^vm3\/private\.img\.\d{3}(\.enc)?$/.test(n) || /^appvms\/work\/private\.img\.\d{3}$/.test(n));
      assert.ok(bigChunks.length >= 3, `the big image spans ${bigChunks.length} chunks, want 3+`);

      const out = join(tmp.dir, 'restored');
      const e = run('bash', [join(EMERGENCY, c.script), archive, pw, out]);
      assert.equal(e.status, 0, `emergency restore failed: ${e.stderr}`);
      const xml = readFileSync(join(out, 'qubes.xml'), 'utf8');
      assert.match(xml, c.schema === 'r4' ? /backup-content/ : /backup_content="True"/);
      // the VM dirs in the archive: vmN/ when encrypted (v4 always), real dirs otherwise
      const encrypted = c.format === '4' || !c.extra.includes('--no-encrypt');
      const dirFor = (qid: number, rel: string) => join(out, encrypted ? `vm${qid}` : rel);
      sameFile(join(root, 'appvms/work/private.img'), join(dirFor(3, 'appvms/work'), 'private.img'));
      sameFile(join(root, 'appvms/personal/private.img'), join(dirFor(4, 'appvms/personal'), 'private.img'));
      assert.equal(readFileSync(join(dirFor(3, 'appvms/work'), 'firewall.xml'), 'utf8'), readFileSync(join(root, 'appvms/work/firewall.xml'), 'utf8'));
      if (c.format === '4') {
        sameFile(join(root, 'vm-templates/fedora-40/root.img'), join(out, 'vm1/root.img'));
        sameFile(join(root, 'vm-templates/fedora-40/private.img'), join(out, 'vm1/private.img'));
        assert.equal(readFileSync(join(out, 'vm3/notes.txt'), 'utf8'), readFileSync(join(root, 'appvms/work/notes.txt'), 'utf8'));
      } else {
        // v2/v3: the TemplateVM is one archive of its whole directory
        const tdir = dirFor(1, 'vm-templates/fedora-40');
        sameFile(join(root, 'vm-templates/fedora-40/root.img'), join(tdir, 'root.img'));
        assert.ok(existsSync(join(tdir, 'apps.templates/firefox.desktop')));
      }
      assert.equal(readFileSync(join(out, 'dom0-home/user/Documents/notes.txt'), 'utf8'), readFileSync(join(home, 'Documents/notes.txt'), 'utf8'));
      // the live qubes.xml got backup_timestamp, nothing else changed in the root
      assert.match(readFileSync(join(root, 'qubes.xml'), 'utf8'), /backup_timestamp/);
      assert.deepEqual(readdirSync(tmp.dir).filter((n) => n.includes('partial')), []);
      assert.ok(statSync(archive).size > 0);
    } finally {
      tmp.cleanup();
    }
  });
}
