// The backup's compression choice: --compress-level ranges and defaults per filter, zstd in the
// worker pool where node:zlib has it and by the zstd program (-T<threads>) where it does not, and
// the usage errors that stop a run before anything is written.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compressionJson, describeCompression, planCompression, type CompressionInput } from '../../../src/main/backup/compression-plan.js';
import { isQvmBackupError } from '../../../src/main/errors.js';
import { filterAvailable } from '../../../src/main/io/filter-program.js';

const base: CompressionInput = { compress: true, filter: 'gzip', level: undefined, format: 4, threads: 2 };
const usage = (i: Partial<CompressionInput>, why: RegExp) =>
  assert.throws(() => planCompression({ ...base, ...i }), (e: unknown) => isQvmBackupError(e) && e.code === 'ERR_USAGE' && why.test(e.message), JSON.stringify(i));

test('defaults: gzip -6 and zstd -3 in workers (where zlib has zstd); levels within each range', () => {
  assert.deepEqual(planCompression(base), { kind: 'blocks', filter: 'gzip', codec: 'gzip', level: 6 });
  assert.deepEqual(planCompression({ ...base, filter: 'zstd', zstdInProcess: true }), { kind: 'blocks', filter: 'zstd', codec: 'zstd', level: 3 });
  assert.deepEqual(planCompression({ ...base, filter: 'zstdmt', level: 19, zstdInProcess: true }), { kind: 'blocks', filter: 'zstdmt', codec: 'zstd', level: 19 });
  assert.deepEqual(planCompression({ ...base, level: 1 }), { kind: 'blocks', filter: 'gzip', codec: 'gzip', level: 1 });
  assert.deepEqual(planCompression({ ...base, compress: false }), { kind: 'none' });
  usage({ level: 10 }, /gzip takes 1 to 9/);
  usage({ filter: 'zstd', level: 20, zstdInProcess: true }, /zstd takes 1 to 19/);
  usage({ filter: 'zstd', level: 0, zstdInProcess: true }, /zstd takes 1 to 19/);
  usage({ compress: false, level: 3 }, /no effect with --no-compress/);
  usage({ filter: 'xz', level: 3 }, /applies to gzip \(1-9\) and zstd \(1-19\) only/);
  usage({ filter: 'zstd', format: 2 }, /format 2 compresses each volume with gzip only/);
  usage({ filter: 'rm' }, /not allowed/);
});

test('without zlib zstd: the zstd program with the level and -T<threads>', { skip: filterAvailable('zstd') ? false : 'zstd not installed' }, () => {
  const c = planCompression({ ...base, filter: 'zstd', level: 5, threads: 3, zstdInProcess: false });
  assert.deepEqual(c, { kind: 'program', filter: 'zstd', program: 'zstd', args: ['-5', '-T3'], level: 5 });
  assert.match(describeCompression(c, 3), /^compressed by the zstd program: zstd -5 -T3 \(Node\.js v[\d.]+ has no zstd in node:zlib\)$/);
  assert.deepEqual(compressionJson(c, 3), { filter: 'zstd', level: 5, engine: 'program', command: 'zstd -5 -T3' });
  const w = planCompression({ ...base, filter: 'zstd', zstdInProcess: true });
  assert.equal(describeCompression(w, 2), 'compressed with zstd -3 in 2 worker threads with node:zlib');
  assert.deepEqual(compressionJson(w, 2), { filter: 'zstd', level: 3, engine: 'node-zlib-workers', threads: 2 });
  assert.deepEqual(planCompression({ ...base, filter: 'xz' }), { kind: 'program', filter: 'xz', program: 'xz', args: [], level: null });
});

test('without zlib zstd and without the program: a usage error that says both', () => {
  const path = process.env['PATH'];
  process.env['PATH'] = '/nonexistent';
  try {
    usage({ filter: 'zstd', zstdInProcess: false }, /has no zstd in node:zlib .* and the zstd program is not installed/);
    assert.equal(planCompression({ ...base, filter: 'zstd', zstdInProcess: true }).kind, 'blocks', 'in-process needs no program');
  } finally {
    process.env['PATH'] = path;
  }
});
