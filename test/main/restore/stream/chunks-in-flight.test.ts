// ChunkSlots: a chunk that fits a small slot gets one although every large slot is busy; each slot
// goes back to the pool it came from; the bytes in flight and the memory are counted over both.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ChunkSlots } from '../../../../src/main/restore/stream/chunks-in-flight.js';
import { isQvmBackupError } from '../../../../src/main/errors.js';
import { smallSlots } from '../../../../src/main/restore/stream/slot-layout.js';
import type { BackupHeader } from '../../../../src/main/format/backup-header.js';

const pending = async <T>(p: Promise<T>): Promise<boolean> => {
  let settled = false;
  void p.then(() => (settled = true), () => (settled = true));
  await new Promise((r) => setImmediate(r));
  return !settled;
};

test('small chunks do not wait for the large slots; slots return to their own pool; bytes counted over both', async () => {
  const slots = new ChunkSlots({ slotBytes: 4096, slots: 1 }, { slotBytes: 1024, slots: 2, maxChunkBytes: 960 });
  let releases = 0;
  slots.onRelease = () => releases++;
  assert.equal(slots.capacityBytes, 4096 + 2 * 1024);
  const big = await slots.acquire(3000);
  assert.equal(big.bytes.length, 4096);
  slots.hold(big, 3000);
  // every large slot is busy: a chunk of 960 bytes still gets a small one, one of 961 waits
  const s1 = await slots.acquire(960);
  assert.equal(s1.bytes.length, 1024);
  slots.hold(s1, 960);
  const waiting = slots.acquire(961);
  assert.ok(await pending(waiting), 'a chunk too large for a small slot waits for a large one');
  const s2 = await slots.acquire(10);
  slots.hold(s2, 10);
  assert.equal(slots.inFlightBytes, 3970);
  const third = slots.acquire(5);
  assert.ok(await pending(third), 'both small slots busy: waits (not for a large one)');
  slots.release(s1);
  const s3 = await third;
  assert.equal(s3, s1, 'the small slot released');
  assert.ok(await pending(waiting), 'a small release does not serve a large waiter');
  slots.release(big);
  assert.equal(await waiting, big);
  assert.equal(slots.inFlightBytes, 10, 'released slots no longer count');
  assert.equal(releases, 2);
  slots.release(s2);
  assert.throws(() => slots.release(s2), (e: unknown) => isQvmBackupError(e) && /released twice/.test(e.message));
});

test('without small slots every chunk takes a large one', async () => {
  const slots = new ChunkSlots({ slotBytes: 4096, slots: 1 });
  const a = await slots.acquire(1);
  const b = slots.acquire(1);
  assert.ok(await pending(b));
  slots.release(a);
  assert.equal(await b, a);
});

test('small slots for formats 3 and 4 beside large slots much larger than they are; none for format 2', () => {
  const header = (version: 2 | 3 | 4): BackupHeader => ({ version, hmacAlgorithm: 'SHA512', encrypted: true, compressed: true });
  const large = 100 * 2 ** 20;
  for (const v of [3, 4] as const) {
    const s = smallSlots(header(v), large);
    assert.ok(s !== undefined && s.slots > 0 && s.maxChunkBytes >= 2 ** 20 && s.maxChunkBytes < s.slotBytes, JSON.stringify(s));
  }
  assert.equal(smallSlots(header(2), large), undefined);
  assert.equal(smallSlots(header(4), 2 ** 20), undefined, 'large slots of 1 MiB (a test): none');
});

test('a chunk of warmAfter bytes or more prepares the next large slot; smaller ones and small slots do not', async () => {
  const slots = new ChunkSlots({ slotBytes: 8192, slots: 3, warmAfter: 6000 }, { slotBytes: 1024, slots: 1, maxChunkBytes: 960 });
  const created = (): number => slots.largeSlotsCreated;
  const a = await slots.acquire(5999);
  assert.equal(created(), 1, 'under warmAfter: only the slot it took');
  const b = await slots.acquire(6000);
  assert.equal(created(), 3, 'a full chunk: the next slot is made ready');
  const c = await slots.acquire(6000); // the prepared one (waits for its read in flight)
  assert.equal(c.index, 2);
  assert.equal(created(), 3, 'never more than the pool has');
  const s = await slots.acquire(900);
  assert.equal(s.bytes.length, 1024);
  for (const x of [a, b, c, s]) slots.release(x);
  const plain = new ChunkSlots({ slotBytes: 8192, slots: 2 });
  const p = await plain.acquire(8000);
  assert.equal(plain.largeSlotsCreated, 1, 'without warmAfter, nothing is prepared');
  plain.release(p);
});

test('warmFirstLarge makes the first large slot ready before any chunk takes one, once; the first large chunk gets it', async () => {
  const slots = new ChunkSlots({ slotBytes: 8192, slots: 2, warmAfter: 6000 }, { slotBytes: 1024, slots: 1, maxChunkBytes: 960 });
  assert.equal(slots.largeChunkBytes, 6000);
  slots.warmFirstLarge();
  assert.equal(slots.largeSlotsCreated, 1, 'made ready now');
  slots.warmFirstLarge();
  assert.equal(slots.largeSlotsCreated, 1, 'only the first');
  const small = await slots.acquire(900);
  assert.equal(slots.largeSlotsCreated, 1, 'a small chunk does not take it');
  const big = await slots.acquire(5000);
  assert.equal(big.index, 0, 'the slot made ready');
  assert.equal(slots.largeSlotsCreated, 1);
  for (const x of [small, big]) slots.release(x);
  // stopped before anyone took it (a declined plan): nothing left running
  const other = new ChunkSlots({ slotBytes: 1 << 24, slots: 2, warmAfter: 1 << 20 });
  other.warmFirstLarge();
  other.stopWarming();
  const s = await other.acquire(1 << 20); // waits for the read in flight at most
  assert.equal(s.index, 0);
  other.release(s);
});
