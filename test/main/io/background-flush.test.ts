// BackgroundFlush: one fdatasync in flight, started every `every` bytes; a failed flush is reported
// at the next write and by settle(); the handle is not closed under a flush.
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { BackgroundFlush, FLUSH_EVERY, FLUSH_EVERY_NEAR_END } from '../../../src/main/io/background-flush.js';

/** A stand-in handle whose datasync calls stay pending until the test settles them. */
function fakeHandle(): { fh: fsp.FileHandle; calls: Array<{ resolve: () => void; reject: (e: unknown) => void }> } {
  const calls: Array<{ resolve: () => void; reject: (e: unknown) => void }> = [];
  const fh = {
    datasync: () => new Promise<void>((resolve, reject) => calls.push({ resolve, reject })),
  } as unknown as fsp.FileHandle;
  return { fh, calls };
}

const turns = async (n = 5): Promise<void> => {
  for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
};

test('a flush starts every `every` bytes, never two at once; one that ends with that much written meanwhile starts the next at once', async () => {
  const { fh, calls } = fakeHandle();
  const f = new BackgroundFlush(fh, 100);
  f.wrote(60);
  assert.equal(calls.length, 0);
  f.wrote(60); // 120 >= 100
  assert.equal(calls.length, 1);
  f.wrote(500); // one is in flight: no second one
  assert.equal(calls.length, 1);
  calls[0]!.resolve();
  await turns();
  assert.equal(calls.length, 2, 'the 500 written meanwhile are flushed at once, not at the next write');
  f.wrote(50);
  calls[1]!.resolve();
  await turns();
  assert.equal(calls.length, 2, 'only 50 written meanwhile: the next write starts it when due');
  f.wrote(49);
  assert.equal(calls.length, 2);
  f.wrote(1);
  assert.equal(calls.length, 3);
  calls[2]!.resolve();
  await f.settle();
  f.wrote(50);
  assert.equal(calls.length, 3, 'counting restarted at the last flush');
});

test('settle() and quiesce() wait for the flush that the one in flight started as it ended', async () => {
  for (const wait of ['settle', 'quiesce'] as const) {
    const { fh, calls } = fakeHandle();
    const f = new BackgroundFlush(fh, 10);
    f.wrote(10);
    f.wrote(20);
    let done = false;
    const p = f[wait]().then(() => (done = true));
    calls[0]!.resolve();
    await turns();
    assert.equal(calls.length, 2, wait);
    assert.equal(done, false, `${wait} waits for the second flush`);
    calls[1]!.resolve();
    await p;
    assert.equal(calls.length, 2);
  }
});

test('with the file length known, the last `every` bytes are flushed in FLUSH_EVERY_NEAR_END steps', async () => {
  const { fh, calls } = fakeHandle();
  const MiB = 1024 * 1024;
  const f = new BackgroundFlush(fh, FLUSH_EVERY, 3 * FLUSH_EVERY);
  const flushAfter = async (n: number): Promise<boolean> => {
    const before = calls.length;
    f.wrote(n);
    const started = calls.length > before;
    calls.at(-1)?.resolve();
    await f.settle();
    return started;
  };
  assert.equal(await flushAfter(FLUSH_EVERY - MiB), false);
  assert.equal(await flushAfter(MiB), true, 'every 64 MiB while more than 64 MiB are to come');
  assert.equal(await flushAfter(FLUSH_EVERY_NEAR_END), false, 'still 120 MiB to come');
  assert.equal(await flushAfter(FLUSH_EVERY - FLUSH_EVERY_NEAR_END), true);
  // the last 64 MiB: a flush every 8 MiB
  for (let i = 0; i < FLUSH_EVERY / FLUSH_EVERY_NEAR_END; i++) {
    assert.equal(await flushAfter(FLUSH_EVERY_NEAR_END - MiB), false);
    assert.equal(await flushAfter(MiB), true);
  }
  // without a length: 64 MiB steps throughout
  const plain = fakeHandle();
  const g = new BackgroundFlush(plain.fh);
  g.wrote(FLUSH_EVERY_NEAR_END);
  assert.equal(plain.calls.length, 0);
});

test('a failed flush fails the next write and settle(), with its own error', async () => {
  const { fh, calls } = fakeHandle();
  const f = new BackgroundFlush(fh, 10);
  f.wrote(10);
  const e = Object.assign(new Error('No space left on device'), { code: 'ENOSPC' });
  calls[0]!.reject(e);
  await f.quiesce(); // ignores the outcome
  assert.throws(() => f.wrote(1), (x: unknown) => x === e);
  await assert.rejects(f.settle(), (x: unknown) => x === e);
  assert.equal(calls.length, 1, 'no flush after a failure');
});

test('settle() waits for the flush in flight', async () => {
  const { fh, calls } = fakeHandle();
  const f = new BackgroundFlush(fh, 1);
  f.wrote(1);
  let settled = false;
  const p = f.settle().then(() => (settled = true));
  await new Promise((r) => setImmediate(r));
  assert.equal(settled, false);
  calls[0]!.resolve();
  await p;
  assert.equal(settled, true);
});

test('on a real file: flushes run while writing and the bytes are all there', async () => {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'qvmb-flush-'));
  try {
    const file = path.join(dir, 'f');
    const fh = await fsp.open(file, 'w');
    const f = new BackgroundFlush(fh, 1 << 20);
    const block = Buffer.alloc(256 * 1024, 7);
    for (let i = 0; i < 32; i++) {
      await fh.write(block, 0, block.length, i * block.length);
      f.wrote(block.length);
    }
    await f.settle();
    await fh.close();
    const st = await fsp.stat(file);
    assert.equal(st.size, 32 * block.length);
  } finally {
    await fsp.rm(dir, { recursive: true, force: true });
  }
});

test('every must be a positive integer (0 would chain flushes with nothing written)', () => {
  const { fh } = fakeHandle();
  for (const bad of [0, -1, 1.5, Number.NaN]) assert.throws(() => new BackgroundFlush(fh, bad), RangeError);
});
