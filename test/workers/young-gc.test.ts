// young-gc.ts: the cipher's per-slice garbage is collected every few MiB, so a 100 MiB chunk does not
// spread its output over 100 MiB of never-touched memory (see the module's comment for the cost).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createCipheriv } from 'node:crypto';
import { runInNewContext } from 'node:vm';
import { spawnSync } from 'node:child_process';
import { Worker } from 'node:worker_threads';
import { PerformanceObserver, constants, type PerformanceEntry } from 'node:perf_hooks';
import { setImmediate as tick } from 'node:timers/promises';
import { COLLECT_EVERY_BYTES, GarbagePacer, youngGc } from '../../src/workers/young-gc.js';
import { pumpSlices } from '../../src/workers/buffers.js';
import { SLICE_BYTES } from '../../src/workers/codec-error.js';

test('youngGc: the collector is reached without --expose-gc, and the flag is cleared again', () => {
  assert.equal(typeof (globalThis as { gc?: unknown }).gc, 'undefined', 'the test runs without --expose-gc');
  const gc = youngGc();
  assert.equal(typeof gc, 'function');
  assert.equal(youngGc(), gc, 'looked up once');
  gc?.({ type: 'minor' });
  assert.equal(runInNewContext('typeof gc'), 'undefined', 'later contexts do not get gc');
});

test('GarbagePacer: one collection after every COLLECT_EVERY_BYTES, none before', () => {
  assert.ok(SLICE_BYTES <= 64 * 1024, "slices stay below glibc malloc's mmap threshold (128 KiB)");
  let calls = 0;
  const p = new GarbagePacer(() => calls++);
  const perRound = COLLECT_EVERY_BYTES / SLICE_BYTES;
  for (let i = 0; i < perRound - 1; i++) p.allocated(SLICE_BYTES);
  assert.equal(calls, 0);
  p.allocated(SLICE_BYTES);
  assert.equal(calls, 1);
  for (let i = 0; i < perRound * 3; i++) p.allocated(SLICE_BYTES);
  assert.equal(calls, 4);
  p.allocated(COLLECT_EVERY_BYTES * 2); // one large allocation: one collection
  assert.equal(calls, 5);
});

test('pumpSlices: AES-CTR over 48 MiB runs a minor collection every few MiB, output unchanged', async () => {
  const n = 48 * 1024 * 1024;
  const input = new Uint8Array(n).fill(7);
  const output = new Uint8Array(n);
  const ctr = createCipheriv('aes-256-ctr', Buffer.alloc(32, 1), Buffer.alloc(16));
  let minor = 0;
  const obs = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) if ((e as PerformanceEntry & { detail?: { kind?: number } }).detail?.kind === constants.NODE_PERFORMANCE_GC_MINOR) minor++;
  });
  obs.observe({ entryTypes: ['gc'] });
  try {
    const end = pumpSlices((x) => ctr.update(x), input, output, 0, 'test');
    assert.equal(end, n);
    for (let i = 0; i < 20 && minor < n / COLLECT_EVERY_BYTES; i++) await tick(); // entries arrive asynchronously
  } finally {
    obs.disconnect();
  }
  // without the pacer V8 collects the slice buffers only every ~64 MiB of them
  assert.ok(minor >= n / COLLECT_EVERY_BYTES, `${minor} minor collections`);
  const whole = createCipheriv('aes-256-ctr', Buffer.alloc(32, 1), Buffer.alloc(16)).update(input);
  assert.ok(Buffer.from(output.buffer).equals(whole));
});

const YOUNG_GC_URL = new URL('../../src/workers/young-gc.js', import.meta.url).href;

/** typeof youngGc() in each of `n` workers that look it up at the same moment. */
async function lookUpTogether(n: number): Promise<string[]> {
  const met = new Int32Array(new SharedArrayBuffer(8));
  const code = `const { workerData, parentPort } = require('node:worker_threads');
    import(${JSON.stringify(YOUNG_GC_URL)}).then(({ youngGc }) => {
      Atomics.add(workerData, 0, 1);
      while (Atomics.load(workerData, 0) < ${n}) Atomics.wait(workerData, 1, 0, 1);
      parentPort.postMessage(typeof youngGc());
    });`;
  return Promise.all(Array.from({ length: n }, () => new Promise<string>((ok, ko) => {
    const w = new Worker(code, { eval: true, workerData: met });
    w.once('message', (m: string) => { ok(m); void w.terminate(); });
    w.once('error', ko);
  })));
}

test('youngGc: workers that look the collector up at once all get it (the flag is process-wide)', async () => {
  // before: a worker clearing the flag between another's set and read left that one without it
  for (let round = 0; round < 6; round++) {
    const kinds = await lookUpTogether(8);
    assert.deepEqual(kinds, Array(8).fill('function'), `round ${round}`);
  }
});

test('youngGc: a collector exposed by the command line under another name is used, its flag kept', () => {
  const script = `import { youngGc } from ${JSON.stringify(YOUNG_GC_URL)};
    import { runInNewContext } from 'node:vm';
    const g = youngGc();
    process.stdout.write(String(g === globalThis.myGc) + ' ' + runInNewContext('typeof myGc'));`;
  for (const flag of ['--expose-gc-as=myGc', '--expose_gc_as=myGc']) {
    const r = spawnSync(process.execPath, [flag, '--input-type=module', '-e', script], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    // before: null here, and on Node 24 later contexts and workers lost myGc
    assert.equal(r.stdout, 'true function', flag);
  }
});
