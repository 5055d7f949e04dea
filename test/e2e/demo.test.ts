// The demo compares every file of the sample collection and of the dom0 home with what the restore
// made of it: the comparison finds a changed file, a missing one, an extra one and a changed
// symlink; and the demo (small and quick) runs end to end with everything identical.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdirSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { compareTrees } from '../../scripts/compare-trees.js';
import { tempDir, run, ROOT } from '../helpers/cli.js';

test('the tree comparison finds every kind of difference', async () => {
  const t = tempDir();
  try {
    const a = join(t.dir, 'a');
    mkdirSync(join(a, 'vm', 'apps.templates'), { recursive: true });
    writeFileSync(join(a, 'vm', 'private.img'), Buffer.alloc(100_000, 7));
    writeFileSync(join(a, 'vm', 'notes.txt'), 'notes\n');
    writeFileSync(join(a, 'vm', 'apps.templates', 'x.desktop'), '[Desktop Entry]\n');
    symlinkSync('vm/notes.txt', join(a, 'link'));
    const b = join(t.dir, 'b');
    cpSync(a, b, { recursive: true, verbatimSymlinks: true });
    let c = await compareTrees(a, b);
    assert.deepEqual(c.problems, []);
    assert.equal(c.files, 3);
    assert.equal(c.bytes, 100_000 + 6 + 16);

    const img = Buffer.alloc(100_000, 7);
    img[99_999] = 8; // same size, one byte differs
    writeFileSync(join(b, 'vm', 'private.img'), img);
    rmSync(join(b, 'vm', 'notes.txt'));
    rmSync(join(b, 'vm', 'apps.templates'), { recursive: true });
    writeFileSync(join(b, 'vm', 'volatile.img'), '');
    unlinkSync(join(b, 'link'));
    symlinkSync('vm/private.img', join(b, 'link'));
    c = await compareTrees(a, b, /(^|\/)apps\.templates(\/|$)/);
    assert.deepEqual(c.problems.sort(), ['DIFFERENT  link', 'DIFFERENT  vm/private.img', 'EXTRA      vm/volatile.img', 'MISSING    vm/notes.txt']);
    assert.deepEqual(c.notCopied, ['vm/apps.templates', 'vm/apps.templates/x.desktop']);
  } finally {
    t.cleanup();
  }
});

test('the demo backs up, verifies, restores and finds every file identical', { timeout: 180_000 }, () => {
  const r = run(process.execPath, [join(ROOT, 'dist/scripts/demo.js'), '--quick']);
  assert.equal(r.status, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /^10 files compared \(\d+ MiB apparent size\), symlinks and directories too: all identical$/m);
  assert.match(r.stdout, /^demo: backup, verification and restore all succeeded$/m);
});
