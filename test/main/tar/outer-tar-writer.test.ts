// Tests for outer-tar-writer.ts: byte-for-byte equality with `tar -cO --posix` (GNU tar 1.34) and
// archives that real `tar -i` lists and extracts, plus name and size rules.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Sink } from '../../../src/main/io/sink.js';
import {
  OUTER_HEAD_BYTES,
  OuterTarWriter,
  outerMemberBytes,
  outerMemberHead,
  outerMemberTail,
  splitUstarName,
} from '../../../src/main/tar/outer-tar-writer.js';
import { mkTmp, rejectsWith, rmTmp, run } from './tar-test-helpers.js';

/** A Sink collecting into memory, optionally slow, recording the order of writes. */
function memorySink(delayMs = 0): Sink & { chunks: Buffer[]; bytes(): Buffer } {
  const chunks: Buffer[] = [];
  return {
    description: 'memory',
    chunks,
    bytes: () => Buffer.concat(chunks),
    async write(d) {
      if (delayMs) await new Promise((r) => setTimeout(r, delayMs));
      chunks.push(Buffer.from(d));
    },
    async commit() {},
    async abort() {},
  };
}

const userName = (): string => run('id', ['-un']).toString().trim();
const groupName = (): string => run('id', ['-gn']).toString().trim();

/** `tar -cO --posix -C dir rel` and the head/tail we produce for the same file from its stat. */
function tarVsOurs(dir: string, rel: string): { theirs: Buffer; ours: Buffer } {
  const st = fs.statSync(path.join(dir, rel), { bigint: true });
  const t = (ns: bigint): { sec: number; nsec: number } => ({ sec: Number(ns / 1_000_000_000n), nsec: Number(ns % 1_000_000_000n) });
  const theirs = run('tar', ['-cO', '--posix', '-C', dir, rel]);
  const data = fs.readFileSync(path.join(dir, rel));
  const head = outerMemberHead(rel, data.length, {
    mtimeSec: t(st.mtimeNs),
    atimeSec: t(st.atimeNs),
    ctimeSec: t(st.ctimeNs),
    mode: Number(st.mode & 0o7777n),
    uid: Number(st.uid),
    gid: Number(st.gid),
    uname: userName(),
    gname: groupName(),
  });
  return { theirs, ours: Buffer.concat([head, data, outerMemberTail(data.length)]) };
}

describe('outer member bytes equal `tar -cO --posix`', () => {
  let dir = '';
  before(() => {
    dir = mkTmp();
  });
  after(() => rmTmp(dir));

  const cases: [string, number, number][] = [
    // name, size, mtime (seconds; fractions produce a pax mtime record like GNU tar's)
    ['vm3/backup-header', 10, 1_700_000_000],
    ['backup-header', 10, 1_700_000_000.25],
    ['vm12/private.img.000.enc', 10240, 1_795_675_960.650435],
    ['qubes.xml.000', 512, 1_600_000_000],
    ['empty', 0, 1_600_000_001],
    [`d/${'n'.repeat(98)}`, 700, 1_650_000_000], // exactly 100 bytes: still the plain name field
    [`${'p'.repeat(60)}/${'q'.repeat(39)}`, 20000, 1_650_000_000.5],
  ];
  for (const [rel, size, mtime] of cases) {
    it(`${rel.length > 30 ? `${rel.slice(0, 30)}…` : rel} (${size} bytes)`, () => {
      fs.mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true });
      fs.writeFileSync(path.join(dir, rel), randomBytes(size));
      fs.utimesSync(path.join(dir, rel), mtime, mtime);
      const { theirs, ours } = tarVsOurs(dir, rel);
      assert.equal(ours.length, theirs.length);
      assert.equal(ours.length, outerMemberBytes(size));
      assert.ok(ours.equals(theirs), `bytes differ at ${ours.findIndex((b, i) => b !== theirs[i])}`);
    });
  }

  it('a 10-byte file becomes a 10240-byte piece; head is 1536 bytes', () => {
    assert.equal(outerMemberBytes(10), 10240);
    assert.equal(outerMemberHead('backup-header', 10, { mtimeSec: 1 }).length, OUTER_HEAD_BYTES);
    assert.equal(OUTER_HEAD_BYTES + 10 + outerMemberTail(10).length, 10240);
    // 10240 - 1536 - 1024 = 7680 bytes of data still fit one record, 7681 need two.
    assert.equal(outerMemberBytes(7680), 10240);
    assert.equal(outerMemberBytes(7681), 20480);
    assert.equal(outerMemberBytes(104_857_600), Math.ceil((1536 + 104_857_600 + 1024) / 10240) * 10240);
  });
});

describe('OuterTarWriter output read by real GNU tar', () => {
  it('tar -i -tvf lists and tar -i -xf extracts every member with identical content', async () => {
    const dir = mkTmp();
    try {
      const sink = memorySink(1);
      const w = new OuterTarWriter(sink, { mtimeSec: 1_700_000_000 });
      const longName = `${'vm-long-directory-name/'.repeat(5)}${'x'.repeat(90)}.000.enc`; // needs the prefix split
      const members: [string, Buffer[]][] = [
        ['backup-header', [Buffer.from('version=4\n')]],
        ['qubes.xml.000.enc', [randomBytes(512)]],
        ['vm3/private.img.000.enc', [randomBytes(5000), randomBytes(0), randomBytes(7000)]],
        ['vm3/private.img.001.enc', [randomBytes(10240 * 3)]],
        ['vm3/empty.000.enc', []],
        [longName, [randomBytes(1)]],
      ];
      // Started together: the writer must keep them in call order.
      await Promise.all(members.map(([n, parts]) => w.addMember(n, parts)));
      const archive = sink.bytes();
      assert.equal(w.bytesWritten, archive.length);
      assert.equal(archive.length, members.reduce((n, [, p]) => n + outerMemberBytes(Buffer.concat(p).length), 0));
      const file = path.join(dir, 'backup.bin');
      fs.writeFileSync(file, archive);

      const listing = run('tar', ['-i', '-tvf', file]).toString().trim().split('\n');
      assert.equal(listing.length, members.length);
      for (const [i, line] of listing.entries()) {
        const [name, parts] = members[i] ?? ['', []];
        assert.ok(line.endsWith(` ${name}`), `${line} vs ${name}`);
        assert.match(line, new RegExp(`^-rw-r--r-- root/root +${Buffer.concat(parts).length} 2023-11-1`));
      }
      assert.deepEqual(run('tar', ['-i', '-tf', file]).toString().trim().split('\n'), members.map(([n]) => n));
      const out = path.join(dir, 'out');
      fs.mkdirSync(out);
      run('tar', ['-i', '-xf', file, '-C', out]);
      for (const [name, parts] of members) assert.ok(fs.readFileSync(path.join(out, name)).equals(Buffer.concat(parts)), name);
    } finally {
      rmTmp(dir);
    }
  });

  it('rejects a size that does not match the parts', async () => {
    const w = new OuterTarWriter(memorySink());
    await rejectsWith(w.addMember('a', [Buffer.alloc(3)], 4), 'ERR_INTERNAL');
  });

  it('a member written from pieces as they come has the bytes of the same member written whole, each write timed', async () => {
    const data = randomBytes(70_001);
    async function* pieces(): AsyncGenerator<Uint8Array> {
      for (let off = 0; off < data.length; off += 9000) {
        await new Promise((r) => setImmediate(r));
        yield data.subarray(off, off + 9000);
      }
    }
    const whole = memorySink();
    await new OuterTarWriter(whole, { mtimeSec: 7 }).addMember('vm1/private.img.000.enc', [data]);
    const streamed = memorySink();
    let timed = 0;
    const w = new OuterTarWriter(streamed, { mtimeSec: 7 });
    await w.addMemberStream('vm1/private.img.000.enc', data.length, pieces(), () => {
      timed++;
      return () => undefined;
    });
    assert.ok(streamed.bytes().equals(whole.bytes()));
    assert.equal(timed, Math.ceil(data.length / 9000) + 2, 'each piece, the header and the padding');
    assert.equal(w.bytesWritten, whole.bytes().length);
  });

  it('a streamed piece larger than 1 MiB is written (and told) in writes of at most 1 MiB', async () => {
    const data = randomBytes(3.5 * 1024 * 1024);
    async function* one(): AsyncGenerator<Uint8Array> {
      yield data;
    }
    const sink = memorySink();
    const sizes: number[] = [];
    const w = new OuterTarWriter(sink, { mtimeSec: 7 });
    let before = 0;
    await w.addMemberStream('vm1/private.img.000.enc', data.length, one(), () => {
      before = w.bytesWritten;
      return () => sizes.push(w.bytesWritten - before);
    });
    assert.deepEqual(sizes.slice(1, -1), [1048576, 1048576, 1048576, 524288], 'the data in 1 MiB writes, each told');
    const whole = memorySink();
    await new OuterTarWriter(whole, { mtimeSec: 7 }).addMember('vm1/private.img.000.enc', [data]);
    assert.ok(sink.bytes().equals(whole.bytes()));
  });

  it('a streamed member whose pieces hold fewer or more bytes than its size fails', async () => {
    async function* pieces(n: number): AsyncGenerator<Uint8Array> {
      yield Buffer.alloc(n);
    }
    await rejectsWith(new OuterTarWriter(memorySink()).addMemberStream('a', 10, pieces(9)), 'ERR_INTERNAL', /held 9 bytes/);
    await rejectsWith(new OuterTarWriter(memorySink()).addMemberStream('a', 10, pieces(11)), 'ERR_INTERNAL', /held more bytes/);
  });
});

describe('outer member names', () => {
  it('splits long names at a slash into prefix (≤155) and name (≤100)', () => {
    const long = `${'a'.repeat(150)}/${'b'.repeat(100)}`;
    const s = splitUstarName(long);
    assert.equal(s.prefix.toString(), 'a'.repeat(150));
    assert.equal(s.name.toString(), 'b'.repeat(100));
    assert.equal(splitUstarName('vm3/private.img.000').prefix.length, 0);
  });

  const bad: [string, string][] = [
    ['x'.repeat(101), 'no slash to split at'],
    [`${'a'.repeat(156)}/b`, 'prefix too long'],
    [`a/${'b'.repeat(101)}`, 'last component too long'],
    ['../etc/passwd', 'dot-dot'],
    ['/abs', 'absolute'],
    ['a//b', 'empty component'],
    ['./a', 'dot component'],
    ['dir/', 'trailing slash'],
    ['a\0b', 'NUL'],
    ['', 'empty'],
  ];
  for (const [name, why] of bad) {
    it(`ERR_UNSAFE_NAME: ${why}`, () => {
      assert.throws(() => outerMemberHead(name, 1, { mtimeSec: 0 }), (e: { code?: string }) => e.code === 'ERR_UNSAFE_NAME');
    });
  }

  it('ERR_TOO_LARGE beyond the 11-digit octal size field', () => {
    assert.throws(() => outerMemberHead('big', 0o100000000000, { mtimeSec: 0 }), (e: { code?: string }) => e.code === 'ERR_TOO_LARGE');
  });
});
