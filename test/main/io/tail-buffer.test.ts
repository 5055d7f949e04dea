import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { TailBuffer, oneLine } from '../../../src/main/io/tail-buffer.js';
import { dropPrompts } from '../../../src/main/tar/gnu-tar-multivolume.js';

describe('TailBuffer and oneLine', () => {
  it('keeps only the last bytes, trimmed', () => {
    const t = new TailBuffer(8);
    t.push('first line\n');
    t.push('abc\n');
    t.push(Buffer.from('defgh\n'));
    assert.equal(t.text(), 'c\ndefgh'); // the last 8 bytes: "c\ndefgh\n"
  });
  it('with a head: the first bytes stay beside the tail, each filtered on its own once bytes between them were dropped', () => {
    const t = new TailBuffer(64, 80);
    t.push('tar: x: File shrank by 5 bytes; padding with zeros\n');
    assert.equal(t.text(), 'tar: x: File shrank by 5 bytes; padding with zeros', 'all kept: one text');
    const prompt = (n: number): string => `\x07Prepare volume #${n} for \`x' and hit return: `;
    for (let n = 2; n < 40; n++) t.push(prompt(n));
    t.push('tar: Exiting with failure status due to previous errors\n');
    const drop = dropPrompts;
    assert.equal(t.text(drop), 'tar: x: File shrank by 5 bytes; padding with zeros\ntar: Exiting with failure status due to previous errors');
    // no head: the cause is gone, as before
    const old = new TailBuffer(64);
    old.push('tar: x: File shrank by 5 bytes; padding with zeros\n');
    for (let n = 2; n < 40; n++) old.push(prompt(n));
    assert.doesNotMatch(old.text(drop), /shrank/);
    // head and tail overlapping: nothing twice
    const small = new TailBuffer(16, 8);
    small.push('0123456789');
    small.push('abcdefghij');
    assert.equal(small.text(), '0123456789abcdefghij');
    const gap = new TailBuffer(4, 4);
    gap.push('abcdefghijkl');
    assert.equal(gap.text(), 'abcd\nijkl');
  });
  it('oneLine joins the non-empty trimmed lines with "; "', () => {
    assert.equal(oneLine('tar: a: Cannot stat\r\n\n  tar: b: Cannot open  \n'), 'tar: a: Cannot stat; tar: b: Cannot open');
    assert.equal(oneLine('one'), 'one');
    assert.equal(oneLine('\n\n'), '');
    // a lone CR splits too; terminal escapes and other control characters are shown, not sent
    assert.equal(oneLine('progress 10%\rerror: \x1b[2Jgone\x1b]0;title\x07\tx'), 'progress 10%; error: \\x1b[2Jgone\\x1b]0;title\\x07\\x09x');
  });
});
