// SlotPool: pre-touched reusable slots, FIFO blocking acquire, abort, double release.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isQvmBackupError } from '../../../src/main/errors.js';
import { SlotPool, type Slot } from '../../../src/main/pipeline/slot-pool.js';

test('slots are shared, sized, reused and sliced with bounds checks', async () => {
  const pool = new SlotPool({ slotBytes: 1 << 20, slots: 2, name: 'test' });
  assert.equal(pool.size, 2);
  assert.equal(pool.slotBytes, 1 << 20);
  const a = await pool.acquire();
  const b = await pool.acquire();
  assert.notEqual(a.index, b.index);
  assert.ok(a.sab instanceof SharedArrayBuffer);
  assert.equal(a.bytes.length, 1 << 20);
  assert.equal(pool.inUse(), 2);
  assert.deepEqual(a.slice(10, 20), { sab: a.sab, offset: 10, length: 20 });
  assert.throws(() => a.slice((1 << 20) - 5, 10), RangeError);
  assert.throws(() => a.slice(-1, 1), RangeError);
  pool.release(a);
  const again = await pool.acquire();
  assert.equal(again.sab, a.sab, 'the same memory comes back');
  pool.release(again);
  pool.release(b);
  assert.equal(pool.inUse(), 0);
});

test('acquire blocks while all slots are in use and is served first come, first served', async () => {
  const pool = new SlotPool({ slotBytes: 4096, slots: 1 });
  const first = await pool.acquire();
  const order: string[] = [];
  const w1 = pool.acquire().then((s) => {
    order.push('w1');
    return s;
  });
  const w2 = pool.acquire().then((s) => {
    order.push('w2');
    return s;
  });
  await new Promise((r) => setTimeout(r, 20));
  assert.deepEqual(order, [], 'nobody got a slot while it is held');
  assert.equal(pool.waiting(), 2);
  pool.release(first);
  const s1 = await w1;
  assert.deepEqual(order, ['w1']);
  pool.release(s1);
  const s2 = await w2;
  assert.deepEqual(order, ['w1', 'w2']);
  pool.release(s2);
  assert.equal(pool.inUse(), 0);
});

test('abort rejects a waiting acquire with ERR_CANCELLED and it never gets a slot', async () => {
  const pool = new SlotPool({ slotBytes: 4096, slots: 1 });
  const held = await pool.acquire();
  const ac = new AbortController();
  const waiting = pool.acquire(ac.signal);
  const later = pool.acquire();
  ac.abort(new Error('stop'));
  await assert.rejects(waiting, (e: unknown) => isQvmBackupError(e) && e.code === 'ERR_CANCELLED');
  assert.equal(pool.waiting(), 1);
  pool.release(held);
  const s = await later;
  assert.equal(s.index, held.index, 'the aborted waiter was skipped');
  pool.release(s);
  const pre = new AbortController();
  pre.abort();
  await assert.rejects(pool.acquire(pre.signal), (e: unknown) => isQvmBackupError(e) && e.code === 'ERR_CANCELLED');
  assert.equal(pool.inUse(), 0);
});

test('double release and foreign slots throw', async () => {
  const pool = new SlotPool({ slotBytes: 4096, slots: 2 });
  const other = new SlotPool({ slotBytes: 4096, slots: 1 });
  const s: Slot = await pool.acquire();
  pool.release(s);
  assert.throws(() => pool.release(s), (e: unknown) => isQvmBackupError(e) && e.code === 'ERR_INTERNAL' && /released twice/.test(e.message));
  const o = await other.acquire();
  assert.throws(() => pool.release(o), /does not belong/);
  assert.throws(() => new SlotPool({ slotBytes: 0, slots: 1 }), RangeError);
});
