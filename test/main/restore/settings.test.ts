// resolveRestoreSettings and the restore's memory plan on their own: the one default --max-memory
// rule (the backup's at logN 19, at most 1/4 of the RAM, at least 2.5 GiB), threads, refused values,
// the split between chunks and derivations at its edges, and the result frozen.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { defaultRestoreMaxMemory, planRestoreMemory, resolveRestoreSettings, restoreMemoryOf } from '../../../src/main/restore/settings.js';
import { MIN_CHUNK_MEMORY_BYTES } from '../../../src/main/restore/stream/restore-memory.js';
import { RESTORE_MIN_MAX_MEMORY } from '../../../src/main/restore/stream/kdf-budget.js';
import { isQvmBackupError } from '../../../src/main/errors.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const host = { cpus: 2, ramBytes: 24 * GiB };

test('defaults: threads = CPUs; --max-memory 1 GiB + 512 MiB per thread, at least 2.5 GiB, at most 1/4 of the RAM above that', () => {
  const s = resolveRestoreSettings({}, host);
  assert.equal(s.threads, 2);
  assert.equal(s.maxMemory, RESTORE_MIN_MAX_MEMORY, '2 threads: 2 GiB < 2.5 GiB');
  assert.equal(RESTORE_MIN_MAX_MEMORY, 2560 * MiB);
  assert.equal(resolveRestoreSettings({ threads: 8 }, host).maxMemory, GiB + 8 * 512 * MiB);
  // 16 threads: 9 GiB by the rule; a quarter of the RAM caps it; the 2.5 GiB floor wins over the cap
  assert.equal(defaultRestoreMaxMemory(16, 48 * GiB), 9 * GiB);
  assert.equal(defaultRestoreMaxMemory(16, 24 * GiB), 6 * GiB);
  assert.equal(defaultRestoreMaxMemory(16, 8 * GiB), RESTORE_MIN_MAX_MEMORY);
  assert.equal(resolveRestoreSettings({ threads: 0 }, host).threads, 2);
  assert.equal(resolveRestoreSettings({ maxMemory: 300 * MiB }, host).maxMemory, 300 * MiB);
  assert.equal(resolveRestoreSettings({}, host).imageExtraction, 'in-process');
  assert.equal(resolveRestoreSettings({}, host).prefaultImages, true);
  assert.equal(resolveRestoreSettings({ prefaultImages: false }, host).prefaultImages, false);
  assert.equal(resolveRestoreSettings({ compressionFilter: 'xz', imageExtraction: 'tar' }, host).compressionFilter, 'xz');
});

test('refused: threads and --max-memory that are no positive integers (ERR_USAGE)', () => {
  for (const c of [{ threads: -1 }, { threads: 2.5 }, { maxMemory: 0 }, { maxMemory: -5 }, { maxMemory: 1.5 }]) {
    assert.throws(() => resolveRestoreSettings(c, host), (e: unknown) => isQvmBackupError(e) && e.code === 'ERR_USAGE', JSON.stringify(c));
  }
});

test('the settings are frozen', () => {
  const s = resolveRestoreSettings({}, host);
  assert.ok(Object.isFrozen(s));
  assert.throws(() => {
    (s as { threads: number }).threads = 9;
  }, TypeError);
});

test('memory plan: chunks get what every thread deriving at once leaves, never less than two chunks (with a warning)', () => {
  // formats 2/3 derive nothing: all of it
  assert.deepEqual(planRestoreMemory(GiB, 4, 0), { chunkMemory: GiB });
  // 2560 MiB - 2 × 512 MiB
  assert.deepEqual(restoreMemoryOf(resolveRestoreSettings({}, host), 512 * MiB), { chunkMemory: 1536 * MiB });
  // exactly the floor: no warning; one byte less: the floor and a warning
  assert.deepEqual(planRestoreMemory(MIN_CHUNK_MEMORY_BYTES + 2 * 512 * MiB, 2, 512 * MiB), { chunkMemory: MIN_CHUNK_MEMORY_BYTES });
  const low = planRestoreMemory(MIN_CHUNK_MEMORY_BYTES + 2 * 512 * MiB - 1, 2, 512 * MiB);
  assert.equal(low.chunkMemory, MIN_CHUNK_MEMORY_BYTES);
  assert.match(low.warning ?? '', /below what 2 concurrent scrypt derivations \(512 MiB each\) plus two chunks need; using 256 MiB for chunks/);
});
