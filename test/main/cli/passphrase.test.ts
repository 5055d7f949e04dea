// Passphrase files and stdin are read like Qubes' `readline().rstrip()`: the expected values below
// are what Python 3 gives for the same bytes (open(f).readline().rstrip() and sys.stdin's).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { passphraseFromText } from '../../../src/main/cli/passphrase.js';

const decode = (b: Buffer) => new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(b);

const cases: { bytes: Buffer; file: string | null; stdin: string | null }[] = [
  { bytes: Buffer.from('  secret pass \t \r\nsecond\n'), file: '  secret pass', stdin: '  secret pass' },
  { bytes: Buffer.from('secret\r\n'), file: 'secret', stdin: 'secret' },
  // a lone CR ends a line of a file (universal newlines), not of stdin: there it would be part of the
  // passphrase, which the formats cannot carry, so it is refused rather than cut
  { bytes: Buffer.from('secret\rmore\n'), file: 'secret', stdin: null },
  { bytes: Buffer.from('secret\x0b\x0c\x1c\u00a0\u3000\n'), file: 'secret', stdin: 'secret' },
  { bytes: Buffer.from('\ufeffsecret\n'), file: '\ufeffsecret', stdin: '\ufeffsecret' },
  { bytes: Buffer.from('secret'), file: 'secret', stdin: 'secret' },
  { bytes: Buffer.from('sec\tret\t\n'), file: 'sec\tret', stdin: 'sec\tret' },
  { bytes: Buffer.from('secret\u0085\n'), file: 'secret', stdin: 'secret' },
  { bytes: Buffer.from('secret\u200b\n'), file: 'secret\u200b', stdin: 'secret\u200b' }, // not whitespace for Python
  { bytes: Buffer.from(' \t\r\n'), file: null, stdin: null }, // empty after stripping
];

test('first line, trailing whitespace stripped as Python rstrip(); leading whitespace kept', () => {
  for (const c of cases) {
    for (const [kind, want] of [['universal', c.file], ['lf', c.stdin]] as const) {
      const got = () => passphraseFromText(decode(c.bytes), 'test', kind);
      if (want === null) assert.throws(got, (e: { code?: string }) => e.code === 'ERR_USAGE', JSON.stringify(c.bytes.toString()));
      else assert.equal(got(), want, `${kind}: ${JSON.stringify(c.bytes.toString())}`);
    }
  }
});
