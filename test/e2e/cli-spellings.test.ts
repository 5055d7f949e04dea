// Command-line shapes from Qubes: -Z is --compress-filter in qvm-backup and --compression-filter in
// qvm-backup-restore, and both commands take both spellings; a restore from --source-command takes
// no backup location (every argument is a VM name), and giving one as well, or neither, is an error.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir, passFile, node, BACKUP_BIN, RESTORE_BIN, sampleIn, haveCmd } from '../helpers/cli.js';

const MiB = 1024 * 1024;
const sh = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

function setup() {
  const t = tempDir();
  const { root, home } = sampleIn(t.dir, { bigImageBytes: 4 * MiB, bigDataBytes: 256 * 1024, smallImageBytes: 2 * MiB, smallDataBytes: 64 * 1024 });
  return { t, root, home, pw: passFile(t.dir) };
}

test('-Z: both spellings on both commands', { timeout: 120_000, skip: haveCmd('bzip2') ? false : 'bzip2 is not installed' }, () => {
  const s = setup();
  try {
    const backup = (name: string, opts: string[]) => {
      const archive = join(s.t.dir, name);
      const r = node(BACKUP_BIN, ['-q', '-y', '--scrypt-logn', '10', '--qubes-root', s.root, '--dom0-home', s.home, '-p', s.pw, ...opts, archive, 'vault']);
      return { r, archive };
    };
    // the header names the filter the backup used
    for (const opt of ['-Z', '--compress-filter', '--compression-filter']) {
      const { r, archive } = backup(`b${opt}.bin`, [opt, 'bzip2']);
      assert.equal(r.status, 0, `${opt}: ${r.stderr}`);
      assert.match(readFileSync(archive).toString('latin1'), /\ncompression-filter=bzip2\n/, opt);
    }
    let b = backup('same.bin', ['-Z', 'bzip2', '--compression-filter', 'bzip2']);
    assert.equal(b.r.status, 0, b.r.stderr);
    b = backup('both.bin', ['-Z', 'xz', '--compression-filter', 'bzip2']);
    assert.equal(b.r.status, 2);
    assert.equal(b.r.stderr, 'qvm-backup: error: --compress-filter and --compression-filter are two spellings of -Z: give it once\n');

    // restore: the filter given replaces the header's (gzip): bzip2 cannot read gzip, whichever spelling
    const { archive } = backup('gzip.bin', []);
    const verify = (opts: string[]) => node(RESTORE_BIN, ['-q', '-y', '--verify-only', '-p', s.pw, ...opts, archive]);
    assert.equal(verify([]).status, 0);
    const results = ['-Z', '--compression-filter', '--compress-filter'].map((opt) => verify([opt, 'bzip2']));
    for (const r of results) {
      assert.notEqual(r.status, 0, 'the bzip2 filter was used');
      assert.equal(r.status, results[0]!.status);
      assert.equal(r.stderr, results[0]!.stderr);
    }
    const both = verify(['-Z', 'gzip', '--compress-filter', 'bzip2']);
    assert.equal(both.status, 2);
    assert.equal(both.stderr, 'qvm-backup-restore: error: --compression-filter and --compress-filter are two spellings of -Z: give it once\n');
  } finally {
    s.t.cleanup();
  }
});

test('--source-command: no backup location; the arguments are VM names; a location as well, or neither, is an error', { timeout: 120_000 }, () => {
  const s = setup();
  try {
    const archive = join(s.t.dir, 'b.bin');
    const b = node(BACKUP_BIN, ['-q', '-y', '--scrypt-logn', '10', '--qubes-root', s.root, '--dom0-home', s.home, '-p', s.pw, archive, 'vault', 'work']);
    assert.equal(b.status, 0, b.stderr);
    const base = ['-y', '--verify-only', '-p', s.pw];
    let r = node(RESTORE_BIN, [...base, '--source-command', `cat ${sh(archive)}`, 'vault']);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /^done: vault \(verified\)$/m);
    assert.doesNotMatch(r.stderr, /done: work/, 'only the VM named');
    r = node(RESTORE_BIN, [...base, '--source-command', `cat ${sh(archive)}`]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /^done: work \(verified\)$/m);

    for (const location of [archive, '-', './b.bin']) {
      r = node(RESTORE_BIN, [...base, '--source-command', `cat ${sh(archive)}`, location, 'vault']);
      assert.equal(r.status, 2);
      assert.equal(r.stderr, `qvm-backup-restore: error: --source-command delivers the archive: give no backup location (${JSON.stringify(location)}); the arguments after the options are VM names\n`);
    }
    r = node(RESTORE_BIN, base);
    assert.equal(r.status, 2);
    assert.equal(r.stderr, "qvm-backup-restore: error: missing required argument 'backup-location' (or give --source-command)\n");
  } finally {
    s.t.cleanup();
  }
});
