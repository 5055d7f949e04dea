// qvm-backup-restore --list (issue 10): the archive's settings and VMs from the authenticated header
// and qubes.xml only. Proven here: it works on Qubes-made archives of formats 2-4 and on a format 1
// directory; no VM chunk is read (an archive whose data after qubes.xml is corrupt still lists, and
// a --source-command that goes on after the head is stopped); nothing is written to the host.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { RESTORE_BIN, node, tempDir } from '../helpers/cli.js';

/** A format 1 (R1) collection: one AppVM in the backup. */
const r1Xml = '<?xml version="1.0" ?>\n<QubesVmCollection default_template="1"><QubesTemplateVm qid="1" name="tpl" dir_path="/var/lib/qubes/vm-templates/tpl" label="black" backup_content="False"/>' +
  '<QubesAppVm qid="3" name="work" template_qid="1" dir_path="/var/lib/qubes/appvms/work" label="green" backup_content="True" backup_path="appvms/work" backup_size="4096"/></QubesVmCollection>\n';

const FIX = '/work/shared/fixtures/qubes-made';
const have = existsSync(FIX);

interface Expected {
  format_version: number;
  compressed: boolean;
  encrypted: boolean;
  compression_filter?: string;
  backup_id?: string;
  expected: { vms: Record<string, { backup_subdir: string }> };
}

function setup() {
  const t = tempDir('qvmb-list-');
  const pw = path.join(t.dir, 'pw');
  writeFileSync(pw, 'qubes\n');
  const root = path.join(t.dir, 'no-such-root');
  return { ...t, pw, root };
}

/** Byte offset just past the data of the outer tar member `name` (its ustar header found by scanning blocks). */
function memberAfter(archive: Buffer, name: string): number {
  for (let off = 0; off + 512 <= archive.length; off += 512) {
    const n = archive.subarray(off, off + 100).toString('latin1').replace(/\0.*$/s, '');
    if (n !== name || archive.subarray(off + 257, off + 262).toString('latin1') !== 'ustar') continue;
    const size = parseInt(archive.subarray(off + 124, off + 136).toString('latin1').replace(/\0.*$/s, '').trim(), 8);
    return off + 512 + Math.ceil(size / 512) * 512;
  }
  throw new Error(`${name} not in the archive`);
}

for (const name of ['v4-gzip', 'v4-nocomp', 'upstream-v4-gzip', 'v3-aes-gzip', 'v3-plain-gzip', 'v2-gzip-sha1', 'v2-plain-sha512']) {
  test(`--list --json of the Qubes-made ${name}: settings and every VM as Qubes wrote them`, { skip: !have }, () => {
    const t = setup();
    try {
      const exp = JSON.parse(readFileSync(path.join(FIX, `${name}.expected.json`), 'utf8')) as Expected;
      const r = node(RESTORE_BIN, ['--list', '--json', '-p', t.pw, '--qubes-root', t.root, path.join(FIX, `${name}.bin`)]);
      assert.equal(r.status, 0, r.stderr);
      const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
      assert.equal(lines.length, 1);
      const l = lines[0]! as { message_type: string; operation: string; format: number; encrypted: boolean; compressed: boolean; compression_filter: string | null; backup_id: string | null; kdf: { n: number; r: number; p: number } | null; vms: { name: string; path: string }[]; dom0_home: { user: string } | null };
      assert.equal(l.message_type, 'listing');
      assert.equal(l.operation, 'list');
      assert.equal(l.format, exp.format_version);
      assert.equal(l.encrypted, exp.encrypted);
      assert.equal(l.compressed, exp.compressed);
      if (exp.compressed && exp.format_version > 2) assert.equal(l.compression_filter, exp.compression_filter);
      assert.equal(l.backup_id, exp.backup_id ?? null);
      if (exp.format_version === 4) assert.ok(l.kdf !== null && l.kdf.n >= 1024 && l.kdf.r >= 1 && l.kdf.p >= 1, JSON.stringify(l.kdf));
      else assert.equal(l.kdf, null);
      const want = Object.entries(exp.expected.vms).map(([vm, e]) => `${vm} ${e.backup_subdir.replace(/\/$/, '')}`).sort();
      assert.deepEqual(l.vms.map((v) => `${v.name} ${v.path.replace(/\/$/, '')}`).sort(), want);
      assert.equal(l.dom0_home?.user, 'user');
      assert.ok(!existsSync(t.root), 'nothing created on the host');
    } finally {
      t.cleanup();
    }
  });
}

test('--list text: header lines and the VM table with label and files', { skip: !have }, () => {
  const t = setup();
  try {
    const r = node(RESTORE_BIN, ['--list', '-p', t.pw, '--qubes-root', t.root, path.join(FIX, 'v4-gzip.bin')]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^format: +4$/m);
    assert.match(r.stdout, /^compression: +gzip$/m);
    assert.match(r.stdout, /^KDF cost: +scrypt N=2\^\d+ r=8 p=1 /m);
    assert.match(r.stdout, /^backup id: +20161020T123455-1234$/m);
    assert.match(r.stdout, /^date: +2016-10-20 12:34:55 /m);
    assert.match(r.stdout, /^name +\| type +\| template +\| netvm +\| label +\| +size \| files$/m);
    assert.match(r.stdout, /^work +\| AppVM +\| fedora-30 +\| \(default\) +\| green +\| +2\.0 MiB \| vm3 private\.img$/m);
    assert.match(r.stdout, /^dom0 +\| home +\|.*dom0-home\/user \(home of user\)$/m);
  } finally {
    t.cleanup();
  }
});

test('--list reads no VM chunk: data after qubes.xml corrupted still lists (the restore itself fails on it)', { skip: !have }, () => {
  const t = setup();
  try {
    const bin = readFileSync(path.join(FIX, 'v4-gzip.bin'));
    const at = memberAfter(bin, 'qubes.xml.000.enc');
    const bad = Buffer.from(bin);
    for (let i = at + 512; i < bad.length - 1024; i += 97) bad[i] = (bad[i] ?? 0) ^ 0x5a; // every member after qubes.xml
    const file = path.join(t.dir, 'bad.bin');
    writeFileSync(file, bad);
    const r = node(RESTORE_BIN, ['--list', '-p', t.pw, '--qubes-root', t.root, file]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^work /m);
    const v = node(RESTORE_BIN, ['--verify-only', '-p', t.pw, '--qubes-root', t.root, file]);
    assert.notEqual(v.status, 0, 'the corruption is real: verification fails');
  } finally {
    t.cleanup();
  }
});

test('--list with --source-command stops the command after the head (no wait for the rest)', { skip: !have }, () => {
  const t = setup();
  try {
    const marker = path.join(t.dir, 'went-on');
    const t0 = Date.now();
    // the command would go on for 60 s after the archive and then leave a marker
    const r = node(RESTORE_BIN, ['--list', '-p', t.pw, '--qubes-root', t.root, '--source-command', `cat ${path.join(FIX, 'v3-aes-gzip.bin')}; sleep 60; touch ${marker}`]);
    assert.equal(r.status, 0, r.stderr);
    assert.ok(Date.now() - t0 < 30_000, `took ${Date.now() - t0} ms`);
    assert.match(r.stdout, /^format: +3$/m);
    assert.ok(!existsSync(marker));
  } finally {
    t.cleanup();
  }
});

test("--list of stdin ('-') and of a format 1 directory; wrong passphrase fails with the usual code", { skip: !have }, () => {
  const t = setup();
  try {
    const r = node(RESTORE_BIN, ['--list', '--json', '-p', t.pw, '--qubes-root', t.root, '-'], { input: readFileSync(path.join(FIX, 'v4-nocomp.bin')) });
    assert.equal(r.status, 0, r.stderr);
    assert.equal((JSON.parse(r.stdout) as { compressed: boolean }).compressed, false);
    const v1 = path.join(t.dir, 'v1');
    mkdirSync(path.join(v1, 'appvms', 'work'), { recursive: true });
    writeFileSync(path.join(v1, 'qubes.xml'), r1Xml);
    const d = node(RESTORE_BIN, ['--list', '--qubes-root', t.root, v1]);
    assert.equal(d.status, 0, d.stderr);
    assert.match(d.stdout, /^format: +1 /m);
    assert.match(d.stdout, /^work +\| AppVM +\| tpl /m);
    writeFileSync(t.pw, 'wrong\n');
    const w = node(RESTORE_BIN, ['--list', '--json', '-p', t.pw, path.join(FIX, 'v4-gzip.bin')]);
    assert.equal(w.status, 4, w.stderr);
    assert.equal((JSON.parse(w.stdout.trim()) as { error_code: string }).error_code, 'ERR_HEADER_AUTH');
    const u = node(RESTORE_BIN, ['--list', '-p', t.pw, path.join(FIX, 'v4-gzip.bin'), 'work']);
    assert.equal(u.status, 2);
  } finally {
    t.cleanup();
  }
});
