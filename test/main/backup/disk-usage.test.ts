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
