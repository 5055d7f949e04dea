// An input that is not a Qubes backup gets one line saying what it is instead — "not a Qubes backup:
// gzip-compressed data …", not "bad tar header checksum at offset 0" — and exit 2 (the wrong thing
// was given: a usage error), from a file, stdin or a --source-command alike. A Qubes root given as
// the backup is named as such. A real backup whose start is damaged stays a corrupt backup (5).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync, openSync, writeSync, closeSync, ftruncateSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { tempDir, passFile, node, run, BACKUP_BIN, RESTORE_BIN, sampleIn } from '../helpers/cli.js';

const MiB = 1024 * 1024;
const sh = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/** Deterministic bytes that are no tar header (the checksum field is not digits). */
const noise = (n: number): Buffer => Buffer.from(Array.from({ length: n }, (_, i) => (i * 2654435761) >>> 24 | 0x80));

test('files that are not Qubes backups: what they are, exit 2, one line', { timeout: 120_000 }, () => {
  const t = tempDir();
  try {
    const pw = passFile(t.dir);
    const file = (name: string, data: Buffer | string): string => {
      const p = join(t.dir, name);
      writeFileSync(p, data);
      return p;
    };
    // a tar of something else, and the same gzipped (as `tar czf` makes them)
    mkdirSync(join(t.dir, 'docs'));
    writeFileSync(join(t.dir, 'docs', 'a.txt'), 'hello\n');
    const tarFile = join(t.dir, 'docs.tar');
    assert.equal(run('tar', ['-cf', tarFile, '-C', t.dir, 'docs']).status, 0);
    const tgz = file('docs.tar.gz', gzipSync(readFileSync(tarFile)));
    // a tar whose first name is Latin-1 (GNU tar stores the bytes as they are)
    writeFileSync(Buffer.from(`${t.dir}/caf\xe9.txt`, 'latin1'), 'x');
    const latin1 = join(t.dir, 'latin1.tar');
    assert.equal(run('sh', ['-c', `cd ${sh(t.dir)} && tar -cf latin1.tar caf?.txt`]).status, 0);
    // a filesystem image: 1 KiB of zeros, then the ext2/3/4 superblock (magic 0xEF53 at byte 56)
    const img = join(t.dir, 'private.img');
    const fd = openSync(img, 'w');
    ftruncateSync(fd, 4 * MiB);
    writeSync(fd, Buffer.from([0x53, 0xef]), 0, 2, 1024 + 56);
    closeSync(fd);
    const zeros = join(t.dir, 'zeros.bin');
    writeFileSync(zeros, Buffer.alloc(64 * 1024));
    const cases: [string, RegExp][] = [
      [file('empty.bin', ''), /not a Qubes backup: it is empty \(0 bytes\)$/],
      [file('random.bin', noise(5000)), /not a Qubes backup: no tar archive: the data starts with bytes ([0-9a-f]{2} ){7}[0-9a-f]{2}$/],
      [file('short.bin', noise(100)), /not a Qubes backup: no tar archive: the data starts with bytes /],
      [tgz, /not a Qubes backup: gzip-compressed data \(a \.gz or \.tar\.gz file\)$/],
      [tarFile, /not a Qubes backup: a tar archive whose first member is "docs\/" \(a Qubes backup starts with backup-header\)$/],
      [latin1, /not a Qubes backup: a tar archive whose first member has a name that is not UTF-8 text \(a Qubes backup starts with backup-header\)$/],
      [file('notes.txt', 'dear diary\nsecond line\n'), /not a Qubes backup: text starting "dear diary"$/],
      [file('chunk.enc', Buffer.concat([Buffer.from('scrypt\0'), noise(600)])), /not a Qubes backup: one file encrypted by the scrypt tool \(such as a single chunk of a backup\), not a whole backup$/],
      [img, /not a Qubes backup: an ext2\/3\/4 filesystem image \(such as a VM image\)$/],
      [zeros, /not a Qubes backup: it holds nothing but 65536 zero bytes$/],
    ];
    for (const [path, message] of cases) {
      const r = node(RESTORE_BIN, ['-y', '--verify-only', '-p', pw, path]);
      assert.equal(r.status, 2, `${path}: ${r.stderr}`);
      assert.equal(r.stderr.split('\n').length, 2, `${path}: one line: ${r.stderr}`);
      assert.match(r.stderr.trimEnd(), new RegExp(`^qvm-backup-restore: error: ${message.source}`), path);
    }
    // the same from stdin and from a --source-command
    let r = run('sh', ['-c', `${sh(process.execPath)} ${sh(RESTORE_BIN)} -y --verify-only -p ${sh(pw)} - < ${sh(tgz)}`]);
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, /^qvm-backup-restore: error: not a Qubes backup: gzip-compressed data/);
    r = node(RESTORE_BIN, ['-y', '--verify-only', '-p', pw, '--source-command', `cat ${sh(tarFile)}`]);
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, /^qvm-backup-restore: error: not a Qubes backup: a tar archive whose first member is "docs\/"/);
  } finally {
    t.cleanup();
  }
});

test('directories: a Qubes root, a directory of backups, any other directory', () => {
  const t = tempDir();
  try {
    const { root } = sampleIn(t.dir, { bigImageBytes: MiB, bigDataBytes: 64 * 1024, smallImageBytes: MiB, smallDataBytes: 4096 });
    const pw = passFile(t.dir);
    const backups = join(t.dir, 'backups');
    mkdirSync(backups);
    writeFileSync(join(backups, 'qubes-2024-05-01T120000'), '');
    const other = join(t.dir, 'other');
    mkdirSync(join(other, 'sub'), { recursive: true });
    writeFileSync(join(other, 'a.txt'), '');
    const cases: [string, RegExp][] = [
      [root, /^not a Qubes backup: \S+\/qubes looks like a Qubes root \(qubes\.xml in the R4 format, appvms\/, vm-templates\/\), not a backup: pass it as --qubes-root$/],
      [backups, /^not a Qubes backup: \S+\/backups is a directory holding backups \("qubes-2024-05-01T120000"\): give one of them as the location$/],
      [other, /^not a Qubes backup: \S+\/other is a directory without qubes\.xml \(it holds "a\.txt", "sub"\), so not a format 1 backup$/],
    ];
    for (const [dir, message] of cases) {
      for (const extra of [['--verify-only'], []]) {
        const r = node(RESTORE_BIN, ['-y', ...extra, '-p', pw, '--qubes-root', join(t.dir, 'host'), dir]);
        assert.equal(r.status, 2, `${dir}: ${r.stderr}`);
        assert.equal(r.stderr.split('\n').length, 2, r.stderr);
        assert.match(r.stderr.trimEnd().replace(/^qvm-backup-restore: error: /, ''), message);
      }
    }
  } finally {
    t.cleanup();
  }
});

test('a real backup whose first header is damaged is a corrupt backup (exit 5), not "not a Qubes backup"', { timeout: 60_000 }, () => {
  const t = tempDir();
  try {
    const { root, home } = sampleIn(t.dir, { bigImageBytes: MiB, bigDataBytes: 64 * 1024, smallImageBytes: MiB, smallDataBytes: 4096 });
    const pw = passFile(t.dir);
    const archive = join(t.dir, 'b.bin');
    const b = node(BACKUP_BIN, ['-q', '-y', '--scrypt-logn', '10', '--qubes-root', root, '--dom0-home', home, '-p', pw, archive, 'vault']);
    assert.equal(b.status, 0, b.stderr);
    const bytes = readFileSync(archive);
    // the first header is the pax header of backup-header: break its checksum, keep its name
    const damaged = Buffer.from(bytes);
    damaged[148] = 0x37;
    damaged[149] = 0x37;
    writeFileSync(archive, damaged);
    const r = node(RESTORE_BIN, ['-y', '--verify-only', '-p', pw, archive]);
    assert.equal(r.status, 5, r.stderr);
    assert.match(r.stderr, /bad tar header checksum at offset 0/);
    assert.doesNotMatch(r.stderr, /not a Qubes backup/);
  } finally {
    t.cleanup();
  }
});
