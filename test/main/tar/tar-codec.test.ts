// The header decoding the three tar readers share: checksum (unsigned and signed sums), typeflag,
// extension headers, GNU long names, pax decimals.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { checksumMatches, isExtensionHeader, longNameText, paxDecimal, trimTrailingNuls, typeflagOf } from '../../../src/main/tar/tar-codec.js';
import { BLOCK, F, sealHeader, writeOctal } from '../../../src/main/tar/tar-header.js';

function header(name: string, type: string): Uint8Array {
  const b = new Uint8Array(BLOCK);
  b.set(Buffer.from(name), F.name[0]);
  writeOctal(b, 'size', 0);
  b[156] = type.charCodeAt(0);
  sealHeader(b);
  return b;
}

test('checksumMatches: a sealed header passes, one flipped byte or a blank checksum fails', () => {
  const b = header('vm1/private.img.000', '0');
  assert.equal(checksumMatches(b), true);
  const bad = Uint8Array.from(b);
  bad[0]! ^= 1;
  assert.equal(checksumMatches(bad), false);
  const blank = Uint8Array.from(b);
  blank.fill(0x20, F.chksum[0], F.chksum[0] + F.chksum[1]);
  blank.fill(0, F.chksum[0], F.chksum[0] + 1);
  assert.equal(checksumMatches(blank), false);
});

test('checksumMatches accepts the signed sum (old tars summed signed bytes)', () => {
  const b = header('x', '0');
  b[F.name[0] + 1] = 0xff; // a high byte: unsigned and signed sums differ by 256
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const v = i >= F.chksum[0] && i < F.chksum[0] + F.chksum[1] ? 0x20 : b[i]!;
    signed += v > 127 ? v - 256 : v;
  }
  b.set(Buffer.from(`${signed.toString(8).padStart(6, '0')}\0 `), F.chksum[0]);
  assert.equal(checksumMatches(b), true);
});

test('typeflag and extension headers', () => {
  assert.equal(typeflagOf(header('a', '\0')), '\0');
  assert.equal(typeflagOf(header('a', 'x')), 'x');
  for (const t of ['x', 'g', 'L', 'K']) assert.equal(isExtensionHeader(t), true, t);
  for (const t of ['0', '\0', '5', 'S', 'V', '7']) assert.equal(isExtensionHeader(t), false, t);
});

test('GNU long names: text stops at the first NUL; the strict form keeps inner NULs', () => {
  assert.equal(longNameText(Buffer.from('vm1/a-very-long-name\0\0\0')), 'vm1/a-very-long-name');
  assert.equal(longNameText(Buffer.from('a\0b\0')), 'a');
  assert.deepEqual(Buffer.from(trimTrailingNuls(Buffer.from('a\0b\0\0'))).toString('latin1'), 'a\0b');
  assert.equal(trimTrailingNuls(new Uint8Array(3)).length, 0);
});

test('pax decimals: digits only, bounded length, safe integers', () => {
  assert.equal(paxDecimal('0'), 0);
  assert.equal(paxDecimal('9007199254740991'), Number.MAX_SAFE_INTEGER);
  assert.equal(paxDecimal('9007199254740993'), null);
  assert.equal(paxDecimal('12345678901234567'), null);
  assert.equal(paxDecimal('1234567890123456', 15), null);
  for (const t of ['', ' 1', '1 ', '-1', '0x10', '1e3', '1.5']) assert.equal(paxDecimal(t), null, t);
});
