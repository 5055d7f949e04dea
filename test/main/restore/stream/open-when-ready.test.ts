// openWhenReady: an extractor that needs a process opens on first use, after its preconditions
// (execa loaded, GNU tar checked); their failure is the extractor's error; an abort before it
// opened opens nothing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { QvmBackupError } from '../../../../src/main/errors.js';
import { openWhenReady, type InnerExtractor } from '../../../../src/main/restore/stream/file-extractor.js';

function recorder(): { ext: InnerExtractor; log: string[] } {
  const log: string[] = [];
  return {
    log,
    ext: {
      write: async (d) => void log.push(`write ${d.length}`),
      finish: async () => void log.push('finish'),
      abort: async () => void log.push('abort'),
    },
  };
}

function deferred(): { promise: Promise<void>; resolve: () => void; reject: (e: unknown) => void } {
  let resolve!: () => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<void>((a, b) => {
    resolve = a;
    reject = b;
  });
  return { promise, resolve, reject };
}

test('opens once, on the first call, after ready; calls go to the opened extractor', async () => {
  const r = recorder();
  let opens = 0;
  let readies = 0;
  const ext = openWhenReady(async () => void readies++, () => (opens++, r.ext));
  assert.equal(opens, 0, 'nothing opened before it is used');
  await Promise.all([ext.write(new Uint8Array(3)), ext.write(new Uint8Array(5))]);
  await ext.finish();
  assert.deepEqual([opens, readies], [1, 1]);
  assert.deepEqual(r.log, ['write 3', 'write 5', 'finish']);
  await ext.abort();
  assert.deepEqual(r.log.at(-1), 'abort');
});

test('finish without a write still opens (an empty inner archive is tar\'s to judge)', async () => {
  const r = recorder();
  await openWhenReady(async () => undefined, () => r.ext).finish();
  assert.deepEqual(r.log, ['finish']);
});

test('a failed precondition is the error of every call; nothing is opened', async () => {
  const why = new QvmBackupError('ERR_TAR_FAILED', '/x/tar is not GNU tar');
  let opens = 0;
  const ext = openWhenReady(() => Promise.reject(why), () => (opens++, recorder().ext));
  await assert.rejects(ext.write(new Uint8Array(1)), (e) => e === why);
  await assert.rejects(ext.finish(), (e) => e === why);
  await ext.abort(); // never throws
  assert.equal(opens, 0);
});

test('an abort while the precondition is pending opens nothing, and later calls say why', async () => {
  const d = deferred();
  let opens = 0;
  const ext = openWhenReady(() => d.promise, () => (opens++, recorder().ext));
  const writing = ext.write(new Uint8Array(1));
  const aborting = ext.abort();
  d.resolve();
  await aborting;
  await assert.rejects(writing, { code: 'ERR_CANCELLED' });
  assert.equal(opens, 0);
});

test('an abort before any call opens nothing, ever', async () => {
  let opens = 0;
  const ext = openWhenReady(async () => undefined, () => (opens++, recorder().ext));
  await ext.abort();
  await assert.rejects(ext.write(new Uint8Array(1)), { code: 'ERR_CANCELLED' });
  assert.equal(opens, 0);
});

test('a run stopped while the precondition is pending opens nothing, even without an abort of this extractor', async () => {
  const d = deferred();
  const run = new AbortController();
  let opens = 0;
  const ext = openWhenReady(() => d.promise, () => (opens++, recorder().ext), run.signal);
  const writing = ext.write(new Uint8Array(1));
  run.abort(); // the stop aborted the file the reader was on, not this one
  d.resolve();
  await assert.rejects(writing, { code: 'ERR_CANCELLED' });
  assert.equal(opens, 0, 'no process is started after the stop');
});
