// Tests for archive-names.ts: chunk/hmac name building, the strict member-name parser on every
// name of the Qubes-made fixtures, and unsafe names.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  basenameOfBase,
  chunkBaseName,
  chunkName,
  fitsUstar,
  hmacName,
  innerMemberName,
  isWholeDirBase,
  parseMemberName,
  subdirOfBase,
} from '../../../src/main/format/archive-names.js';
import type { FormatVersion } from '../../../src/main/format/backup-header.js';
import { MAX_PATH_DEPTH } from '../../../src/main/format/limits.js';
import { fixtureNames, loadExpected, outerMemberNames } from './fixture-files.js';

function unsafe(name: string, version: FormatVersion): void {
  assert.throws(() => parseMemberName(name, version), { code: 'ERR_UNSAFE_NAME' }, `${JSON.stringify(name)} (v${version}) should be rejected`);
}

describe('chunk name building', () => {
  it('builds base, chunk and hmac names', () => {
    assert.equal(chunkBaseName('vm3/', 'private.img'), 'vm3/private.img');
    assert.equal(chunkBaseName('', 'qubes.xml'), 'qubes.xml');
    assert.equal(chunkBaseName('dom0-home/', 'user'), 'dom0-home/user');
    assert.equal(chunkBaseName('appvms/work/', 'private.img'), 'appvms/work/private.img');
    assert.equal(chunkName(chunkBaseName('vm9/', '.'), 0, 3), 'vm9/..000');
    assert.equal(chunkName('vm5/private.img', 1, 2), 'vm5/private.img.001');
    assert.equal(chunkName('vm3/private.img', 0, 4), 'vm3/private.img.000.enc');
    assert.equal(chunkName('qubes.xml', 999, 4), 'qubes.xml.999.enc');
    assert.equal(hmacName('vm5/private.img.000'), 'vm5/private.img.000.hmac');
    assert.equal(hmacName('backup-header'), 'backup-header.hmac');
  });
  it('refuses bad inputs', () => {
    assert.throws(() => chunkBaseName('vm3', 'private.img'), { code: 'ERR_INTERNAL' });
    assert.throws(() => chunkBaseName('vm3/', 'a/b'), { code: 'ERR_INTERNAL' });
    assert.throws(() => chunkBaseName('vm3/', ''), { code: 'ERR_INTERNAL' });
    assert.equal(chunkName('x', 1000, 3), 'x.1000');
    assert.throws(() => chunkName('x', 100000, 3), { code: 'ERR_TOO_LARGE' });
    assert.throws(() => chunkName('x', -1, 3), { code: 'ERR_INTERNAL' });
    assert.throws(() => chunkName('x', 1.5, 4), { code: 'ERR_INTERNAL' });
  });
});

describe('parseMemberName on real archives', () => {
  it('classifies every outer member of every fixture and rebuilds its name', (t) => {
    const names = fixtureNames();
    if (names.length === 0) return t.skip('fixtures not present');
    let chunks = 0;
    for (const fixture of names) {
      const e = loadExpected(fixture);
      const members = outerMemberNames(e);
      assert.ok(members.length > 4, fixture);
      for (const member of members) {
        const p = parseMemberName(member, e.format_version);
        if (p.kind === 'header') assert.equal(member, 'backup-header');
        else if (p.kind === 'header-hmac') assert.equal(member, 'backup-header.hmac');
        else {
          chunks++;
          const rebuilt = chunkName(p.base, p.index, e.format_version);
          assert.equal(p.hmac ? hmacName(rebuilt) : rebuilt, member);
          assert.equal(p.hmac, member.endsWith('.hmac'));
        }
      }
    }
    assert.ok(chunks > 100);
  });
  it('parses the documented examples', () => {
    assert.deepEqual(parseMemberName('backup-header', 4), { kind: 'header' });
    assert.deepEqual(parseMemberName('backup-header.hmac', 2), { kind: 'header-hmac' });
    assert.deepEqual(parseMemberName('vm9/..000', 3), { kind: 'chunk', base: 'vm9/.', index: 0, hmac: false });
    assert.deepEqual(parseMemberName('vm9/..000.hmac', 2), { kind: 'chunk', base: 'vm9/.', index: 0, hmac: true });
    assert.deepEqual(parseMemberName('vm-templates/tplclone/..003', 3), { kind: 'chunk', base: 'vm-templates/tplclone/.', index: 3, hmac: false });
    assert.deepEqual(parseMemberName('qubes.xml.000.enc', 4), { kind: 'chunk', base: 'qubes.xml', index: 0, hmac: false });
    assert.deepEqual(parseMemberName('vm3/private.img.012.enc', 4), { kind: 'chunk', base: 'vm3/private.img', index: 12, hmac: false });
    assert.deepEqual(parseMemberName('dom0-home/user.999', 3), { kind: 'chunk', base: 'dom0-home/user', index: 999, hmac: false });
    assert.deepEqual(parseMemberName('appvms/work/private.img.001.hmac', 3), { kind: 'chunk', base: 'appvms/work/private.img', index: 1, hmac: true });
    assert.deepEqual(parseMemberName('dom0-home/user0.000', 3), { kind: 'chunk', base: 'dom0-home/user0', index: 0, hmac: false });
    assert.deepEqual(parseMemberName('vm3/foo.enc.000', 3), { kind: 'chunk', base: 'vm3/foo.enc', index: 0, hmac: false });
  });
  it('accepts a long name that fits the ustar prefix/name split', () => {
    const name = `${'p'.repeat(150)}/${'n'.repeat(95)}.000`;
    assert.equal(name.length, 250);
    assert.equal(parseMemberName(name, 3).kind, 'chunk');
  });
});

describe('parseMemberName rejects unsafe or unexpected names', () => {
  it('path traversal and absolute paths', () => {
    for (const v of [2, 3, 4] as const) {
      const s = v === 4 ? '.000.enc' : '.000';
      for (const n of ['../x', `../x${s}`, '/etc/passwd', `/etc/passwd${s}`, `vm1/../../x${s}`, `vm1/..${s.slice(1)}/../x${s}`, `./vm1/private.img${s}`, `vm1/./x${s}`, `..${s}`, `vm1/...000${v === 4 ? '.enc' : ''}`, `vm1/x${s}/..`]) {
        unsafe(n, v);
      }
    }
  });
  it('empty components, odd characters and control bytes', () => {
    const bad = ['', 'a//b.000', 'a/b.000/', '/', 'vm1/.000', '.000', 'vm1/x.000\n', 'a\u0000b.000', 'vm1/x.000\u0000', 'vm1\\x.000', 'vm1/\tx.000', 'vm1/x\u007f.000', 'vm\u00e9/x.000', 'vm1/x\u001b[2J.000', '-rf.000', '--to-command=sh.000'];
    for (const n of bad) unsafe(n, 3);
  });
  it('too long, not ustar-representable or too deep', () => {
    unsafe(`vm1/${'a'.repeat(296)}.000`, 3); // 300 bytes
    unsafe(`${'a'.repeat(300)}.000`, 3);
    unsafe(`${'a'.repeat(200)}.000`, 3); // ≤255 but no '/' to split at
    unsafe(`${'p'.repeat(160)}/${'n'.repeat(60)}.000`, 3); // prefix > 155
    unsafe(`${'a/'.repeat(MAX_PATH_DEPTH)}x.000`, 3);
    assert.equal(parseMemberName(`${'a/'.repeat(MAX_PATH_DEPTH - 1)}x.000`, 3).kind, 'chunk');
  });
  it('bad chunk indexes', () => {
    for (const n of ['vm1/private.img.100000', 'vm1/private.img.01000', 'vm1/private.img.00', 'vm1/private.img.0000', 'vm1/private.img', 'vm1/private.img.', 'vm1/private.img.00a', 'vm1/private.img.+01']) unsafe(n, 3);
    unsafe('vm1/private.img.01000.enc', 4);
    assert.deepEqual(parseMemberName('vm1/private.img.1000.enc', 4), { kind: 'chunk', base: 'vm1/private.img', index: 1000, hmac: false });
    unsafe('vm1/private.img.100000.hmac', 2);
  });
  it('format-specific suffixes', () => {
    unsafe('vm1/private.img.000.enc', 3);
    unsafe('vm1/private.img.000.enc', 2);
    unsafe('vm1/private.img.000', 4);
    unsafe('vm1/private.img.000.hmac', 4);
    unsafe('vm1/private.img.000.enc.hmac', 4);
    unsafe('vm1/private.img.000.hmac.hmac', 3);
    unsafe('backup-header.enc', 4);
    unsafe('qubes.xml', 3);
  });
  it('reports the name JSON-escaped', () => {
    assert.throws(() => parseMemberName('a\u001b]0;x\u0007.000', 3), (e: unknown) => {
      const msg = (e as Error).message;
      assert.ok(!/[\u0000-\u001f]/.test(msg), msg);
      assert.match(msg, /\\u001b/);
      return true;
    });
  });
});

describe('base helpers', () => {
  it('subdir, basename, inner member name, whole-dir', () => {
    assert.equal(subdirOfBase('vm3/private.img'), 'vm3/');
    assert.equal(subdirOfBase('vm9/.'), 'vm9/');
    assert.equal(subdirOfBase('qubes.xml'), '');
    assert.equal(subdirOfBase('dom0-home/user'), 'dom0-home/');
    assert.equal(subdirOfBase('appvms/work/private.img'), 'appvms/work/');
    assert.equal(basenameOfBase('vm9/.'), '.');
    assert.equal(basenameOfBase('qubes.xml'), 'qubes.xml');
    for (const b of ['vm3/private.img', 'vm9/.', 'qubes.xml', 'dom0-home/user']) assert.equal(innerMemberName(b), b);
    assert.equal(isWholeDirBase('vm9/.'), true);
    assert.equal(isWholeDirBase('vm9/private.img'), false);
    assert.equal(isWholeDirBase('qubes.xml'), false);
  });
  it('fitsUstar', () => {
    assert.equal(fitsUstar('a'.repeat(100)), true);
    assert.equal(fitsUstar('a'.repeat(101)), false);
    assert.equal(fitsUstar(`${'a'.repeat(155)}/${'b'.repeat(100)}`), true);
    assert.equal(fitsUstar(`${'a'.repeat(156)}/${'b'.repeat(99)}`), false);
    assert.equal(fitsUstar(`${'a'.repeat(50)}/${'b'.repeat(101)}`), false);
    assert.equal(fitsUstar(`${'a'.repeat(101)}/`), false);
  });
});
