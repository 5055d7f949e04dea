// planMemory on its own: how the --max-memory budget is split, and the warning below the minimum.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BLOCK_BYTES, planMemory, type MemoryPlanInput } from '../../../src/main/backup/memory-plan.js';

const MiB = 1024 * 1024;
const base: MemoryPlanInput = { maxMemory: 1024 * MiB, threads: 4, chunkSize: 100 * MiB, format: 3, scryptLogN: 19, compressBlocks: true };

test('format 3: threads+2 block slots of twice 4 MiB, chunk slots capped at threads+2, no KDF', () => {
  const p = planMemory(base);
  assert.equal(p.blockBytes, BLOCK_BYTES);
  assert.equal(p.blockSlots, 6);
  assert.equal(p.kdfBytes, 0);
  assert.equal(p.chunkSlots, 6);
  assert.equal(p.chunkOutSlots, 0);
  assert.equal(p.plannedBytes, 6 * 2 * 4 * MiB + 6 * 100 * MiB);
  assert.ok(p.plannedBytes <= base.maxMemory);
  assert.deepEqual(p.warnings, []);
});

test('format 4: scrypt derivations (512 MiB at logN 19) take their share before chunks', () => {
  const p = planMemory({ ...base, format: 4, maxMemory: 2048 * MiB });
  assert.equal(p.kdfBytes, 512 * MiB);
  // 2048 - 48 (blocks) - 2*100 (min chunks) leaves room for 3 derivations
  assert.equal(p.kdfConcurrency, 3);
  assert.equal(p.chunkSlots, Math.floor((2048 * MiB - 48 * MiB - 3 * 512 * MiB) / (100 * MiB)));
  assert.ok(p.plannedBytes <= 2048 * MiB);
});

test('format 2 keeps each volume and its transformed copy', () => {
  const p = planMemory({ ...base, format: 2 });
  assert.equal(p.chunkOutSlots, p.chunkSlots);
  assert.equal(p.plannedBytes, 6 * 2 * 4 * MiB + p.chunkSlots * 2 * 100 * MiB);
});

test('small chunks shrink the compression blocks; no in-process compression needs one block slot', () => {
  const p = planMemory({ ...base, chunkSize: MiB, compressBlocks: false });
  assert.equal(p.blockBytes, MiB);
  assert.equal(p.blockSlots, 1);
});

test('a budget below the minimum still plans two chunk slots and one derivation, and says so', () => {
  const p = planMemory({ ...base, format: 4, maxMemory: 64 * MiB });
  assert.equal(p.chunkSlots, 2);
  assert.equal(p.kdfConcurrency, 1);
  assert.ok(p.plannedBytes > 64 * MiB);
  assert.equal(p.warnings.length, 1);
  assert.match(p.warnings[0]!, /--max-memory 64(\.0)? ?MiB is below the minimum.*scrypt logN 19 needs 512(\.0)? ?MiB per derivation/);
});
