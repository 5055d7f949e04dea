// backup-size as the backup stores the files: format 3 follows symlinks (tar -h), so its size must
// too, or a restore's size limit refuses our own archive (review).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { diskUsage } from '../../../src/main/backup/disk-usage.js';
import { tempDir } from '../../helpers/cli.js';

test('diskUsage counts a link itself, or with follow what it points to (a file, never a directory)', async () => {
  const t = tempDir();
  try {
    const target = join(t.dir, 'target.img');
    writeFileSync(target, Buffer.alloc(1 << 20, 1));
    const vm = join(t.dir, 'vm');
    mkdirSync(vm);
    symlinkSync(target, join(vm, 'private.img'));
    symlinkSync(t.dir, join(vm, 'loop')); // a link to a directory above: never entered
    assert.ok((await diskUsage(join(vm, 'private.img'))) < 1 << 20);
    assert.ok((await diskUsage(join(vm, 'private.img'), true)) >= 1 << 20);
    const followed = await diskUsage(vm, true);
    assert.ok(followed >= 1 << 20 && followed < 2 << 20, String(followed));
    assert.ok((await diskUsage(vm)) < 1 << 20);
  } finally {
    t.cleanup();
  }
});

test('the check sees every directory and file, and (following links) a directory a link points to; a tree of many entries is walked whole', async () => {
  const t = tempDir();
  try {
    const vm = join(t.dir, 'vm');
    mkdirSync(join(vm, 'apps'), { recursive: true });
    for (let i = 0; i < 100; i++) writeFileSync(join(vm, 'apps', `f${i}`), 'x'.repeat(i));
    mkdirSync(join(t.dir, 'elsewhere'));
    symlinkSync(join(t.dir, 'elsewhere'), join(vm, 'dirlink'));
    const seen: string[] = [];
    await diskUsage(vm, true, async (p, dir) => void seen.push(`${dir ? 'd' : 'f'}:${p.slice(vm.length)}`));
    assert.equal(seen.filter((s) => s.startsWith('f:/apps/')).length, 100);
    assert.ok(seen.includes('d:') && seen.includes('d:/apps') && seen.includes('d:/dirlink'), seen.join(' '));
    // not following: the link is a link
    const plain: string[] = [];
    await diskUsage(vm, false, async (p) => void plain.push(p.slice(vm.length)));
    assert.ok(!plain.includes('/dirlink'));
  } finally {
    t.cleanup();
  }
});
