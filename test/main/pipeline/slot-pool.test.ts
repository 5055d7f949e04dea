// SlotPool: pre-touched reusable slots, FIFO blocking acquire, abort, double release.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isQvmBackupError } from '../../../src/main/errors.js';
import { SlotPool, type Slot, type WarmSource } from '../../../src/main/pipeline/slot-pool.js';

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

/** A warm source whose reads stay pending until the test ends them; each read fills its range with
 *  `fill` when it ends (as a read of /dev/zero writes zeros), so a read still running after its
 *  slot was handed out would show as bytes changed under the new owner. */
function heldSource(fill = 0): { source: () => Promise<WarmSource>; reads: Array<{ offset: number; length: number; end: () => void }>; closed: () => boolean } {
  const reads: Array<{ offset: number; length: number; end: () => void }> = [];
  let closed = false;
  const source = async (): Promise<WarmSource> => ({
    read: (into, offset, length) =>
      new Promise<void>((resolve) => {
        reads.push({ offset, length, end: () => (into.fill(fill, offset, offset + length), resolve()) });
      }),
    close: async () => {
      closed = true;
    },
  });
  return { source, reads, closed: () => closed };
}

const turns = async (n = 5): Promise<void> => {
  for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
};

test('warmNext: a slot being prepared is handed out only once its read in flight ended, and no read starts after', async () => {
  const MiB = 1024 * 1024;
  const h = heldSource(0);
  const pool = new SlotPool({ slotBytes: 12 * MiB, slots: 2, warmSource: h.source });
  const first = await pool.acquire();
  pool.warmNext();
  assert.equal(pool.created(), 2);
  await turns();
  assert.deepEqual(h.reads.map((r) => [r.offset, r.length]), [[0, 4 * MiB]], 'one piece at a time');
  h.reads[0]!.end();
  await turns();
  assert.equal(h.reads.length, 2, 'the next piece');
  // asked for while its second read runs: not handed out until that read ended
  const asked = pool.acquire();
  let got: Slot | undefined;
  void asked.then((s) => (got = s));
  await turns();
  assert.equal(got, undefined, 'not before the read in flight ended');
  h.reads[1]!.end();
  const second = await asked;
  assert.equal(second.index, 1);
  second.bytes.fill(0xab);
  await turns();
  assert.equal(h.reads.length, 2, 'no read after the slot was asked for');
  assert.ok(h.closed(), 'the source is closed');
  assert.ok(second.bytes.every((b) => b === 0xab), 'nothing of ours writes into it any more');
  pool.warmNext();
  assert.equal(pool.created(), 2, 'never more slots than the pool has');
  pool.release(first);
  pool.release(second);
});

test('warmNext: slots already used are handed out before the one being prepared; a failing source leaves a usable slot', async () => {
  const h = heldSource();
  const pool = new SlotPool({ slotBytes: 4096, slots: 2, warmSource: h.source });
  const a = await pool.acquire();
  pool.warmNext();
  pool.release(a); // freed while the other is being made ready
  const again = await pool.acquire();
  assert.equal(again, a, 'the used slot first');
  await turns();
  h.reads[0]!.end();
  const b = await pool.acquire();
  assert.equal(b.index, 1);
  pool.release(again);
  pool.release(b);

  const failing = new SlotPool({
    slotBytes: 4096,
    slots: 2,
    warmSource: async () => {
      throw Object.assign(new Error('no such device'), { code: 'ENOENT' });
    },
  });
  const x = await failing.acquire();
  failing.warmNext();
  const y = await failing.acquire();
  assert.equal(y.index, 1);
  assert.equal(y.bytes.length, 4096);
  failing.release(x);
  failing.release(y);
});

test('warmNext with /dev/zero: the slot is ready and whole', async () => {
  const pool = new SlotPool({ slotBytes: 9 * 1024 * 1024 + 4096, slots: 2 });
  const a = await pool.acquire();
  pool.warmNext();
  const b = await pool.acquire(); // may stop the preparation midway: its rest is faulted by its user
  assert.equal(b.index, 1);
  b.bytes.fill(7);
  assert.ok(b.bytes.every((v) => v === 7));
  pool.release(a);
  pool.release(b);
});

test('stopWarming: no read starts after the one in flight; the slot stays in the pool', async () => {
  const h = heldSource();
  const pool = new SlotPool({ slotBytes: 16 * 1024 * 1024, slots: 2, warmSource: h.source });
  pool.warmNext();
  await turns();
  assert.equal(h.reads.length, 1);
  pool.stopWarming();
  h.reads[0]!.end();
  await turns();
  assert.equal(h.reads.length, 1, 'stopped');
  assert.ok(h.closed());
  const s = await pool.acquire();
  assert.equal(s.index, 0);
  pool.release(s);
});

test('warmNext makes nothing while a slot is free or one is being made ready: one chunk at a time uses two slots', async () => {
  const h = heldSource();
  const pool = new SlotPool({ slotBytes: 4096, slots: 8, warmSource: h.source });
  for (let i = 0; i < 10; i++) {
    const s = await pool.acquire();
    pool.warmNext();
    pool.warmNext(); // a second call while one is being made ready
    await turns();
    for (const r of h.reads.splice(0)) r.end();
    await turns();
    pool.release(s);
  }
  assert.equal(pool.created(), 2, 'the slot in use and the one made ready');
});

test('warmNext: a source that throws at once leaves no preparation behind', async () => {
  const pool = new SlotPool({
    slotBytes: 4096,
    slots: 3,
    warmSource: () => {
      throw new Error('sync failure');
    },
  });
  const a = await pool.acquire();
  pool.warmNext();
  await turns();
  const b = await pool.acquire();
  assert.equal(b.index, 1);
  pool.warmNext(); // none is being made ready any more: the third is made
  assert.equal(pool.created(), 3);
  pool.release(a);
  pool.release(b);
});
