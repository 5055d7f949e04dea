// AsyncQueue: FIFO order, a waiting consumer woken by push/close, fail() after queued items, drain().
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AsyncQueue } from '../../../src/main/pipeline/async-queue.js';

test('values come out in push order; iteration ends at close', async () => {
  const q = new AsyncQueue<number>();
  for (let i = 0; i < 5; i++) q.push(i);
  q.close();
  const got: number[] = [];
  for await (const v of q) got.push(v);
  assert.deepEqual(got, [0, 1, 2, 3, 4]);
  assert.throws(() => q.push(9), /push after close/);
});

test('a waiting consumer is woken by a later push, then by close', async () => {
  const q = new AsyncQueue<string>();
  const first = q.next();
  q.push('a');
  assert.deepEqual(await first, { value: 'a', done: false });
  const end = q.next();
  q.close();
  assert.deepEqual(await end, { value: undefined, done: true });
});

test('fail() rejects the consumer (even with items queued), keeps the first error; drain() empties', async () => {
  const q = new AsyncQueue<number>();
  q.push(1);
  q.push(2);
  const e1 = new Error('first');
  q.fail(e1);
  q.fail(new Error('second'));
  await assert.rejects(q.next(), (e) => e === e1);
  assert.equal(q.length, 2);
  assert.deepEqual(q.drain(), [1, 2]);
  assert.equal(q.length, 0);
});

test('fail() wakes a consumer that is already waiting', async () => {
  const q = new AsyncQueue<number>();
  const waiting = q.next();
  q.fail(new Error('stop'));
  await assert.rejects(waiting, /stop/);
});
