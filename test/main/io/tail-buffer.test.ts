import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { TailBuffer, oneLine } from '../../../src/main/io/tail-buffer.js';

describe('TailBuffer and oneLine', () => {
  it('keeps only the last bytes, trimmed', () => {
    const t = new TailBuffer(8);
    t.push('first line\n');
    t.push('abc\n');
    t.push(Buffer.from('defgh\n'));
    assert.equal(t.text(), 'c\ndefgh'); // the last 8 bytes: "c\ndefgh\n"
  });
  it('oneLine joins the non-empty trimmed lines with "; "', () => {
    assert.equal(oneLine('tar: a: Cannot stat\r\n\n  tar: b: Cannot open  \n'), 'tar: a: Cannot stat; tar: b: Cannot open');
    assert.equal(oneLine('one'), 'one');
    assert.equal(oneLine('\n\n'), '');
    // a lone CR splits too; terminal escapes and other control characters are shown, not sent
    assert.equal(oneLine('progress 10%\rerror: \x1b[2Jgone\x1b]0;title\x07\tx'), 'progress 10%; error: \\x1b[2Jgone\\x1b]0;title\\x07\\x09x');
  });
});
