// Tests for backup-header.ts: golden bytes per writer version, fixture headers, round trips and
// every malformed-input rule of the strict parser.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  encodeBackupHeader,
  makeBackupId,
  parseBackupHeader,
  type BackupHeader,
} from '../../../src/main/format/backup-header.js';
import { HEADER_MAX_BYTES } from '../../../src/main/format/limits.js';
import { fixtureNames, loadExpected } from './fixture-files.js';

const enc = (s: string): Buffer => Buffer.from(s, 'latin1');
const parse = (s: string, forced?: string): BackupHeader =>
  parseBackupHeader(enc(s), forced === undefined ? {} : { forcedCompressionFilter: forced });
const V3 = 'version=3\nhmac-algorithm=SHA512\ncrypto-algorithm=aes-256-cbc\nencrypted=True\ncompressed=True\ncompression-filter=gzip\n';
const V4 = 'version=4\nencrypted=True\ncompressed=True\ncompression-filter=gzip\nhmac-algorithm=scrypt\nbackup-id=20230405T123455-1234\n';

function rejects(text: string | Buffer, code: string, message?: RegExp): void {
  const bytes = typeof text === 'string' ? enc(text) : text;
  assert.throws(() => parseBackupHeader(bytes), (e: unknown) => {
    const err = e as { code?: string; message?: string };
    assert.equal(err.code, code, `code for ${JSON.stringify(text.toString())}: ${err.message}`);
    if (message) assert.match(err.message ?? '', message);
    return true;
  });
}

describe('encodeBackupHeader golden bytes', () => {
  it('v2 matches the R2 writer (fixture v2-gzip-sha1 / v2-plain-sha512 text)', () => {
    const a = encodeBackupHeader({ version: 2, hmacAlgorithm: 'SHA1', cryptoAlgorithm: 'aes-256-cbc', encrypted: false, compressed: true });
    assert.equal(a.toString('latin1'), 'hmac-algorithm=SHA1\ncrypto-algorithm=aes-256-cbc\nencrypted=False\ncompressed=True\n');
    const b = encodeBackupHeader({ version: 2, hmacAlgorithm: 'SHA512', encrypted: false, compressed: false });
    assert.equal(b.toString('latin1'), 'hmac-algorithm=SHA512\ncrypto-algorithm=aes-256-cbc\nencrypted=False\ncompressed=False\n');
  });
  it('v3 writes crypto-algorithm even unencrypted, compression-filter only if compressed', () => {
    assert.equal(encodeBackupHeader({ version: 3, hmacAlgorithm: 'SHA512', encrypted: true, compressed: true }).toString(), V3);
    const plain = encodeBackupHeader({ version: 3, hmacAlgorithm: 'SHA512', encrypted: false, compressed: false, compressionFilter: 'xz' });
    assert.equal(plain.toString(), 'version=3\nhmac-algorithm=SHA512\ncrypto-algorithm=aes-256-cbc\nencrypted=False\ncompressed=False\n');
    const bz = encodeBackupHeader({ version: 3, hmacAlgorithm: 'SHA256', cryptoAlgorithm: 'aes-128-cbc', encrypted: true, compressed: true, compressionFilter: 'bzip2' });
    assert.equal(bz.toString(), 'version=3\nhmac-algorithm=SHA256\ncrypto-algorithm=aes-128-cbc\nencrypted=True\ncompressed=True\ncompression-filter=bzip2\n');
  });
  it('v4 uses the R4.1+ order (DOC v4 example) and always writes compression-filter', () => {
    const h: BackupHeader = { version: 4, hmacAlgorithm: 'scrypt', encrypted: true, compressed: true, backupId: '20230405T123455-1234' };
    assert.equal(encodeBackupHeader(h).toString(), V4);
    const nocomp = encodeBackupHeader({ ...h, compressed: false });
    assert.equal(nocomp.toString(), V4.replace('compressed=True', 'compressed=False'));
    const all = encodeBackupHeader({ ...h, compressionFilter: 'bzip2', cryptoAlgorithm: 'scrypt' });
    assert.equal(all.toString(), 'version=4\nencrypted=True\ncompressed=True\ncompression-filter=bzip2\ncrypto-algorithm=scrypt\nhmac-algorithm=scrypt\nbackup-id=20230405T123455-1234\n');
  });
  it('matches the header text of every fixture whose writer used the standard order', () => {
    for (const name of ['v2-gzip-sha1', 'v2-plain-sha512', 'v3-aes-gzip', 'v3-plain-gzip']) {
      const e = loadExpected(name);
      const bytes = encodeBackupHeader(parse(e.backup_header_text));
      assert.equal(bytes.toString('latin1'), e.backup_header_text, name);
    }
  });
  it('refuses values that would break the syntax, and v4 without backup-id', () => {
    assert.throws(() => encodeBackupHeader({ version: 3, hmacAlgorithm: 'SHA512\nx=y', encrypted: false, compressed: false }), { code: 'ERR_USAGE' });
    assert.throws(() => encodeBackupHeader({ version: 3, hmacAlgorithm: 'SHA512', encrypted: true, compressed: true, compressionFilter: 'gzip -9' }), { code: 'ERR_USAGE' });
    assert.throws(() => encodeBackupHeader({ version: 4, hmacAlgorithm: 'scrypt', encrypted: true, compressed: true }), { code: 'ERR_INTERNAL' });
  });
});

describe('parseBackupHeader on fixture headers', () => {
  const names = fixtureNames();
  it('parses every fixture header to the values in expected.json', (t) => {
    if (names.length === 0) return t.skip('fixtures not present');
    for (const name of names) {
      const e = loadExpected(name);
      const h = parse(e.backup_header_text);
      assert.equal(h.version, e.format_version, name);
      assert.equal(h.encrypted, e.encrypted, name);
      assert.equal(h.compressed, e.compressed, name);
      if (e.compressed && e.format_version >= 3) assert.equal(h.compressionFilter, e.compression_filter, name);
      assert.equal(h.backupId, e.backup_id ?? undefined, name);
      assert.equal(h.hmacAlgorithm, e.format_version === 4 ? 'scrypt' : (e.hmac_algorithm ?? 'SHA512'), name);
    }
  });
  it('accepts v3 compressed=False with a compression-filter (client test writer)', () => {
    const h = parse(loadExpected('v3-aes-nocomp').backup_header_text);
    assert.deepEqual(h, { version: 3, hmacAlgorithm: 'SHA512', cryptoAlgorithm: 'aes-256-cbc', encrypted: true, compressed: false, compressionFilter: 'gzip' });
  });
});

describe('parseBackupHeader round trips and tolerated variations', () => {
  it('round-trips every version and option combination', () => {
    const cases: BackupHeader[] = [
      { version: 2, hmacAlgorithm: 'SHA1', cryptoAlgorithm: 'aes-256-cbc', encrypted: true, compressed: false },
      { version: 2, hmacAlgorithm: 'SHA512', cryptoAlgorithm: 'aes-256-cbc', encrypted: false, compressed: true },
      { version: 3, hmacAlgorithm: 'SHA512', cryptoAlgorithm: 'aes-256-cbc', encrypted: true, compressed: true, compressionFilter: 'xz' },
      { version: 3, hmacAlgorithm: 'sha3-256', cryptoAlgorithm: 'camellia-256-cbc', encrypted: false, compressed: false },
      { version: 4, hmacAlgorithm: 'scrypt', encrypted: true, compressed: true, compressionFilter: 'zstd', backupId: '20161020T123455-1234' },
      { version: 4, hmacAlgorithm: 'scrypt', cryptoAlgorithm: 'scrypt', encrypted: true, compressed: false, compressionFilter: 'gzip', backupId: 'x' },
    ];
    for (const h of cases) assert.deepEqual(parseBackupHeader(encodeBackupHeader(h)), h);
  });
  it('accepts any key order, CRLF, surrounding whitespace, empty lines and unknown keys', () => {
    const text = '\r\n  backup-id=abc-1 \r\nfuture-key=whatever\n\ncompressed=no\n\thmac-algorithm=SCRYPT\nencrypted=YES\nversion=4\ncompression-filter=pigz';
    assert.deepEqual(parse(text), { version: 4, hmacAlgorithm: 'scrypt', encrypted: true, compressed: false, compressionFilter: 'pigz', backupId: 'abc-1' });
  });
  it('treats a missing version as 2 and accepts version=2 and leading zeros', () => {
    const v2 = 'hmac-algorithm=SHA512\ncrypto-algorithm=aes-256-cbc\nencrypted=0\ncompressed=1\n';
    assert.equal(parse(v2).version, 2);
    assert.equal(parse(`version=2\n${v2}`).version, 2);
    assert.equal(parse(V3.replace('version=3', 'version=003')).version, 3);
  });
  it('lets a forced compression filter replace the header value and skip the allow-list', () => {
    assert.equal(parse(V3, 'myzip').compressionFilter, 'myzip');
    assert.equal(parse(V3.replace('=gzip', '=weird'), 'gzip').compressionFilter, 'gzip');
    assert.equal(parse(V3.replace('compression-filter=gzip\n', ''), 'xz').compressionFilter, 'xz');
  });
  it('accepts the optional filters', () => {
    for (const f of ['lzma', 'pbzip2', 'pigz', 'zstd', 'zstdmt', 'bzip2', 'xz']) assert.equal(parse(V3.replace('=gzip', `=${f}`)).compressionFilter, f);
  });
  it('accepts an exactly HEADER_MAX_BYTES header', () => {
    const pad = 'x'.repeat(HEADER_MAX_BYTES - V3.length - 3);
    assert.equal(enc(`${V3}x=${pad}\n`).length, HEADER_MAX_BYTES);
    assert.equal(parse(`${V3}x=${pad}\n`).version, 3);
  });
});

describe('parseBackupHeader rejects malformed input', () => {
  it('oversize', () => rejects(`${V3}x=${'x'.repeat(HEADER_MAX_BYTES)}\n`, 'ERR_TOO_LARGE'));
  it('non-ASCII bytes', () => {
    rejects(Buffer.concat([enc(V3), Buffer.from([0xc3, 0xa9, 0x0a])]), 'ERR_BAD_HEADER', /non-ASCII/);
    rejects(Buffer.from(`${V3}x=\u00e9\n`, 'utf8'), 'ERR_BAD_HEADER', /non-ASCII/);
  });
  it('a line without or with two "="', () => {
    rejects(`${V3}garbage\n`, 'ERR_BAD_HEADER', /exactly one '='/);
    rejects(V3.replace('encrypted=True', 'encrypted=True=False'), 'ERR_BAD_HEADER', /exactly one '='/);
    rejects(`${V3}a=b=c\n`, 'ERR_BAD_HEADER', /line 7/);
  });
  it('bad characters in key or value, even for unknown keys', () => {
    rejects(V3.replace('hmac-algorithm', 'hmac_algorithm'), 'ERR_BAD_HEADER', /key/);
    rejects(V3.replace('version=3', 'version = 3'), 'ERR_BAD_HEADER', /key/);
    rejects(V3.replace('=SHA512', '=SHA 512'), 'ERR_BAD_HEADER', /value of hmac-algorithm/);
    rejects(V3.replace('=aes-256-cbc', '=aes.256'), 'ERR_BAD_HEADER', /value of crypto-algorithm/);
    rejects(`${V3}note=$(reboot)\n`, 'ERR_BAD_HEADER', /value of note/);
    rejects(`${V3}x=a\u0000b\n`, 'ERR_BAD_HEADER');
    rejects(`${V3}x=a\u001bb\n`, 'ERR_BAD_HEADER');
  });
  it('a known key twice', () => {
    rejects(`${V3}encrypted=True\n`, 'ERR_BAD_HEADER', /duplicate key encrypted/);
    rejects(`version=3\n${V3}`, 'ERR_BAD_HEADER', /duplicate key version/);
    assert.equal(parse(`${V3}other=1\nother=2\n`).version, 3); // unknown keys: ignored, duplicates too
  });
  it('missing required keys, per version', () => {
    const v2 = 'hmac-algorithm=SHA512\ncrypto-algorithm=aes-256-cbc\nencrypted=True\ncompressed=False\n';
    for (const key of ['hmac-algorithm', 'encrypted', 'compressed', 'crypto-algorithm']) {
      rejects(v2.replace(new RegExp(`^${key}=.*\\n`, 'm'), ''), 'ERR_BAD_HEADER', new RegExp(`version 2.*missing required key ${key}`));
    }
    assert.equal(parse(v2.replace('crypto-algorithm=aes-256-cbc\n', '').replace('encrypted=True', 'encrypted=False')).cryptoAlgorithm, undefined);
    for (const key of ['hmac-algorithm', 'crypto-algorithm', 'encrypted', 'compressed', 'compression-filter']) {
      rejects(V3.replace(new RegExp(`^${key}=.*\\n`, 'm'), ''), 'ERR_BAD_HEADER', new RegExp(`version 3.*missing required key ${key}`));
    }
    for (const key of ['hmac-algorithm', 'encrypted', 'compressed', 'compression-filter', 'backup-id']) {
      rejects(V4.replace(new RegExp(`^${key}=.*\\n`, 'm'), ''), 'ERR_BAD_HEADER', new RegExp(`version 4.*missing required key ${key}`));
    }
    // v3 uncompressed needs no filter; v4 needs no crypto-algorithm
    assert.equal(parse(V3.replace('compressed=True', 'compressed=False').replace('compression-filter=gzip\n', '')).compressed, false);
    assert.equal(parse(V4).cryptoAlgorithm, undefined);
    rejects('', 'ERR_BAD_HEADER', /missing required key/);
  });
  it('bad booleans', () => {
    rejects(V3.replace('encrypted=True', 'encrypted=maybe'), 'ERR_BAD_HEADER', /encrypted is not a boolean/);
    rejects(V3.replace('compressed=True', 'compressed='), 'ERR_BAD_HEADER', /compressed is not a boolean/);
    rejects(V3.replace('compressed=True', 'compressed=2'), 'ERR_BAD_HEADER', /compressed/);
  });
  it('bad or unsupported version numbers', () => {
    for (const v of ['3a', '-3', '', '0x3', '99999999999999999999']) rejects(V3.replace('version=3', `version=${v}`), 'ERR_BAD_HEADER', /version/);
    for (const v of ['0', '1', '5', '40']) rejects(V3.replace('version=3', `version=${v}`), 'ERR_UNSUPPORTED', /version/);
  });
  it('unsupported algorithms and filters name the key', () => {
    rejects(V3.replace('=SHA512', '=NOPE'), 'ERR_UNSUPPORTED', /hmac-algorithm/);
    rejects(V3.replace('=SHA512', '=shake128'), 'ERR_UNSUPPORTED', /hmac-algorithm/);
    rejects(V3.replace('=SHA512', '=scrypt'), 'ERR_UNSUPPORTED', /hmac-algorithm=scrypt/);
    rejects(V3.replace('=aes-256-cbc', '=rot13'), 'ERR_UNSUPPORTED', /crypto-algorithm/);
    rejects(V3.replace('=aes-256-cbc', '=scrypt'), 'ERR_UNSUPPORTED', /crypto-algorithm/);
    rejects(V3.replace('=gzip', '=rm'), 'ERR_UNSUPPORTED', /compression-filter/);
    rejects(V3.replace('compressed=True', 'compressed=False').replace('=gzip', '=sh'), 'ERR_UNSUPPORTED', /compression-filter/);
    rejects(V4.replace('=gzip', '=cat'), 'ERR_UNSUPPORTED', /compression-filter/);
    rejects(V4.replace('encrypted=True', 'encrypted=False'), 'ERR_UNSUPPORTED', /encrypted/);
  });
  it('bad backup-id', () => {
    rejects(V4.replace('=20230405T123455-1234', '=-rf'), 'ERR_BAD_HEADER', /backup-id/);
    rejects(V4.replace('=20230405T123455-1234', '='), 'ERR_BAD_HEADER', /backup-id/);
  });
});

describe('makeBackupId', () => {
  it('formats local time as %Y%m%dT%H%M%S-<pid>', () => {
    assert.equal(makeBackupId(new Date(2016, 9, 20, 12, 34, 55), 1234), '20161020T123455-1234');
    assert.equal(makeBackupId(new Date(2023, 0, 5, 3, 4, 5), 7), '20230105T030405-7');
  });
  it('produces an id the parser accepts', () => {
    const id = makeBackupId(new Date(), process.pid);
    assert.equal(parse(V4.replace('20230405T123455-1234', id)).backupId, id);
  });
});
