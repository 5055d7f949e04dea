// One chunk-size limit: every chunk the backup may write at the largest --chunk-size it accepts
// (limits.ts) fits the restore's chunk slot for its format, so the restore never refuses an archive
// the backup made; and the largest accepted size is the one Qubes uses.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { defaultSlotBytes, slotCount, slotLayout } from '../../../src/main/restore/stream/slot-layout.js';
import { MAX_UNIT_OUT, outSlotCount } from '../../../src/main/restore/stream/parallel-units.js';
import { gzipMembers } from '../../../src/main/restore/stream/member-gunzip.js';
import { CHUNK_SIZE_BYTES, V2_VOLUME_BYTES, MIN_CHUNK_SIZE_BYTES, maxChunkSize, chunkSizeMultiple } from '../../../src/main/format/limits.js';
import type { BackupHeader } from '../../../src/main/format/backup-header.js';

/** zlib's deflateBound for default settings plus the gzip wrapper: the largest gzip of n bytes. */
const gzipBound = (n: number) => n + (n >> 12) + (n >> 14) + (n >> 25) + 7 + 18;

const headers: { h: BackupHeader; largestChunkFile: (max: number) => number }[] = [
  { h: { version: 4, hmacAlgorithm: 'scrypt', encrypted: true, compressed: true, compressionFilter: 'gzip', backupId: 'x' }, largestChunkFile: (max) => max + 128 }, // scrypt header + MAC
  { h: { version: 3, hmacAlgorithm: 'SHA512', cryptoAlgorithm: 'aes-256-cbc', encrypted: true, compressed: true, compressionFilter: 'gzip' }, largestChunkFile: (max) => max }, // cut from the encrypted stream
  { h: { version: 2, hmacAlgorithm: 'SHA512', cryptoAlgorithm: 'aes-256-cbc', encrypted: true, compressed: false }, largestChunkFile: (max) => max + 16 + 16 }, // Salted__ + salt, padding
  { h: { version: 2, hmacAlgorithm: 'SHA512', encrypted: false, compressed: true }, largestChunkFile: gzipBound }, // incompressible volume
  { h: { version: 2, hmacAlgorithm: 'SHA512', encrypted: false, compressed: false }, largestChunkFile: (max) => max },
];

test('the largest --chunk-size the backup accepts makes chunks the restore slots hold', () => {
  for (const { h, largestChunkFile } of headers) {
    const max = maxChunkSize(h.version);
    assert.equal(max % chunkSizeMultiple(h.version), 0);
    assert.ok(max >= MIN_CHUNK_SIZE_BYTES);
    const layout = slotLayout(h, defaultSlotBytes(h));
    assert.ok(layout.maxChunkBytes >= largestChunkFile(max), `format ${h.version} ${JSON.stringify(h)}: slot holds ${layout.maxChunkBytes}, a chunk can be ${largestChunkFile(max)}`);
    if (layout.output) assert.ok(layout.output.length >= max, 'a decompressed volume fits the output region');
  }
  assert.equal(maxChunkSize(4), CHUNK_SIZE_BYTES);
  assert.equal(maxChunkSize(3), CHUNK_SIZE_BYTES);
  assert.equal(maxChunkSize(2), V2_VOLUME_BYTES);
});

test('chunk slots: one per worker thread, at least two, at most eight, fewer when the budget is smaller', () => {
  const slot = 100 * 1024 * 1024;
  const plenty = 64 * slot;
  assert.equal(slotCount(slot, 1, plenty), 2); // one read while one is decoded
  assert.equal(slotCount(slot, 2, plenty), 2); // not threads + 2: every slot more is fresh memory
  assert.equal(slotCount(slot, 4, plenty), 4);
  assert.equal(slotCount(slot, 32, plenty), 8);
  assert.equal(slotCount(slot, 4, 3 * slot + 1), 3);
  assert.equal(slotCount(slot, 2, slot), 1);
  assert.equal(slotCount(slot, 2, 1), 1); // never none
});

test('output slots of the parallel decoders: 3 × threads + 6 (at most 16) when --max-memory leaves room, else threads + 2', () => {
  const MiB = 1024 * 1024;
  const room = (slots: number): number => slots * MAX_UNIT_OUT + 2 * gzipMembers.maxIn;
  assert.equal(outSlotCount(2, 2560 * MiB, gzipMembers), 12);
  assert.equal(outSlotCount(2, room(12), gzipMembers), 12);
  assert.equal(outSlotCount(2, room(12) - 1, gzipMembers), 11, 'what fits');
  assert.equal(outSlotCount(2, room(3), gzipMembers), 4, 'never fewer than threads + 2');
  assert.equal(outSlotCount(2, 0, gzipMembers), 4);
  assert.equal(outSlotCount(2, -100 * MiB, gzipMembers), 4, 'a budget already spent');
  assert.equal(outSlotCount(4, 2560 * MiB, gzipMembers), 16, 'at most 16');
  assert.equal(outSlotCount(16, 2560 * MiB, gzipMembers), 18, 'threads + 2 beyond that');
});
