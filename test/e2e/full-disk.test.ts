// A full disk loses nothing: backup and restore into a small tmpfs fail early with the numbers
// when the data obviously cannot fit, and a disk that fills up during the run gives exit status 6
// with the partial output / staging directory removed. Needs root (mount); skipped otherwise.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { makeSampleCollection } from '../../scripts/make-sample.js';
import { tempDir, passFile, node, run, BACKUP_BIN, RESTORE_BIN } from '../helpers/cli.js';

const MiB = 1024 * 1024;

function mountTmpfs(dir: string, size: string): boolean {
  mkdirSync(dir, { recursive: true });
  return run('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir]).status === 0;
}

test('full disk: early refusal with numbers, ENOSPC mid-run removes the partial output', { timeout: 180_000 }, (t) => {
  const tmp = tempDir();
  const small = join(tmp.dir, 'small');
  if (!mountTmpfs(small, '3M')) {
    t.skip('cannot mount a tmpfs here (not root?)');
    tmp.cleanup();
    return;
  }
  try {
    const root = join(tmp.dir, 'qubes');
    const home = join(tmp.dir, 'home', 'user');
    // 24 MiB of data, a third of it random: about 10 MiB compressed, more than the 3 MiB disk
    makeSampleCollection({ root, home, bigImageBytes: 64 * MiB, bigDataBytes: 24 * MiB, smallImageBytes: 8 * MiB, smallDataBytes: 64 * 1024 });
    const pw = passFile(tmp.dir);
    const base = ['-q', '-y', '--qubes-root', root, '--dom0-home', home, '-p', pw, '--scrypt-logn', '10', '--chunk-size', '1M'];
    // uncompressed: 24 MiB obviously does not fit in 3 MiB — refused before writing
    let r = node(BACKUP_BIN, [...base, '--format', '3', '--no-compress', join(small, 'b.bin'), 'work']);
    assert.equal(r.status, 6, r.stderr);
    assert.match(r.stderr, /not enough free space.*bytes free/);
    assert.deepEqual(readdirSync(small), []);
    // compressed: passes the estimate, then the disk fills up during the run
    r = node(BACKUP_BIN, [...base, join(small, 'b.bin'), 'work']);
    assert.equal(r.status, 6, r.stderr);
    assert.match(r.stderr, /space/i);
    assert.deepEqual(readdirSync(small), [], 'the partial backup was removed');
    // restore into a host on the small disk: refused early, with the numbers, nothing left behind
    const archive = join(tmp.dir, 'b.bin');
    r = node(BACKUP_BIN, [...base, archive, 'work']);
    assert.equal(r.status, 0, r.stderr);
    r = node(RESTORE_BIN, ['-q', '-y', '-p', pw, '--qubes-root', join(small, 'host'), '--dom0-home', join(tmp.dir, 'hh', 'user'), '--ignore-missing', archive]);
    assert.equal(r.status, 6, r.stderr);
    assert.match(r.stderr, /not enough free space/);
    assert.deepEqual(readdirSync(small).filter((n) => n !== 'host'), []);
  } finally {
    run('umount', [small]);
    tmp.cleanup();
  }
});

test('restore: a disk that fills up during the run gives exit 6 (image written in-process, and a home extracted by tar), staging removed, nothing installed', { timeout: 120_000 }, async (t) => {
  const { buildV4Archive, tarOf } = await import('../helpers/archive-builder.js');
  const { r4Xml } = await import('../main/restore/sample-xml.js');
  const { randomBytes } = await import('node:crypto');
  const { writeFileSync, existsSync } = await import('node:fs');
  const tmp = tempDir();
  const small = join(tmp.dir, 'small');
  if (!mountTmpfs(small, '3M')) {
    t.skip('cannot mount a tmpfs here (not root?)');
    tmp.cleanup();
    return;
  }
  try {
    const src = join(tmp.dir, 'src');
    mkdirSync(join(src, 'vm9'), { recursive: true });
    mkdirSync(join(src, 'dom0-home', 'user'), { recursive: true });
    writeFileSync(join(src, 'vm9', 'private.img'), randomBytes(8 * MiB));
    writeFileSync(join(src, 'dom0-home', 'user', 'big.bin'), randomBytes(8 * MiB));
    // the backup claims small sizes, so the free-space check up front passes
    const xml = r4Xml([{ name: 'tpl', klass: 'TemplateVM', qid: 2 }, { name: 'big', klass: 'AppVM', qid: 9, template: 'tpl', netvm: null, backup: true, size: 4096 }], { dom0Home: { user: 'user', size: 4096 } });
    const archive = join(tmp.dir, 'a.bin');
    writeFileSync(archive, buildV4Archive({ passphrase: 'pw', qubesXml: xml, members: [{ base: 'vm9/private.img', tar: tarOf(src, ['vm9/private.img']) }, { base: 'dom0-home/user', tar: tarOf(src, ['dom0-home/user']) }], work: tmp.dir }));
    const pw = join(tmp.dir, 'pw');
    writeFileSync(pw, 'pw\n');
    const host = join(small, 'host');
    mkdirSync(host);
    writeFileSync(join(host, 'qubes.xml'), r4Xml([{ name: 'tpl', klass: 'TemplateVM', qid: 2 }]));
    mkdirSync(join(tmp.dir, 'hh', 'user'), { recursive: true });
    mkdirSync(join(small, 'user')); // the dom0 home target must exist (checked before any data is read)
    for (const which of ['big', 'dom0']) {
      const r = node(RESTORE_BIN, ['-q', '-y', '-p', pw, '--qubes-root', host, '--dom0-home', join(small, 'user'), archive, which]);
      assert.equal(r.status, 6, `${which}: ${r.stderr}`);
      assert.match(r.stderr, /space|disk is full/i);
      assert.deepEqual(readdirSync(host).filter((n) => n.startsWith('.restore-')), [], 'staging removed');
      assert.equal(existsSync(join(host, 'appvms')), false, 'nothing installed');
    }
  } finally {
    run('umount', [small]);
    tmp.cleanup();
  }
});

test('--verify-only: a scratch directory too small for what GNU tar extracts (an R3 template, archived as a whole directory) fails up front naming TMPDIR; images written in-process need no room', { timeout: 120_000 }, async (t) => {
  const { FIXTURE_DIR } = await import('../main/tar/tar-test-helpers.js');
  const { existsSync, writeFileSync } = await import('node:fs');
  const archive = join(FIXTURE_DIR, 'v3-aes-gzip.bin');
  if (!existsSync(archive)) return t.skip(`no Qubes-made fixtures in ${FIXTURE_DIR}`);
  const tmp = tempDir();
  const small = join(tmp.dir, 'small');
  if (!mountTmpfs(small, '64k')) {
    t.skip('cannot mount a tmpfs here (not root?)');
    tmp.cleanup();
    return;
  }
  try {
    const pw = join(tmp.dir, 'pw');
    writeFileSync(pw, 'qubes\n');
    const env = { ...process.env, TMPDIR: small };
    const r = node(RESTORE_BIN, ['--verify-only', '-q', '-y', '-p', pw, archive, 'tplclone'], { env });
    assert.equal(r.status, 6, r.stderr);
    assert.match(r.stderr, /^qvm-backup-restore: error: not enough free space in TMPDIR \S+ for the verification's scratch copy of what GNU tar extracts: \d+ bytes free, \d+ bytes needed \(set TMPDIR to a directory with more room\)$/m);
    // an AppVM's images are placeholders: its verification fits in 64 KiB
    const ok = node(RESTORE_BIN, ['--verify-only', '-q', '-y', '-p', pw, archive, 'work'], { env });
    assert.equal(ok.status, 0, ok.stderr);
    assert.deepEqual(readdirSync(small), [], 'the scratch directory is removed');
  } finally {
    run('umount', [small]);
    tmp.cleanup();
  }
});
