// Tests for hmac-file.ts: the `.hmac` text forms, strict parsing, verification, and a cross-check
// of computeHmacHex against the real `openssl dgst -hmac`.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { computeHmacHex } from '../../../src/workers/hmac.js';
import { formatHmacFile, isHmacDigestSupported, parseHmacFile, verifyHmacFile } from '../../../src/main/format/hmac-file.js';
import { HMAC_FILE_MAX_BYTES } from '../../../src/main/format/limits.js';

const KEY = Buffer.from('qubes', 'utf8');
const HEX = '09c379659558fcd1bb8a5572d007ee0df220c8b907c7dfa2d7baa44b08eea14de82bfd1fe9950fc2190e1f32f05ae5a104ced170523e913989529523b5f2fe9b';

/** `openssl dgst -<digest> -hmac <key>` over `data` on stdin: the raw stdout. */
function opensslHmac(digest: string, key: string, data: Uint8Array): Buffer {
  return execFileSync('openssl', ['dgst', `-${digest}`, '-hmac', key], { input: data });
}

describe('formatHmacFile', () => {
  it('writes the OpenSSL 1.x form with lower-case hex', () => {
    assert.equal(formatHmacFile('ABCDEF01').toString('latin1'), '(stdin)= abcdef01\n');
    assert.equal(formatHmacFile(HEX).toString('latin1'), `(stdin)= ${HEX}\n`);
  });
  it('refuses non-hex input', () => {
    assert.throws(() => formatHmacFile('xyz'), { code: 'ERR_INTERNAL' });
    assert.throws(() => formatHmacFile(''), { code: 'ERR_INTERNAL' });
  });
});

describe('parseHmacFile', () => {
  it('accepts both openssl prefixes, surrounding whitespace, and keeps the case', () => {
    assert.equal(parseHmacFile(Buffer.from(`(stdin)= ${HEX}\n`)), HEX);
    assert.equal(parseHmacFile(Buffer.from(`SHA2-512(stdin)= ${HEX}\n`)), HEX);
    assert.equal(parseHmacFile(Buffer.from(`HMAC-SHA1(stdin)= ABCDEF\r\n\n`)), 'ABCDEF');
    assert.equal(parseHmacFile(Buffer.from(`  (stdin)=   ab  `)), 'ab');
  });
  it('round-trips formatHmacFile', () => {
    assert.equal(parseHmacFile(formatHmacFile(HEX)), HEX);
  });
  it('rejects malformed content with ERR_CORRUPT', () => {
    const bad = ['', '\n', 'no equals sign here', '(stdin)=', '(stdin)= ', '(stdin)= xyz', '(stdin)= ab cd', '(stdin)= abc', '(stdin)= 0x12', 'x=\u0001ab'];
    for (const text of bad) {
      assert.throws(() => parseHmacFile(Buffer.from(text, 'latin1')), { code: 'ERR_CORRUPT', message: /invalid hmac file content/ }, JSON.stringify(text));
    }
    assert.throws(() => parseHmacFile(Buffer.from('(stdin)= ab\u00e9', 'utf8')), { code: 'ERR_CORRUPT', message: /non-ASCII/ });
    assert.throws(() => parseHmacFile(Buffer.from('scrypt\u0000\u000e', 'latin1')), { code: 'ERR_CORRUPT' });
  });
  it('takes the piece after the first "=" like the reference readers', () => {
    assert.equal(parseHmacFile(Buffer.from('a= ab =cd')), 'ab');
  });
  it('limits the size to HMAC_FILE_MAX_BYTES', () => {
    const ok = Buffer.from(`(stdin)= ${'a'.repeat(HMAC_FILE_MAX_BYTES - 10)}\n`);
    assert.equal(ok.length, HMAC_FILE_MAX_BYTES);
    assert.equal(parseHmacFile(ok).length, HMAC_FILE_MAX_BYTES - 10);
    assert.throws(() => parseHmacFile(Buffer.concat([ok, Buffer.from(' ')])), { code: 'ERR_TOO_LARGE' });
  });
});

describe('verifyHmacFile', () => {
  const data = Buffer.from('hello');
  it('verifies both text forms and upper-case hex', () => {
    assert.equal(computeHmacHex('SHA512', KEY, data), HEX);
    assert.equal(verifyHmacFile('SHA512', KEY, data, formatHmacFile(HEX)), true);
    assert.equal(verifyHmacFile('sha512', KEY, data, Buffer.from(`SHA2-512(stdin)= ${HEX.toUpperCase()}\n`)), true);
    assert.equal(verifyHmacFile('SHA2-512', KEY, data, Buffer.from(`(stdin)= ${HEX}`)), true);
  });
  it('fails on other data, key, digest or a truncated digest', () => {
    const file = formatHmacFile(HEX);
    assert.equal(verifyHmacFile('SHA512', KEY, Buffer.from('hellO'), file), false);
    assert.equal(verifyHmacFile('SHA512', Buffer.from('qubes2'), data, file), false);
    assert.equal(verifyHmacFile('SHA384', KEY, data, file), false);
    assert.equal(verifyHmacFile('SHA512', KEY, data, formatHmacFile(HEX.slice(0, 64))), false);
  });
  it('throws ERR_UNSUPPORTED for unusable digests', () => {
    assert.equal(isHmacDigestSupported('shake256'), false);
    assert.equal(isHmacDigestSupported('nope'), false);
    assert.equal(isHmacDigestSupported('SHA3-256'), true);
    assert.throws(() => verifyHmacFile('shake256', KEY, data, formatHmacFile(HEX)), { code: 'ERR_UNSUPPORTED' });
    assert.throws(() => verifyHmacFile('whirlpool-x', KEY, data, formatHmacFile(HEX)), { code: 'ERR_UNSUPPORTED' });
  });
});

describe('computeHmacHex agrees with openssl dgst -hmac', () => {
  const inputs = [Buffer.alloc(0), Buffer.from('version=3\nhmac-algorithm=SHA512\n'), randomBytes(70_000)];
  for (const [digest, ours] of [['sha512', 'SHA512'], ['sha1', 'SHA1'], ['sha256', 'SHA256'], ['sha3-256', 'SHA3-256']] as const) {
    it(`${digest}`, () => {
      for (const data of inputs) {
        const out = opensslHmac(digest, 'qubes', data);
        assert.equal(parseHmacFile(out), computeHmacHex(ours, KEY, data));
        assert.equal(verifyHmacFile(ours, KEY, data, out), true);
      }
    });
  }
  it('uses the UTF-8 passphrase bytes as the key', () => {
    const pw = 'pässwörd-\u20ac';
    const out = opensslHmac('sha512', pw, Buffer.from('x'));
    assert.equal(verifyHmacFile('SHA512', Buffer.from(pw, 'utf8'), Buffer.from('x'), out), true);
  });
});
