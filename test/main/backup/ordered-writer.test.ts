// The backup's write path end to end at unit level: OrderedWriter → OuterTarWriter → commandSink
// behind a slow reader, with ONE chunk slot that the producer refills as soon as it is released.
// A slot may be released only when the sink no longer references its bytes; otherwise members
// arrive overwritten by their successors (the silently corrupt archive of a slow ssh link).
import { before, test } from 'node:test';
import { loadSpawner } from '../../../src/main/io/spawn.js';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { OrderedWriter } from '../../../src/main/backup/ordered-writer.js';
import { OuterTarWriter, outerMemberHead, outerMemberTail } from '../../../src/main/tar/outer-tar-writer.js';
import { commandSink } from '../../../src/main/io/sink.js';
import { SlotPool } from '../../../src/main/pipeline/slot-pool.js';
import { busyLoops } from '../../helpers/load.js';
import { FAKE_BIN, mkTmp, rmTmp } from '../tar/tar-test-helpers.js';

// the code under test starts processes: the entry points load execa first, so does this file
before(loadSpawner);

const MEMBERS = 80;

/** Size of member i: small (most below the stream's 16 KiB high-water mark), deterministic. */
const sizeOf = (i: number): number => 512 + ((i * 7919) % 24_000);

function fillMember(bytes: Uint8Array, i: number, n: number): void {
  for (let k = 0; k < n; k++) bytes[k] = (i * 31 + k) & 0xff;
  bytes[0] = i;
}

test('one slot, slow command reader: every member arrives with its own bytes, in a loop under load', { timeout: 180_000 }, async () => {
  const dir = mkTmp();
  const load = busyLoops(2);
  try {
    for (let iteration = 0; iteration < 3; iteration++) {
      const out = path.join(dir, `outer-${iteration}.tar`);
      const sink = commandSink(`"${process.execPath}" '${path.join(FAKE_BIN, 'slow-reader.js')}' '${out}'`);
      const outer = new OuterTarWriter(sink, { mtimeSec: 0 });
      const writer = new OrderedWriter(outer, () => undefined);
      const slots = new SlotPool({ slotBytes: 32 * 1024, slots: 1, name: 'one' });
      const writing = writer.run();
      for (let i = 0; i < MEMBERS; i++) {
        const slot = await slots.acquire(); // waits until the writer released the previous member
        const n = sizeOf(i);
        fillMember(slot.bytes, i, n);
        writer.enqueue(Promise.resolve({ members: [{ name: `vm1/private.img.${String(i).padStart(3, '0')}`, parts: [slot.bytes.subarray(0, n)] }], release: () => slots.release(slot) }));
      }
      writer.close();
      await writing;
      await sink.commit();

      const got = fs.readFileSync(out);
      const want: Buffer[] = [];
      const expect = Buffer.alloc(32 * 1024);
      for (let i = 0; i < MEMBERS; i++) {
        const n = sizeOf(i);
        fillMember(expect, i, n);
        const name = `vm1/private.img.${String(i).padStart(3, '0')}`;
        want.push(outerMemberHead(name, n, { mtimeSec: 0 }), Buffer.from(expect.subarray(0, n)), outerMemberTail(n));
      }
      const wanted = Buffer.concat(want);
      assert.equal(got.length, wanted.length, `iteration ${iteration}: archive size`);
      const bad: number[] = [];
      let at = 0;
      for (let i = 0; i < MEMBERS; i++) {
        const len = want[3 * i]!.length + want[3 * i + 1]!.length + want[3 * i + 2]!.length;
        if (!got.subarray(at, at + len).equals(wanted.subarray(at, at + len))) bad.push(i);
        at += len;
      }
      assert.deepEqual(bad, [], `iteration ${iteration}: ${bad.length} of ${MEMBERS} members corrupted`);
    }
  } finally {
    load.stop();
    rmTmp(dir);
  }
});

test('input marks: each job\'s mark (taken when it is queued) is done only once its members were written, in order', async () => {
  const written: number[] = [];
  const sink = { write: async (b: Uint8Array) => void written.push(b.length), bytesWritten: 0 };
  const outer = new OuterTarWriter(sink as unknown as ConstructorParameters<typeof OuterTarWriter>[0], { mtimeSec: 0 });
  let input = 0;
  const done: Array<[number, number]> = []; // [mark, bytes written by then]
  const writer = new OrderedWriter(outer, () => undefined, undefined, { mark: () => input, done: (n) => done.push([n, outer.bytesWritten]) });
  // the second job's data comes first: its mark must wait for the first one's write
  let resolveFirst!: () => void;
  const first = new Promise<void>((r) => (resolveFirst = r)).then(() => ({ members: [{ name: 'a.000', parts: [new Uint8Array(1000)] }], release() {} }));
  input = 100;
  writer.enqueue(first);
  input = 250;
  writer.enqueue(Promise.resolve({ members: [{ name: 'a.001', parts: [new Uint8Array(10)] }], release() {} }));
  const writing = writer.run();
  await new Promise((r) => setImmediate(r));
  assert.equal(done.length, 0, 'nothing is done before the first job was written');
  resolveFirst();
  writer.close();
  await writing;
  assert.deepEqual(done.map(([m]) => m), [100, 250]);
  assert.ok(done[0]![1] >= 512 + 1024, 'the first mark came after its member was written');
  assert.ok(done[1]![1] > done[0]![1]);
});

test('input marks: a member written in pieces moves the done input in proportion, between the last mark and its own', async () => {
  const sink = { write: async () => undefined, bytesWritten: 0 };
  const outer = new OuterTarWriter(sink as unknown as ConstructorParameters<typeof OuterTarWriter>[0], { mtimeSec: 0 });
  let input = 0;
  const done: number[] = [];
  const writer = new OrderedWriter(outer, () => undefined, undefined, { mark: () => input, done: (n) => done.push(n) });
  input = 1000;
  writer.enqueue(Promise.resolve({ members: [{ name: 'a.000', parts: [new Uint8Array(10)] }], release() {} }));
  input = 5000;
  async function* pieces(): AsyncGenerator<Uint8Array> {
    for (let i = 0; i < 4; i++) yield new Uint8Array(1024);
  }
  writer.enqueue(Promise.resolve({ members: [{ name: 'a.001', size: 4096, pieces: pieces() }], release() {} }));
  const writing = writer.run();
  writer.close();
  await writing;
  assert.equal(done[0], 1000);
  assert.equal(done.at(-1), 5000);
  const between = done.slice(1, -1);
  assert.ok(between.some((n) => n > 1000 && n < 5000), `in-between values while the pieces were written: ${done.join(', ')}`);
  assert.deepEqual([...done].sort((a, b) => a - b), done, 'never backwards');
});
