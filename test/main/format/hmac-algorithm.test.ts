// Tests for hmac-algorithm.ts: guessing the header digest on real Qubes-made archives (members
// extracted with GNU tar), on openssl-made HMACs of other digests, and v4 scrypt detection.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { nodeDigestName } from '../../../src/workers/hmac.js';
import { parseBackupHeader } from '../../../src/main/format/backup-header.js';
import { candidateHmacAlgorithms, guessHmacAlgorithm, isScryptHeaderHmac } from '../../../src/main/format/hmac-algorithm.js';
import { formatHmacFile, isHmacDigestSupported } from '../../../src/main/format/hmac-file.js';
import { extractMembers, fixtureNames, loadExpected } from './fixture-files.js';

const HEADER_MEMBERS = ['backup-header', 'backup-header.hmac'];
const haveFixtures = fixtureNames().length > 0;

function headerOf(fixture: string): { header: Buffer; hmac: Buffer } {
  const m = extractMembers(fixture, HEADER_MEMBERS);
  return { header: m.get('backup-header') ?? Buffer.alloc(0), hmac: m.get('backup-header.hmac') ?? Buffer.alloc(0) };
}

describe('guessHmacAlgorithm on Qubes-made archives', () => {
  const cases: Array<[string, string]> = [
    ['v3-aes-gzip', 'SHA512'],
    ['v2-gzip-sha1', 'SHA1'],
    ['v2-plain-sha512', 'SHA512'],
    ['v3-plain-gzip', 'SHA512'],
  ];
  for (const [fixture, digest] of cases) {
    it(`${fixture}: ${digest}, null with a wrong passphrase, then the header parses`, (t) => {
      if (!haveFixtures) return t.skip('fixtures not present');
      const e = loadExpected(fixture);
      const { header, hmac } = headerOf(fixture);
      assert.equal(header.toString('latin1'), e.backup_header_text);
      assert.equal(isScryptHeaderHmac(hmac), false);
      assert.equal(guessHmacAlgorithm(header, hmac, e.passphrase), digest);
      assert.equal(guessHmacAlgorithm(header, hmac, 'Qubes'), null);
      assert.equal(guessHmacAlgorithm(header, hmac, ''), null);
      const tampered = Buffer.from(header);
      tampered.writeUInt8((tampered.at(-2) ?? 0) ^ 0x01, tampered.length - 2);
      assert.equal(guessHmacAlgorithm(tampered, hmac, e.passphrase), null);
      const h = parseBackupHeader(header);
      assert.equal(h.version, e.format_version);
      assert.equal(h.hmacAlgorithm, digest);
      assert.equal(h.encrypted, e.encrypted);
    });
  }
});

describe('isScryptHeaderHmac', () => {
  it('recognises the v4 scrypt copy of the header', (t) => {
    if (!haveFixtures) return t.skip('fixtures not present');
    const { header, hmac } = headerOf('v4-gzip');
    assert.equal(isScryptHeaderHmac(hmac), true);
    assert.equal(hmac.length, 96 + header.length + 32);
    assert.throws(() => guessHmacAlgorithm(header, hmac, 'qubes'), { code: 'ERR_CORRUPT' });
  });
  it('needs magic and version 0', () => {
    assert.equal(isScryptHeaderHmac(Buffer.from('scrypt\u0000\u000e', 'latin1')), true);
    assert.equal(isScryptHeaderHmac(Buffer.from('scrypt\u0001\u000e', 'latin1')), false);
    assert.equal(isScryptHeaderHmac(Buffer.from('scrypt', 'latin1')), false);
    assert.equal(isScryptHeaderHmac(Buffer.from('Scrypt\u0000\u000e', 'latin1')), false);
    assert.equal(isScryptHeaderHmac(formatHmacFile('ab')), false);
  });
});

describe('guessHmacAlgorithm on other digests (HMAC made by openssl dgst)', () => {
  const header = Buffer.from('version=3\nhmac-algorithm=X\nencrypted=False\ncompressed=False\n');
  const cases: Array<[string, string]> = [
    ['sha256', 'SHA256'],
    ['sha3-512', 'SHA3-512'],
    ['blake2b512', 'BLAKE2b512'],
    ['md5', 'MD5'],
    ['sha512-256', 'SHA512-256'],
  ];
  for (const [opensslName, expected] of cases) {
    it(`${opensslName} → ${expected}`, () => {
      const out = execFileSync('openssl', ['dgst', `-${opensslName}`, '-hmac', 'qubes'], { input: header });
      assert.equal(guessHmacAlgorithm(header, out, 'qubes'), expected);
      assert.equal(guessHmacAlgorithm(header, out, 'qubez'), null);
      assert.ok(isHmacDigestSupported(expected));
    });
  }
  it('rejects an oversized header', () => {
    assert.throws(() => guessHmacAlgorithm(Buffer.alloc(5000, 0x61), formatHmacFile('ab'), 'q'), { code: 'ERR_TOO_LARGE' });
  });
});

describe('candidateHmacAlgorithms', () => {
  it('starts with SHA512, has no duplicates and spells the common digests like openssl', () => {
    const list = candidateHmacAlgorithms();
    assert.equal(list[0], 'SHA512');
    assert.equal(new Set(list).size, list.length);
    for (const name of ['SHA1', 'SHA256', 'SHA384', 'MD5', 'SHA3-256']) assert.ok(list.includes(name), name);
    assert.ok(!list.includes('sha1') && !list.includes('sha512'), 'node spellings of covered digests are not repeated');
    for (const name of list.slice(0, 10)) assert.notEqual(nodeDigestName(name), null, name);
  });
});
