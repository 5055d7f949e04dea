// gnu-member-writer.ts on its own: the headers it writes are read back by our single-member reader
// with the same map and sizes (also past 8 GiB, in base-256, and across extension blocks); bad maps
// and long names are refused; the trailer pads like `tar -f -` (two zero blocks, 10240-byte records).
// Byte identity with GNU tar itself is tested in test/main/backup/inner-tar-source.test.ts.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { archiveTrailer, memberHeaders, storedBytes, type DataRun, type MemberMeta } from '../../../src/main/tar/gnu-member-writer.js';
import { SingleMemberReader, type MemberInfo } from '../../../src/main/tar/single-member-reader.js';

const meta = (size: number): MemberMeta => ({ name: 'vm1/private.img', mode: 0o100644, uid: 0, gid: 0, uname: 'root', gname: 'root', mtimeSec: 1_700_000_000, size });

/** Feed headers + zero data + trailer to the reader; what it saw. */
async function readBack(m: MemberMeta, runs: DataRun[] | null): Promise<{ info: MemberInfo; data: { position: number; length: number }[] }> {
  const headers = memberHeaders(m, runs);
  const stored = runs === null ? m.size : storedBytes(runs);
  let info: MemberInfo | undefined;
  const data: { position: number; length: number }[] = [];
  const reader = new SingleMemberReader(
    { expectedName: m.name, maxSize: 2 ** 50, what: 'test' },
    {
      begin: async (i) => void (info = i),
      data: async (position, bytes) => void data.push({ position, length: bytes.length }),
      end: async () => {},
    },
  );
  await reader.push(headers);
  for (let left = stored; left > 0; ) {
    const n = Math.min(left, 1 << 20);
    await reader.push(new Uint8Array(n));
    left -= n;
  }
  await reader.push(archiveTrailer(headers.length + stored));
  await reader.end();
  assert.ok(info);
  return { info, data };
}

describe('GNU member headers', () => {
  it('a regular file: one header, all data', async () => {
    const { info } = await readBack(meta(5000), null);
    assert.equal(info.size, 5000);
    assert.deepEqual([...info.spans], [{ offset: 0, length: 5000 }]);
  });

  it('sparse maps of 0, 3, 4, 24, 25 and 70 runs read back the same', async () => {
    for (const n of [0, 3, 4, 24, 25, 70]) {
      const runs = Array.from({ length: n }, (_, i) => ({ offset: i * 65536 + 512, length: 4096 * ((i % 3) + 1) }));
      const size = n * 65536 + 4096;
      const headers = memberHeaders(meta(size), runs);
      // header + ceil((n + 1 - 4) / 21) extension blocks (the closing zero-length run counts)
      assert.equal(headers.length / 512, 1 + Math.max(0, Math.ceil((n + 1 - 4) / 21)), `${n} runs`);
      const { info } = await readBack(meta(size), runs);
      assert.equal(info.size, size);
      assert.deepEqual([...info.spans].filter((s) => s.length > 0), runs, `${n} runs`);
    }
  });

  it('sizes and offsets of 8 GiB and more (base-256) read back', async () => {
    const size = 20 * 2 ** 30;
    const runs = [{ offset: 8 * 2 ** 30 + 4096, length: 8192 }, { offset: 19 * 2 ** 30, length: 4096 }];
    const { info } = await readBack(meta(size), runs);
    assert.equal(info.size, size);
    assert.deepEqual([...info.spans].filter((s) => s.length > 0), runs);
    const h = memberHeaders(meta(size), runs);
    assert.equal(h[483], 0x80, 'realsize in base-256');
  });

  it('refuses maps out of order, overlapping, empty runs, runs past the end, and long names', () => {
    assert.throws(() => memberHeaders(meta(100), [{ offset: 50, length: 10 }, { offset: 0, length: 10 }]), RangeError);
    assert.throws(() => memberHeaders(meta(100), [{ offset: 0, length: 20 }, { offset: 10, length: 10 }]), RangeError);
    assert.throws(() => memberHeaders(meta(100), [{ offset: 0, length: 0 }]), RangeError);
    assert.throws(() => memberHeaders(meta(100), [{ offset: 95, length: 10 }]), RangeError);
    assert.throws(() => memberHeaders({ ...meta(1), name: 'x'.repeat(100) }, null), RangeError);
  });

  it('the trailer ends the archive with two zero blocks, padded to 10240-byte records', () => {
    for (const n of [512, 1000, 9216, 9728, 10240, 123_456]) {
      const t = archiveTrailer(n);
      const total = n + t.length;
      assert.equal(total % 10240, 0);
      assert.ok(t.length >= 1024 + ((512 - (n % 512)) % 512));
      assert.ok(t.every((b) => b === 0));
    }
  });
});
