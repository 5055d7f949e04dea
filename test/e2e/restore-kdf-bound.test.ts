// qvm-backup-restore bounds the scrypt key derivations an archive asks for by --max-memory, before
// deriving: a header copy asking for 4 GiB fails at once with exit 5 (not "wrong passphrase"), a
// data chunk asking for it fails only its VM (exit 3), and a moderate logN is refused under a small
// --max-memory and restores with the value the message suggests.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { makeSampleCollection } from '../../scripts/make-sample.js';
import { OuterTarReader } from '../../src/main/tar/outer-tar-reader.js';
import { outerMember } from '../main/restore/stream/build-archive.js';
import { tempDir, passFile, node, run, haveCmd, BACKUP_BIN, RESTORE_BIN } from '../helpers/cli.js';

const MiB = 1024 * 1024;

/** `archive` with the scrypt parameters of member `name` raised to logN 22 (checksum kept valid). */
async function forged(archive: Buffer, name: string): Promise<Buffer> {
  const r = new OuterTarReader(Readable.from([archive]));
  const out: Buffer[] = [];
  let found = false;
  for (let e = await r.next(); e !== null; e = await r.next()) {
    const data = Buffer.alloc(e.size);
    await e.readInto(data);
    if (e.untrustedName === name) {
      data[7] = 22;
      createHash('sha256').update(data.subarray(0, 48)).digest().copy(data, 48, 0, 16);
      found = true;
    }
    out.push(outerMember(e.untrustedName, data));
  }
  assert.ok(found, `${name} not in the archive`);
  return Buffer.concat(out);
}

/** Run the restore under GNU time: exit status, stderr, wall time and peak RSS of the process tree. */
function timedRestore(dir: string, args: string[]): { status: number | null; stderr: string; ms: number; rssMiB: number } {
  const out = join(dir, 'time.txt');
  const t0 = Date.now();
  const r = run('/usr/bin/time', ['-o', out, '-f', '%M', process.execPath, RESTORE_BIN, ...args]);
  const rss = Number(/^(\d+)$/m.exec(readFileSync(out, 'utf8'))?.[1] ?? NaN);
  return { status: r.status, stderr: r.stderr, ms: Date.now() - t0, rssMiB: rss / 1024 };
}

test('--max-memory bounds each key derivation before it runs', { timeout: 300_000, skip: !haveCmd('tar') || !haveCmd('/usr/bin/time') }, async () => {
  const t = tempDir();
  try {
    const root = join(t.dir, 'qubes');
    const home = join(t.dir, 'home', 'user');
    makeSampleCollection({ root, home, bigImageBytes: 16 * MiB, bigDataBytes: MiB, smallImageBytes: 8 * MiB, smallDataBytes: 256 * 1024 });
    const pw = passFile(t.dir);
    const archive = join(t.dir, 'a.bin');
    let r = node(BACKUP_BIN, ['-q', '-y', '--qubes-root', root, '--dom0-home', home, '-p', pw, '--scrypt-logn', '17', archive, 'fedora-40', 'sys-net', 'personal']);
    assert.equal(r.status, 0, r.stderr);
    const hh = join(t.dir, 'hh', 'user');
    mkdirSync(hh, { recursive: true });
    const common = ['-y', '-p', pw, '--dom0-home', hh];

    // 1. logN 17 (128 MiB per derivation): refused under 300M with the value to use, which then works
    let x = timedRestore(t.dir, [...common, '--qubes-root', join(t.dir, 'h0'), '--verify-only', '--max-memory', '300M', archive]);
    assert.equal(x.status, 5, x.stderr);
    assert.equal(x.stderr, 'qvm-backup-restore: error: backup-header.hmac: this archive asks for 128 MiB per key derivation (scrypt logN=17 r=8 p=1); --max-memory 300 MiB allows 65 MiB (the rest is for two chunks); allow it with --max-memory 384M or more\n');
    x = timedRestore(t.dir, [...common, '--qubes-root', join(t.dir, 'h0'), '-q', '--verify-only', '--max-memory', '384M', archive]);
    assert.equal(x.status, 0, x.stderr);

    // 2. the header copy asks for 4 GiB: refused under the default at once, passphrase right or wrong
    const bigHead = join(t.dir, 'big-head.bin');
    writeFileSync(bigHead, await forged(readFileSync(archive), 'backup-header.hmac'));
    const wrong = join(t.dir, 'wrong.txt');
    writeFileSync(wrong, 'not it\n');
    for (const [p, mode] of [[pw, []], [wrong, ['--verify-only']]] as const) {
      x = timedRestore(t.dir, ['-y', '-p', p, '--dom0-home', hh, '--qubes-root', join(t.dir, 'h1'), ...mode, bigHead]);
      assert.equal(x.status, 5, x.stderr);
      assert.match(x.stderr, /^qvm-backup-restore: error: backup-header\.hmac: this archive asks for 4096 MiB per key derivation \(scrypt logN=22 r=8 p=1\); .*allow it with --max-memory 4352M or more\n$/);
      assert.ok(x.ms < 10_000, `took ${x.ms} ms`); // the derivation alone would take ~20 s here
      assert.ok(x.rssMiB < 400, `peak RSS ${Math.round(x.rssMiB)} MiB`);
    }
    assert.equal(readdirSync(t.dir).includes('h1'), false, 'nothing written');

    // 3. one VM's data chunk asks for 4 GiB: that VM fails, the others restore, exit 3
    const bigChunk = join(t.dir, 'big-chunk.bin');
    writeFileSync(bigChunk, await forged(readFileSync(archive), 'vm4/private.img.000.enc'));
    const h2 = join(t.dir, 'h2');
    x = timedRestore(t.dir, [...common, '--qubes-root', h2, '-q', bigChunk]);
    assert.equal(x.status, 3, x.stderr);
    assert.match(x.stderr, /personal: vm4\/private\.img\.000: this archive asks for 4096 MiB per key derivation \(scrypt logN=22 r=8 p=1\)/);
    assert.ok(x.rssMiB < 1024, `peak RSS ${Math.round(x.rssMiB)} MiB`);
    assert.deepEqual(readdirSync(join(h2, 'appvms')), ['sys-net']);
    assert.deepEqual(readdirSync(join(h2, 'vm-templates')), ['fedora-40']);
    x = timedRestore(t.dir, [...common, '--qubes-root', h2, '-q', '--verify-only', bigChunk]);
    assert.equal(x.status, 5, x.stderr); // a verification is never "partial"
    assert.match(x.stderr, /personal: vm4\/private\.img\.000: this archive asks for 4096 MiB/);
  } finally {
    t.cleanup();
  }
});
