// Messages a person understands, end to end: everything checkable is checked before any data
// moves (the dom0 home target, mistyped VM names with "did you mean", -x names that match
// nothing), each problem is listed once, and --verify-only of a truncated archive never calls a
// VM verified that it then reports as failed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir, passFile, node, BACKUP_BIN, RESTORE_BIN, sampleIn } from '../helpers/cli.js';

const MiB = 1024 * 1024;

function setup(dir: string) {
  const { root, home } = sampleIn(dir, { bigImageBytes: 16 * MiB, bigDataBytes: 2 * MiB, smallImageBytes: 4 * MiB, smallDataBytes: 128 * 1024 });
  const pw = passFile(dir);
  const archive = join(dir, 'b.bin');
  const b = node(BACKUP_BIN, ['-q', '--qubes-root', root, '--dom0-home', home, '-p', pw, '-y', '--scrypt-logn', '10', '--chunk-size', '1M', archive]);
  assert.equal(b.status, 0, b.stderr);
  return { root, home, pw, archive };
}

const count = (text: string, part: string): number => text.split(part).length - 1;

test('restore: a missing --dom0-home stops the run before any data moves, named once with the fix', { timeout: 120_000 }, () => {
  const t = tempDir();
  try {
    const { pw, archive } = setup(t.dir);
    const host = join(t.dir, 'host');
    const r = node(RESTORE_BIN, ['--qubes-root', host, '--dom0-home', join(t.dir, 'no-such-home', 'user'), '-p', pw, '-y', archive]);
    assert.equal(r.status, 2, r.stderr);
    const line = `dom0 home: ${join(t.dir, 'no-such-home', 'user')} does not exist`;
    assert.equal(count(r.stderr, line), 1, r.stderr);
    assert.match(r.stderr, /--skip-dom0-home/);
    assert.doesNotMatch(r.stderr, /done: |restored|Restore failed/, 'no VM was restored before the home was found missing');
    assert.equal(existsSync(host), false, 'the qubes root the run would have created is not left behind');
    // with the home left out, the same command restores the VMs
    const ok = node(RESTORE_BIN, ['-q', '--qubes-root', host, '--dom0-home', join(t.dir, 'no-such-home', 'user'), '-p', pw, '-y', '--skip-dom0-home', archive]);
    assert.equal(ok.status, 0, ok.stderr);
  } finally {
    t.cleanup();
  }
});

test('restore: a host without a file pool stops the run before any data moves (every VM would fail at install)', { timeout: 120_000 }, () => {
  const t = tempDir();
  try {
    const { root, pw, archive } = setup(t.dir);
    const host = join(t.dir, 'host');
    mkdirSync(host);
    writeFileSync(join(host, 'qubes.xml'), readFileSync(join(root, 'qubes.xml'), 'utf8').replace(/<pools>[\s\S]*<\/pools>/, ''));
    const r = node(RESTORE_BIN, ['--qubes-root', host, '--dom0-home', join(t.dir, 'hh', 'user'), '-p', pw, '-y', '--skip-dom0-home', '--rename-conflicting', archive]);
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, /the host qubes\.xml has no file pool/);
    assert.doesNotMatch(r.stderr, /done: |\(restored\)|FAILED/, 'refused in the plan, not VM by VM after the data');
  } finally {
    t.cleanup();
  }
});

test('restore: each problem is listed once; mistyped names get "did you mean"; -x of nothing warns', { timeout: 120_000 }, () => {
  const t = tempDir();
  try {
    const { pw, archive } = setup(t.dir);
    const host = join(t.dir, 'host');
    const hh = join(t.dir, 'hh', 'user');
    mkdirSync(hh, { recursive: true });
    const r = node(RESTORE_BIN, ['--qubes-root', host, '--dom0-home', hh, '-p', pw, '-y', '-x', 'valt', archive, 'wrok', 'personal']);
    assert.equal(r.status, 2, r.stderr);
    assert.equal(count(r.stderr, 'wrok: no such VM in the backup (did you mean work?)'), 1, r.stderr);
    assert.equal(count(r.stderr, 'personal: template fedora-40 is in the backup but not selected'), 1, r.stderr);
    assert.equal(count(r.stderr, 'personal: netVM sys-net is in the backup but not selected'), 1, r.stderr);
    assert.equal(count(r.stderr, 'cannot proceed'), 2, `the heading and the error line, not the list twice:\n${r.stderr}`);
    assert.match(r.stderr, /^warning: -x valt: there is no VM valt in the backup, nothing excluded \(did you mean vault\?\)$/m);
  } finally {
    t.cleanup();
  }
});

test('backup: "did you mean" for unknown VM arguments and -x names, against the host collection', { timeout: 60_000 }, () => {
  const t = tempDir();
  try {
    const { root, home } = sampleIn(t.dir, { bigImageBytes: 4 * MiB, bigDataBytes: 64 * 1024, smallImageBytes: 1 * MiB, smallDataBytes: 16 * 1024 });
    const pw = passFile(t.dir);
    const bad = node(BACKUP_BIN, ['-q', '--qubes-root', root, '--dom0-home', home, '-p', pw, '-y', join(t.dir, 'x.bin'), 'wrok', 'personl']);
    assert.equal(bad.status, 2, bad.stderr);
    assert.match(bad.stderr, /unknown VMs: wrok \(did you mean work\?\), personl \(did you mean personal\?\)/);
    const x = node(BACKUP_BIN, ['--qubes-root', root, '--dom0-home', home, '-p', pw, '-y', '--scrypt-logn', '10', '-x', 'valt', join(t.dir, 'y.bin'), 'vault', 'work']);
    assert.equal(x.status, 0, x.stderr);
    assert.match(x.stderr, /^warning: excluded VM valt does not exist \(did you mean vault\?\)$/m);
  } finally {
    t.cleanup();
  }
});

/** Offsets of the outer archive's members (pax headers and end padding skipped). */
function members(archive: Buffer): { name: string; offset: number; size: number }[] {
  const out: { name: string; offset: number; size: number }[] = [];
  for (let off = 0; off + 512 <= archive.length; ) {
    const h = archive.subarray(off, off + 512);
    if (h.every((b) => b === 0)) {
      off += 512;
      continue;
    }
    const name = h.subarray(0, 100).toString('latin1').replace(/\0.*$/s, '');
    const size = parseInt(h.subarray(124, 136).toString('latin1').replace(/[\0 ]/g, '') || '0', 8);
    if (String.fromCharCode(h[156]!) === '0') out.push({ name, offset: off, size });
    off += 512 + Math.ceil(size / 512) * 512;
  }
  return out;
}

test('a truncated archive: no VM is called verified (or installed) unless all its members were read to the end', { timeout: 120_000 }, () => {
  const t = tempDir();
  try {
    const { pw, archive } = setup(t.dir);
    const bytes = readFileSync(archive);
    const list = members(bytes);
    // cut inside the last member of work's directory (notes.txt follows private.img and firewall.xml)
    const notes = list.find((m) => m.name.endsWith('/notes.txt.000.enc'));
    assert.ok(notes, list.map((m) => m.name).join(' '));
    const cut = join(t.dir, 'cut.bin');
    // inside the member, and exactly at its start (work's earlier files are whole: nothing in the
    // archive says whether more of work was to come)
    for (const end of [notes.offset + 512 + Math.floor(notes.size / 2), notes.offset]) {
      writeFileSync(cut, bytes.subarray(0, end));
      const v = node(RESTORE_BIN, ['--verify-only', '-p', pw, '-y', cut]);
      assert.equal(v.status, 5, v.stderr); // truncated: an integrity failure (a verification is never "partial")
      const verified = [...v.stderr.matchAll(/^done: (.+) \(verified\)$/gm)].map((m) => m[1]!);
      const failedPart = v.stderr.slice(v.stderr.indexOf('error: '));
      const failed = [...failedPart.matchAll(/^ {2}([^ :]+): /gm)].map((m) => m[1]!);
      assert.deepEqual(verified.filter((n) => failed.includes(n)), [], `verified and then failed:\n${v.stderr}`);
      assert.ok(failed.includes('work') && !verified.includes('work'), v.stderr);
      assert.ok(verified.includes('fedora-40') && verified.includes('vault'), `VMs read whole before the cut are verified:\n${v.stderr}`);
      assert.match(v.stderr, /error: verification failed for 2 of 6:$/m);
    }

    const host = join(t.dir, 'host');
    const hh = join(t.dir, 'hh', 'user');
    mkdirSync(hh, { recursive: true });
    const r = node(RESTORE_BIN, ['-q', '--qubes-root', host, '--dom0-home', hh, '-p', pw, '-y', cut]);
    assert.equal(r.status, 3, r.stderr);
    const xml = readFileSync(join(host, 'qubes.xml'), 'utf8');
    assert.match(xml, /<property name="name">vault<\/property>/);
    assert.doesNotMatch(xml, /<property name="name">work<\/property>/, 'a VM whose last file was cut off is not installed');
    assert.equal(existsSync(join(host, 'appvms', 'work')), false);
    assert.match(r.stderr, /^ {2}work: /m);
  } finally {
    t.cleanup();
  }
});
