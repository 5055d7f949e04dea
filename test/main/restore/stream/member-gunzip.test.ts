// The member scanner of the parallel gunzip: marked members are decoded by workers (also when they
// straddle writes), outputs come in stream order, the first unmarked member hands the rest to the
// streaming decoder, and a lying size field or trailing garbage fails the member (ERR_CORRUPT)
// instead of changing the output. Every slot is free again at the end.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { gzipSync, gunzipSync } from 'node:zlib';
import { isQvmBackupError } from '../../../../src/main/errors.js';
import { WorkerPool } from '../../../../src/main/pipeline/worker-pool.js';
import { MAX_MEMBER_OUT, MemberScanner, memberPoolsFor, type MemberOutput, type MemberPools } from '../../../../src/main/restore/stream/member-gunzip.js';
import { gzipBlockInto, gzipBound } from '../../../../src/workers/compress.js';
import { busyLoops } from '../../../helpers/load.js';
import { assertSameBytes, sampleData } from '../../../workers/tools.js';

let pool: WorkerPool;
before(() => {
  pool = new WorkerPool({ threads: 2 });
});
after(async () => {
  await pool.destroy();
});

function pools(): MemberPools {
  const p = memberPoolsFor(pool);
  assert.ok(p !== undefined, 'two threads and the zlib handle: parallel members are used');
  return p;
}

/** Our writer's members for `data` in blocks of `block` bytes. */
function marked(data: Uint8Array, block: number): Buffer[] {
  const out: Buffer[] = [];
  for (let off = 0; off < data.length; off += block) {
    const src = data.subarray(off, Math.min(off + block, data.length));
    const buf = new Uint8Array(gzipBound(src.length));
    out.push(Buffer.from(buf.subarray(0, gzipBlockInto(src, buf, 6) as number)));
  }
  return out;
}

/** `bytes` in shared memory (what the restore's chunk slots are). */
function shared(bytes: Uint8Array): Uint8Array {
  const v = new Uint8Array(new SharedArrayBuffer(bytes.length));
  v.set(bytes);
  return v;
}

interface Run {
  /** decoded by workers, in order */
  parallel: Buffer;
  /** handed to the streaming decoder */
  handed: Buffer;
  members: number;
  error?: unknown;
}

/** Feed `stream` cut at `cuts` through a scanner and collect what comes out. */
async function scan(p: MemberPools, stream: Uint8Array, cuts: number[], o: { shared?: boolean } = {}): Promise<Run> {
  const ac = new AbortController();
  const parts: Buffer[] = [];
  let error: unknown;
  let members = 0;
  // drained like the extractor does: in order, each slot released once its bytes were used
  let chain = Promise.resolve();
  const deliver = (out: Promise<MemberOutput>): void => {
    members++;
    chain = chain.then(async () => {
      try {
        const m = await out;
        if (error === undefined) parts.push(Buffer.from(m.bytes)); // the extractor writes nothing after a failure
        m.release();
      } catch (e) {
        error ??= e;
      }
    });
  };
  const s = new MemberScanner(p, { what: 'vm1/private.img', signal: ac.signal, deliver });
  const handed: Uint8Array[] = [];
  const drain = (): Promise<void> => chain;
  let at = 0;
  let tail = null as Uint8Array[] | null;
  try {
    for (const end of [...cuts, stream.length]) {
      const piece = stream.subarray(at, end);
      at = end;
      tail = await s.write(o.shared === false ? Buffer.from(piece) : shared(piece));
      if (tail !== null) {
        handed.push(...tail, stream.subarray(at));
        break;
      }
    }
    if (tail === null) s.finish();
  } catch (e) {
    error ??= e;
    s.close();
  }
  await drain();
  assert.equal(p.out.inUse(), 0, 'output slots all free');
  assert.equal(p.scratch.inUse(), 0, 'scratch slots all free');
  return { parallel: Buffer.concat(parts), handed: Buffer.concat(handed), members, ...(error !== undefined ? { error } : {}) };
}

const corrupt = (e: unknown): boolean => isQvmBackupError(e) && e.code === 'ERR_CORRUPT';

test('marked members: decoded in parallel and in order, whatever the cuts (straddling, tiny, inside headers)', async () => {
  const p = pools();
  const data = sampleData(3_000_000, 11);
  const members = marked(data, 256 * 1024);
  const stream = Buffer.concat(members);
  const cutSets: number[][] = [
    [],
    [members[0]!.length], // exactly at a member boundary
    [members[0]!.length + 5, members[0]!.length + 12], // inside the next header, twice
    Array.from({ length: 40 }, (_, i) => Math.floor(((i + 1) * stream.length) / 41)), // straddling many
    Array.from({ length: 300 }, (_, i) => i * 7 + 1), // many tiny writes at the start
  ];
  for (const cuts of cutSets) {
    const r = await scan(p, stream, cuts);
    assert.equal(r.error, undefined, `cuts ${cuts.length}: ${String(r.error)}`);
    assert.equal(r.handed.length, 0, 'nothing for the streaming decoder');
    assert.equal(r.members, members.length);
    assertSameBytes(r.parallel, data, `cuts ${cuts.length}`);
  }
  // plain (unshared) memory is gathered in scratch slots first: still parallel, same bytes
  const r = await scan(p, stream, [100_000, 900_000], { shared: false });
  assert.equal(r.members, members.length);
  assertSameBytes(r.parallel, data, 'unshared input');
});

test('no marker (zlib, Qubes, pigz): everything goes to the streaming decoder', async () => {
  const p = pools();
  const data = sampleData(500_000, 3);
  const stream = gzipSync(data);
  for (const cuts of [[], [5], [100]]) {
    const r = await scan(p, stream, cuts);
    assert.equal(r.members, 0);
    assertSameBytes(r.handed, stream, 'the whole stream is handed over');
  }
});

test('marked members, then an unmarked one: the rest from that member on is handed over', async () => {
  const p = pools();
  const a = sampleData(600_000, 4);
  const b = sampleData(300_000, 5);
  const ours = marked(a, 200_000);
  const theirs = gzipSync(b);
  const more = marked(a.subarray(0, 1000), 1000);
  const stream = Buffer.concat([...ours, theirs, ...more]);
  const boundary = ours.reduce((n, m) => n + m.length, 0);
  for (const cuts of [[], [boundary + 3], [boundary - 7], [boundary + theirs.length + 2]]) {
    const r = await scan(p, stream, cuts);
    assert.equal(r.error, undefined);
    assert.equal(r.members, ours.length);
    assertSameBytes(r.parallel, a, 'our members');
    assertSameBytes(r.handed, stream.subarray(boundary), `handed over from the foreign member on (cuts ${cuts.join(',')})`);
    assertSameBytes(gunzipSync(r.handed), Buffer.concat([b, a.subarray(0, 1000)]), 'which the streaming decoder reads');
  }
});

test('hostile: a size field that lies, trailing garbage inside the named bytes, a corrupt member', async () => {
  const p = pools();
  const data = sampleData(900_000, 6);
  const members = marked(data, 300_000);
  const withSize = (m: Buffer, size: number): Buffer => {
    const c = Buffer.from(m);
    c.writeUInt32LE(size, 16);
    return c;
  };
  const m0 = members[0]!;
  const cases: [string, Buffer][] = [
    ['size one byte short', Buffer.concat([withSize(m0, m0.length - 1), ...members.slice(1)])],
    ['size one byte long', Buffer.concat([withSize(m0, m0.length + 1), ...members.slice(1)])],
    ['size covering the next member too', Buffer.concat([withSize(m0, m0.length + members[1]!.length), members[1]!, members[2]!])],
    ['trailing garbage inside the named bytes', Buffer.concat([withSize(Buffer.concat([m0, Buffer.from('junk')]), m0.length + 4), ...members.slice(1)])],
    ['trailing zeros inside the named bytes', Buffer.concat([withSize(Buffer.concat([m0, Buffer.alloc(8)]), m0.length + 8), ...members.slice(1)])],
    // ends in bytes that look like a trailer of a plausible size, so a worker is given the member
    ['trailing bytes that look like a trailer', Buffer.concat([withSize(Buffer.concat([m0, m0.subarray(m0.length - 8)]), m0.length + 8), ...members.slice(1)])],
  ];
  const flipped = Buffer.from(m0);
  flipped[m0.length >> 1] = (flipped[m0.length >> 1] ?? 0) ^ 0x20;
  cases.push(['corrupt deflate data', Buffer.concat([flipped, ...members.slice(1)])]);
  const decoded = (f: () => Buffer): Buffer | 'error' => {
    try {
      return f();
    } catch {
      return 'error';
    }
  };
  let corrupted = 0;
  for (const [what, stream] of cases) {
    // the streaming decoder alone (it ignores the size field): the output that must not change
    const reference = decoded(() => gunzipSync(stream));
    for (const cuts of [[], [m0.length - 3]]) {
      const r = await scan(p, stream, cuts);
      if (r.error !== undefined) {
        assert.ok(corrupt(r.error), `${what}: ${String(r.error)}`);
        assert.equal(r.parallel.length, 0, `${what}: nothing is written from or after the failing member`);
        corrupted++;
        continue;
      }
      // handed over (a size the slots cannot take): parallel part + streaming rest = streaming alone
      const ours = decoded(() => Buffer.concat([r.parallel, r.handed.length > 0 ? gunzipSync(r.handed) : Buffer.alloc(0)]));
      assert.ok(ours === 'error' ? reference === 'error' : reference !== 'error' && ours.equals(reference), `${what}: same result as the streaming decoder`);
    }
  }
  // the cases whose named end holds a usable trailer reach a worker, which refuses them
  assert.ok(corrupted >= 6, `the covering, trailer-like and corrupt cases fail as corrupt (${corrupted} of ${2 * cases.length})`);
});

test('truncated inside a member (or its header): finish fails with ERR_CORRUPT', async () => {
  const p = pools();
  const members = marked(sampleData(400_000, 8), 200_000);
  const stream = Buffer.concat(members);
  for (const cut of [stream.length - 1, members[0]!.length + 10, members[0]!.length + 3]) {
    const r = await scan(p, stream.subarray(0, cut), []);
    assert.ok(corrupt(r.error), `cut at ${cut}: ${String(r.error)}`);
    assert.match((r.error as Error).message, /ends inside a gzip member/);
  }
});

test('a member too big for the output slots is handed to the streaming decoder', async () => {
  const p = pools();
  const big = sampleData(MAX_MEMBER_OUT + 4096, 9);
  const small = marked(sampleData(100_000, 2), 100_000);
  const huge = marked(big, big.length);
  const stream = Buffer.concat([...small, ...huge]);
  const r = await scan(p, stream, [small[0]!.length + 1000]);
  assert.equal(r.error, undefined);
  assert.equal(r.members, 1);
  assertSameBytes(r.handed, huge[0]!, 'handed over from the big member');
});

test('under load: random cuts and aborts mid-stream; output identical, every slot free once the tasks ended', { timeout: 120_000 }, async () => {
  const p = pools();
  const data = sampleData(4_000_000, 12);
  const stream = Buffer.concat(marked(data, 256 * 1024));
  const load = busyLoops(2);
  try {
    let seed = 7;
    const rnd = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    for (let round = 0; round < 20; round++) {
      const cuts = Array.from({ length: 1 + rnd(12) }, () => rnd(stream.length)).sort((a, b) => a - b);
      const r = await scan(p, stream, cuts);
      assert.equal(r.error, undefined, `round ${round}`);
      assertSameBytes(r.parallel, data, `round ${round}`);
    }
    for (let round = 0; round < 10; round++) {
      const ac = new AbortController();
      const outputs: Promise<MemberOutput>[] = [];
      const s = new MemberScanner(p, { what: 'x', signal: ac.signal, deliver: (o) => outputs.push(o) });
      const cut = 1 + rnd(stream.length - 1);
      const first = s.write(shared(stream.subarray(0, cut)));
      // abort while output slots are taken (nobody drains them) and tasks may be running
      const aborted = new Promise<void>((resolve) =>
        setImmediate(() => {
          ac.abort();
          s.close();
          resolve();
        }),
      );
      const settled = await first.then(
        () => 'resolved',
        (e: unknown) => (isQvmBackupError(e) ? e.code : String(e)),
      );
      assert.ok(settled === 'resolved' || settled === 'ERR_CANCELLED', `round ${round}: ${settled}`);
      await aborted;
      for (const o of outputs) await o.then((m) => m.release(), () => undefined);
      assert.equal(p.out.inUse(), 0, `round ${round}: output slots free`);
      assert.equal(p.scratch.inUse(), 0, `round ${round}: scratch slots free`);
    }
  } finally {
    load.stop();
  }
});
