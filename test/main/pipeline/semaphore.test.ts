// Semaphore (async-queue.ts): FIFO permits, abort while waiting, and no abort listener left on a
// long-lived signal after waited acquires (each used to leak one: MaxListenersExceededWarning).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { getEventListeners } from 'node:events';
import { Semaphore } from '../../../src/main/pipeline/async-queue.js';

test('waited acquires leave no abort listener on the signal', async () => {
  const sem = new Semaphore(2);
  const ac = new AbortController();
  const warnings: Error[] = [];
  const onWarning = (w: Error): void => {
    warnings.push(w);
  };
  process.on('warning', onWarning);
  try {
    for (let round = 0; round < 500; round++) {
      await sem.acquire(ac.signal);
      await sem.acquire(ac.signal);
      // these two wait (no permit left) and get theirs from release()
      const waiting = [sem.acquire(ac.signal), sem.acquire(ac.signal)];
      assert.equal(sem.waiting, 2);
      sem.release();
      sem.release();
      await Promise.all(waiting);
      sem.release();
      sem.release();
    }
    assert.equal(getEventListeners(ac.signal, 'abort').length, 0, 'no listener left behind');
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(warnings.map((w) => w.name), []);
  } finally {
    process.off('warning', onWarning);
  }
});

test('permits are handed out first come, first served; abort rejects a waiter with the reason', async () => {
  const sem = new Semaphore(1);
  await sem.acquire();
  const order: number[] = [];
  const ac = new AbortController();
  const a = sem.acquire().then(() => order.push(1));
  const b = sem.acquire(ac.signal);
  const c = sem.acquire().then(() => order.push(3));
  const reason = new Error('stop');
  ac.abort(reason);
  await assert.rejects(b, (e) => e === reason);
  assert.equal(getEventListeners(ac.signal, 'abort').length, 0);
  sem.release();
  await a;
  sem.release();
  await c;
  assert.deepEqual(order, [1, 3]);
  await assert.rejects(sem.acquire(ac.signal), (e) => e === reason, 'an aborted signal fails at once');
});
