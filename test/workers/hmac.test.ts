// computeHmacHex (src/workers/hmac.ts) against `openssl dgst -<algo> -hmac`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { computeHmacHex, hexEqual, nodeDigestName } from '../../src/workers/hmac.js';
import { run, sampleData } from './tools.js';

for (const [algo, cli] of [['SHA512', 'sha512'], ['sha256', 'sha256'], ['SHA1', 'sha1'], ['md5', 'md5']] as const) {
  test(`computeHmacHex ${algo} == openssl dgst -${cli} -hmac`, () => {
    for (const n of [0, 1000, 600_000]) {
      const data = sampleData(n, 2);
      const key = 'qubes ü pass';
      const text = run('openssl', ['dgst', `-${cli}`, '-hmac', key], data).toString();
      const theirs = text.split('=')[1]?.trim() ?? '';
      const ours = computeHmacHex(algo, Buffer.from(key, 'utf8'), data.subarray(0, n >> 1), data.subarray(n >> 1));
      assert.equal(ours, theirs, text);
      assert.ok(hexEqual(ours.toUpperCase(), theirs));
    }
  });
}

test('nodeDigestName maps openssl 3 names', () => {
  assert.equal(nodeDigestName('SHA2-512'), 'sha512');
  assert.equal(nodeDigestName('nope'), null);
});
