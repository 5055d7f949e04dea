// The streaming single-member reader against real GNU tar output (dense, GNU old sparse with
// extension blocks, pax sparse 0.1 and 1.0), fed in odd pieces, and against hostile variations:
// another member, links, devices, a directory, broken sparse maps, truncation.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { SingleMemberReader, SpanList, type MemberInfo, type MemberSink } from '../../../src/main/tar/single-member-reader.js';
import { headerChecksum } from '../../../src/main/tar/tar-header.js';
import { paxRecord as rec, paxSparse, tarBlockHeader as header, toBlocks as padded } from '../../helpers/tar-craft.js';

let dir: string;
let sparse: { file: string; sha: string; size: number };
before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qvmb-smr-'));
  fs.mkdirSync(path.join(dir, 'vm3'));
  // 40 data runs (more than the 4 + 21 entries of one header and one extension block), an odd
  // tail and a hole at the end
  const file = path.join(dir, 'vm3', 'private.img');
  const size = 16 * 1024 * 1024 + 3000;
  const fd = fs.openSync(file, 'w');
  fs.ftruncateSync(fd, size);
  for (let i = 0; i < 40; i++) fs.writeSync(fd, randomBytes(4096 + (i % 3) * 4096), 0, undefined, i * 256 * 1024 + 8192);
  fs.writeSync(fd, randomBytes(1234), 0, undefined, 12 * 1024 * 1024 + 7);
  fs.closeSync(fd);
  sparse = { file, sha: createHash('sha256').update(fs.readFileSync(file)).digest('hex'), size };
  fs.writeFileSync(path.join(dir, 'vm3', 'notes.txt'), 'dense small file\n');
});
after(() => fs.rmSync(dir, { recursive: true, force: true }));

/** Collects the member into memory (holes as zeros) and what the reader said. */
class MemorySink implements MemberSink {
  info: MemberInfo | undefined;
  buf = Buffer.alloc(0);
  ended = false;
  async begin(info: MemberInfo): Promise<void> {
    this.info = info;
    this.buf = Buffer.alloc(info.size);
  }
  async data(position: number, bytes: Uint8Array): Promise<void> {
    assert.ok(position + bytes.length <= this.buf.length, 'write past the end');
    this.buf.set(bytes, position);
  }
  async end(): Promise<void> {
    this.ended = true;
  }
}

const tar = (args: string[], names: string[]): Buffer => execFileSync('tar', ['-c', ...args, '-C', dir, '-f', '-', '--', ...names], { maxBuffer: 1 << 28 });

async function read(bytes: Buffer, expectedName: string, piece = 1 << 20): Promise<MemorySink> {
  const sink = new MemorySink();
  const r = new SingleMemberReader({ expectedName, maxSize: 2 ** 40, what: expectedName }, sink);
  for (let i = 0; i < bytes.length; i += piece) await r.push(bytes.subarray(i, i + piece));
  await r.end();
  return sink;
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('SingleMemberReader: what GNU tar writes', () => {
  for (const [label, args] of [
    ['GNU old sparse (S, extension blocks)', ['--sparse']],
    ['pax sparse 1.0', ['--sparse', '--format=posix', '--sparse-version=1.0']],
    ['pax sparse 0.1', ['--sparse', '--format=posix', '--sparse-version=0.1']],
    ['dense (no --sparse)', []],
  ] as const) {
    it(`${label}: same bytes, runs in order, fed in odd pieces`, async () => {
      const bytes = tar([...args], ['vm3/private.img']);
      for (const piece of [1 << 20, 4093, 512]) {
        const s = await read(bytes, 'vm3/private.img', piece);
        assert.ok(s.ended);
        assert.equal(s.info!.size, sparse.size);
        assert.equal(sha(s.buf), sparse.sha, `${label}, pieces of ${piece}`);
        if (args.length > 0) assert.ok(s.info!.spans.length >= 40, `${label}: ${s.info!.spans.length} runs`);
      }
    });
  }

  it('a small dense file, a leading ./ in the name', async () => {
    const bytes = execFileSync('tar', ['-c', '-C', path.join(dir), '-f', '-', './vm3/notes.txt']);
    const s = await read(bytes, 'vm3/notes.txt', 7);
    assert.equal(s.buf.toString(), 'dense small file\n');
  });
});

describe('SingleMemberReader: refusals', () => {
  async function refuses(bytes: Buffer, expectedName: string, code: string, re: RegExp): Promise<void> {
    await assert.rejects(read(bytes, expectedName, 700), (e: { code?: string; message?: string }) => {
      assert.equal(e.code, code, e.message);
      assert.match(e.message ?? '', re);
      return true;
    });
  }
  /** Rewrite header block `at` with `edit`, fixing the checksum. */
  function editHeader(bytes: Buffer, at: number, edit: (b: Buffer) => void): Buffer {
    const out = Buffer.from(bytes);
    const b = out.subarray(at, at + 512);
    edit(b);
    b.write(headerChecksum(b).unsigned.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1');
    return out;
  }

  it('another member, the wrong name', async () => {
    await refuses(tar([], ['vm3/notes.txt', 'vm3/private.img']), 'vm3/private.img', 'ERR_UNSAFE_CONTENT', /unexpected member "vm3\/notes.txt"/);
    await refuses(tar([], ['vm3/private.img', 'vm3/notes.txt']), 'vm3/private.img', 'ERR_UNSAFE_CONTENT', /more than vm3\/private.img/);
  });

  it('links, devices, FIFOs and directories', async () => {
    const d = fs.mkdtempSync(path.join(dir, 'odd-'));
    fs.mkdirSync(path.join(d, 'vm3'));
    fs.symlinkSync('/etc/shadow', path.join(d, 'vm3', 'private.img'));
    const link = execFileSync('tar', ['-c', '-C', d, '-f', '-', 'vm3/private.img']);
    await refuses(link, 'vm3/private.img', 'ERR_UNSAFE_CONTENT', /arrived as a symbolic link/);
    fs.rmSync(path.join(d, 'vm3', 'private.img'));
    execFileSync('mkfifo', [path.join(d, 'vm3', 'private.img')]);
    await refuses(execFileSync('tar', ['-c', '-C', d, '-f', '-', 'vm3/private.img']), 'vm3/private.img', 'ERR_UNSAFE_CONTENT', /arrived as a FIFO/);
    fs.rmSync(path.join(d, 'vm3', 'private.img'));
    fs.mkdirSync(path.join(d, 'vm3', 'private.img'));
    await refuses(execFileSync('tar', ['-c', '-C', d, '-f', '-', 'vm3/private.img']), 'vm3/private.img', 'ERR_UNSAFE_CONTENT', /arrived as a directory/);
    // a hard link entry (type 1) to a name outside
    const hard = editHeader(tar([], ['vm3/notes.txt']), 0, (b) => {
      b.write('vm3/private.img\0', 0, 'latin1');
      b[156] = 0x31;
      b.write('etc/shadow\0', 157, 'latin1');
    });
    await refuses(hard, 'vm3/private.img', 'ERR_UNSAFE_CONTENT', /arrived as a hard link/);
  });

  it('broken sparse maps: overlapping runs, a run past the end, runs that do not fill the member', async () => {
    const bytes = tar(['--sparse'], ['vm3/private.img']);
    assert.equal(bytes[156], 0x53); // 'S'
    const entry = (b: Buffer, i: number, off: number, n: number) => {
      b.write(off.toString(8).padStart(11, '0') + '\0', 386 + i * 24, 'latin1');
      b.write(n.toString(8).padStart(11, '0') + '\0', 386 + i * 24 + 12, 'latin1');
    };
    await refuses(editHeader(bytes, 0, (b) => entry(b, 1, 0, 4096)), 'vm3/private.img', 'ERR_CORRUPT', /overlap or are out of order/);
    await refuses(editHeader(bytes, 0, (b) => b.write((1024).toString(8).padStart(11, '0') + '\0', 483, 'latin1')), 'vm3/private.img', 'ERR_CORRUPT', /past the end of the file/);
    await refuses(editHeader(bytes, 0, (b) => entry(b, 0, 8192, 512)), 'vm3/private.img', 'ERR_CORRUPT', /does not match the member size/);
  });

  it('a truncated archive, a bad checksum, a size over the limit', async () => {
    const bytes = tar(['--sparse'], ['vm3/private.img']);
    await refuses(bytes.subarray(0, bytes.length - 20 * 1024 - 4096), 'vm3/private.img', 'ERR_CORRUPT', /ends in the middle/);
    const bad = Buffer.from(bytes);
    bad[0] = (bad[0] ?? 0) ^ 1;
    await refuses(bad, 'vm3/private.img', 'ERR_CORRUPT', /checksum/);
    const sink = new MemorySink();
    const r = new SingleMemberReader({ expectedName: 'vm3/private.img', maxSize: 1024 * 1024, what: 'x' }, sink);
    await assert.rejects(r.push(bytes), /claims \d+ bytes \(limit 1048576\)/);
    await refuses(Buffer.alloc(10240), 'vm3/private.img', 'ERR_CORRUPT', /no such member/);
  });
});

describe('SingleMemberReader: pax sparse 1.0 maps made here', () => {
  it('a map whose lines straddle the blocks: the same bytes, in odd pieces', async () => {
    const spans: { offset: number; length: number }[] = [];
    for (let i = 0, at = 3; i < 2000; i++, at += 1000 + (i % 7) * 333) spans.push({ offset: at, length: 1 + ((i * 37) % 600) });
    const size = spans.at(-1)!.offset + 5000;
    const expected = Buffer.alloc(size);
    const runData = (s: { offset: number; length: number }): Buffer => {
      const b = randomBytes(s.length);
      b.copy(expected, s.offset);
      return b;
    };
    const bytes = paxSparse(spans, size, runData);
    for (const piece of [1 << 20, 4093, 511]) {
      const s = await read(bytes, 'vm3/private.img', piece);
      assert.equal(s.info!.spans.length, 2000);
      assert.ok(s.buf.equals(expected), `pieces of ${piece}`);
    }
  });

  it('a map of 100 000 runs is read in time linear in its length (it was quadratic: minutes)', async () => {
    // one byte each (a run's data fills a block): empty runs are refused before the last entry
    const spans = Array.from({ length: 100_000 }, (_, i) => ({ offset: i * 2, length: 1 }));
    const bytes = paxSparse(spans, 200_000, () => Buffer.alloc(1, 0x61));
    const t0 = performance.now();
    const s = await read(bytes, 'vm3/private.img');
    const ms = performance.now() - t0;
    assert.equal(s.info!.spans.length, 100_000);
    assert.ok(ms < 15_000, `${ms.toFixed(0)} ms`);
  });

  it('an empty run only as the last entry (GNU tar: a file that ends in a hole); anywhere else refused', async () => {
    const ok = await read(paxSparse([{ offset: 0, length: 5 }, { offset: 4096, length: 0 }], 4096, (r) => Buffer.alloc(r.length, 0x62)), 'vm3/private.img');
    assert.equal(ok.info!.spans.length, 2);
    assert.ok(ok.buf.subarray(0, 5).equals(Buffer.alloc(5, 0x62)));
    const bad = paxSparse([{ offset: 0, length: 0 }, { offset: 0, length: 0 }, { offset: 512, length: 5 }], 4096, (r) => Buffer.alloc(r.length, 0x62));
    await assert.rejects(read(bad, 'vm3/private.img'), (e: Error & { code?: string }) => e.code === 'ERR_CORRUPT' && /an empty run before the end of the sparse map/.test(e.message));
  });

  it('at most 16 extension headers before the member; pax keys it does not read are not kept', async () => {
    const member = paxSparse([{ offset: 0, length: 5 }], 5, () => Buffer.alloc(5, 0x63));
    // 30 000 records of no use to the reader in each of 15 headers (+ the member's own): read, ignored
    const junk = Buffer.from(Array.from({ length: 30_000 }, (_, i) => rec(`LIBARCHIVE.xattr.k${i}`, 'v')).join(''));
    const extra = (n: number): Buffer => Buffer.concat(Array.from({ length: n }, () => [header('vm3/PaxHeaders/x', 'x', junk.length), padded(junk)]).flat());
    const ok = await read(Buffer.concat([extra(15), member]), 'vm3/private.img');
    assert.ok(ok.buf.equals(Buffer.alloc(5, 0x63)));
    await assert.rejects(read(Buffer.concat([extra(16), member]), 'vm3/private.img'), (e: Error & { code?: string }) => e.code === 'ERR_CORRUPT' && /more than 16 extension headers before the member/.test(e.message));
    // an unknown GNU sparse key is still an unsupported variant (0.0 names its runs this way)
    const v00 = Buffer.from(rec('GNU.sparse.offset', '0') + rec('GNU.sparse.numbytes', '5'));
    await assert.rejects(read(Buffer.concat([header('vm3/PaxHeaders/private.img', 'x', v00.length), padded(v00), header('vm3/private.img', '0', 512), Buffer.alloc(512), Buffer.alloc(1024)]), 'vm3/private.img'), /unsupported pax GNU sparse variant/);
  });

  it('refuses a map line longer than any number, without waiting for its end', async () => {
    const sink = new MemorySink();
    const r = new SingleMemberReader({ expectedName: 'vm3/private.img', maxSize: 2 ** 40, what: 'x' }, sink);
    const bytes = paxSparse([{ offset: 0, length: 1 }], 10, () => Buffer.alloc(1), `1\n${'7'.repeat(2048)}\n1\n`);
    // the headers and the first block of the map: 510 digits and no end of line yet
    await assert.rejects(r.push(bytes.subarray(0, 4 * 512)), (e: { code?: string; message?: string }) => e.code === 'ERR_CORRUPT' && /malformed sparse map entry/.test(e.message ?? ''));
  });
});

describe('SpanList', () => {
  it('blockBytes: the 4 KiB blocks the runs touch, each counted once', () => {
  const l = SpanList.from([
    { offset: 0, length: 1 },
    { offset: 100, length: 1 }, // the same block
    { offset: 4095, length: 2 }, // ends in the next block
    { offset: 8192, length: 0 }, // empty: nothing
    { offset: 3 * 4096, length: 2 * 4096 }, // aligned: two blocks
    { offset: 10 * 4096 - 1, length: 1 },
  ]);
  assert.equal(l.blockBytes(), (2 + 2 + 1) * 4096);
  assert.equal(l.dataBytes, 1 + 1 + 2 + 2 * 4096 + 1);
  assert.equal(new SpanList().blockBytes(), 0);
  assert.equal(SpanList.from([{ offset: 0, length: 1 }]).blockBytes(512), 512);
  });
});
