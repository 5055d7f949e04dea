// Tests for outer-tar-reader.ts against real GNU tar: the Qubes-made fixtures, pax/GNU long names,
// global headers, odd chunk sizes, and every corruption/limit error.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { OuterTarReader } from '../../../src/main/tar/outer-tar-reader.js';
import { OuterTarWriter } from '../../../src/main/tar/outer-tar-writer.js';
import { BLOCK, paxRecord, sealHeader, writeBytes, writeOctal } from '../../../src/main/tar/tar-header.js';
import { fixtureArchives, mkTmp, rejectsWith, rmTmp, run } from './tar-test-helpers.js';

interface Read {
  name: string;
  typeflag: string;
  data: Buffer;
}

/** Read every member (data copied into exact-size buffers). */
async function readAll(source: Readable, maxMemberBytes?: number): Promise<Read[]> {
  const r = new OuterTarReader(source, maxMemberBytes === undefined ? {} : { maxMemberBytes });
  const out: Read[] = [];
  for (let e = await r.next(); e; e = await r.next()) {
    const data = Buffer.alloc(e.size);
    await e.readInto(data);
    out.push({ name: e.untrustedName, typeflag: e.typeflag, data });
  }
  return out;
}

/** A Readable yielding `buf` in chunks of `size` bytes. */
function chunked(buf: Buffer, size: number): Readable {
  const parts: Buffer[] = [];
  for (let i = 0; i < buf.length; i += size) parts.push(buf.subarray(i, i + size));
  return Readable.from(parts);
}

describe('fixtures: member list and bytes equal GNU tar -i', () => {
  let tmp = '';
  before(() => {
    tmp = mkTmp();
  });
  after(() => rmTmp(tmp));

  const archives = fixtureArchives();
  it('fixtures are present', (t) => {
    if (archives.length === 0) t.skip('no fixtures on this machine');
    else assert.ok(archives.length >= 9);
  });
  for (const file of archives) {
    it(path.basename(file), async () => {
      const names = run('tar', ['-i', '-tf', file]).toString().trim().split('\n');
      const out = path.join(tmp, path.basename(file));
      fs.mkdirSync(out);
      run('tar', ['-i', '-xf', file, '-C', out]);
      // Two chunkings: the fs default and an odd size that splits headers and data.
      for (const source of [fs.createReadStream(file), fs.createReadStream(file, { highWaterMark: 777 })]) {
        const r = new OuterTarReader(source);
        const got: string[] = [];
        for (let e = await r.next(); e; e = await r.next()) {
          got.push(e.untrustedName);
          assert.equal(e.typeflag, '0');
          if (got.length % 2 === 0) {
            await e.skip();
            continue;
          }
          const data = new Uint8Array(e.size + 3); // larger than needed: only [0, size) is written
          await e.readInto(data);
          const expected = fs.readFileSync(path.join(out, e.untrustedName));
          assert.ok(Buffer.from(data.buffer, 0, e.size).equals(expected), e.untrustedName);
        }
        assert.deepEqual(got, names);
        assert.equal(r.bytesRead, fs.statSync(file).size);
      }
    });
  }
});

describe('names written by GNU tar and by our writer', () => {
  let dir = '';
  const longComponent = `${'L'.repeat(120)}.img`; // a component > 100 bytes: no ustar split possible
  before(() => {
    dir = mkTmp();
    fs.mkdirSync(path.join(dir, 'src/vm3'), { recursive: true });
    fs.writeFileSync(path.join(dir, 'src/vm3', longComponent), randomBytes(3000));
    fs.writeFileSync(path.join(dir, 'src/short'), 'hello');
  });
  after(() => rmTmp(dir));

  for (const format of ['posix', 'gnu', 'ustar-prefix']) {
    it(`${format}: long names come out whole`, async () => {
      const name = `vm3/${longComponent}`;
      let archive: Buffer;
      if (format === 'ustar-prefix') {
        const prefixName = `${'d'.repeat(140)}/${'f'.repeat(90)}`;
        const chunks: Buffer[] = [];
        const w = new OuterTarWriter({ description: 'mem', write: async (d) => void chunks.push(Buffer.from(d)), commit: async () => {}, abort: async () => {} });
        await w.addMember(prefixName, [Buffer.from('abc')]);
        archive = Buffer.concat(chunks);
        const got = await readAll(chunked(archive, 100));
        assert.deepEqual(got.map((g) => g.name), [prefixName]);
        assert.equal(got[0]?.data.toString(), 'abc');
        return;
      }
      // Two archives back to back, with the global header variant in the posix one.
      const extra = format === 'posix' ? ['--pax-option', 'comment:=global comment'] : [];
      archive = Buffer.concat([
        run('tar', ['-c', `--format=${format}`, ...extra, '-C', path.join(dir, 'src'), name]),
        run('tar', ['-c', `--format=${format}`, '-C', path.join(dir, 'src'), 'short']),
      ]);
      if (format === 'posix') assert.ok(archive.includes('comment=global comment'), 'tar wrote a global header');
      const got = await readAll(chunked(archive, 4096));
      assert.deepEqual(got.map((g) => g.name), [name, 'short']);
      assert.ok(got[0]?.data.equals(fs.readFileSync(path.join(dir, 'src', name))));
      assert.equal(got[1]?.data.toString(), 'hello');
    });
  }

  it('a directory member has no data (like GNU tar)', async () => {
    const archive = run('tar', ['-c', '--format=gnu', '-C', path.join(dir, 'src'), 'vm3']);
    const got = await readAll(Readable.from([archive]));
    assert.deepEqual(got.map((g) => [g.name, g.typeflag, g.data.length]), [['vm3/', '5', 0], [`vm3/${longComponent}`, '0', 3000]]);
  });
});

/** A hand-made header block (GNU tar style numbers) for crafted archives. */
function header(name: string, size: number, type: string): Buffer {
  const h = Buffer.alloc(BLOCK);
  writeBytes(h, 'name', Buffer.from(name));
  writeOctal(h, 'mode', 0o644);
  writeOctal(h, 'size', size);
  h[156] = type.charCodeAt(0);
  writeBytes(h, 'magic', Buffer.from('ustar\0'));
  writeBytes(h, 'version', Buffer.from('00'));
  sealHeader(h);
  return h;
}
const pad = (b: Buffer): Buffer => Buffer.concat([b, Buffer.alloc((BLOCK - (b.length % BLOCK)) % BLOCK)]);
const member = (name: string, data: Buffer, type = '0'): Buffer => Buffer.concat([header(name, data.length, type), pad(data)]);

describe('crafted archives', () => {
  it('pax size and path records override the ustar fields; zero blocks anywhere are skipped', async () => {
    const pax = Buffer.from(paxRecord('path', 'real/name') + paxRecord('size', '5') + paxRecord('mtime', '1.5'));
    const archive = Buffer.concat([
      Buffer.alloc(BLOCK * 3),
      member('PaxHeaders/x', pax, 'x'),
      header('ustar-name', 0, '0'),
      pad(Buffer.from('12345')),
      Buffer.alloc(BLOCK * 2),
      member('second', Buffer.from('zz')),
    ]);
    const got = await readAll(chunked(archive, 300));
    assert.deepEqual(got.map((g) => [g.name, g.data.toString()]), [['real/name', '12345'], ['second', 'zz']]);
  });

  it('readHead: the first bytes now, before the rest has come; readInto then fills dst whole, skip skips the rest', async () => {
    const a = randomBytes(10_000);
    const c = randomBytes(3000);
    const archive = Buffer.concat([member('a', a), member('b', Buffer.from('short')), member('c', c), member('d', Buffer.from('dd')), Buffer.alloc(BLOCK * 2)]);
    const source = new PassThrough();
    const r = new OuterTarReader(source);
    source.write(archive.subarray(0, BLOCK + 200)); // the header and 200 bytes of a's data
    const e = (await r.next())!;
    const head = await e.readHead(128); // resolves although the rest has not come
    assert.deepEqual(Buffer.from(head), a.subarray(0, 128));
    head.fill(0); // a copy: what readInto writes does not depend on it
    const dst = Buffer.alloc(e.size);
    let done = false;
    const reading = e.readInto(dst).then(() => (done = true));
    await new Promise((res) => setImmediate(res));
    assert.equal(done, false, 'the rest has not come yet');
    source.end(archive.subarray(BLOCK + 200));
    await reading;
    assert.deepEqual(dst, a);
    // a member shorter than asked: all of it; readInto still fills dst
    const b = (await r.next())!;
    assert.equal(Buffer.from(await b.readHead(128)).toString(), 'short');
    const small = Buffer.alloc(b.size);
    await b.readInto(small);
    assert.equal(small.toString(), 'short');
    // skip after readHead: the next member is where it should be
    const cm = (await r.next())!;
    assert.deepEqual(Buffer.from(await cm.readHead(100)), c.subarray(0, 100));
    await assert.rejects(cm.readHead(1), /already read/);
    await cm.skip();
    const d = (await r.next())!;
    assert.equal(d.untrustedName, 'd');
    const dd = Buffer.alloc(2);
    await d.readInto(dd);
    assert.equal(dd.toString(), 'dd');
    assert.equal(await r.next(), null);
  });

  it('ERR_CORRUPT with the offset for a bad checksum', async () => {
    const archive = Buffer.concat([member('a', Buffer.from('x')), member('b', Buffer.from('y'))]);
    archive[1024 + 5] = 0x7a; // second header, inside its name ("b" -> "bz")
    const e = await rejectsWith(readAll(chunked(archive, 100)), 'ERR_CORRUPT', /checksum at offset 1024/);
    assert.equal(e.context['offset'], 1024);
  });

  it('ERR_CORRUPT "archive truncated in <name>" inside data, and inside a header', async () => {
    const archive = member('vm3/private.img.000', randomBytes(2000));
    await rejectsWith(readAll(Readable.from([archive.subarray(0, 1500)])), 'ERR_CORRUPT', /archive truncated in vm3\/private\.img\.000/);
    await rejectsWith(readAll(Readable.from([archive.subarray(0, 2100)])), 'ERR_CORRUPT', /archive truncated in vm3\/private\.img\.000/);
    await rejectsWith(readAll(Readable.from([archive.subarray(0, 300)])), 'ERR_CORRUPT', /truncated in the header at offset 0/);
    const pax = member('x', Buffer.from(paxRecord('path', 'p')), 'x');
    await rejectsWith(readAll(Readable.from([pax])), 'ERR_CORRUPT', /truncated after an extended header/);
  });

  it('truncated and corrupted fixture archives give ERR_CORRUPT', async (t) => {
    const file = fixtureArchives()[0];
    if (!file) return t.skip('no fixtures');
    const buf = fs.readFileSync(file);
    await rejectsWith(readAll(Readable.from([buf.subarray(0, 10240 + 1536 + 100)])), 'ERR_CORRUPT', /archive truncated in /);
    const bad = Buffer.from(buf);
    bad[10240 + 1024 + 124] = 0x37; // size field of the second member's ustar header
    await rejectsWith(readAll(Readable.from([bad])), 'ERR_CORRUPT', /checksum at offset 11264/);
  });

  it('ERR_TOO_LARGE when a member exceeds maxMemberBytes', async () => {
    const archive = member('big', Buffer.alloc(4096));
    await rejectsWith(readAll(Readable.from([archive]), 4095), 'ERR_TOO_LARGE', /big/);
    assert.equal((await readAll(Readable.from([archive]), 4096)).length, 1);
  });

  it('rejects NUL in names (pax path and GNU long name) and malformed pax data', async () => {
    const nulPax = member('x', Buffer.from(paxRecord('path', 'a\0b')), 'x');
    await rejectsWith(readAll(Readable.from([Buffer.concat([nulPax, member('f', Buffer.from('1'))])])), 'ERR_UNSAFE_NAME', /NUL/);
    const nulL = member('././@LongLink', Buffer.from('a\0b\0'), 'L');
    await rejectsWith(readAll(Readable.from([Buffer.concat([nulL, member('f', Buffer.from('1'))])])), 'ERR_UNSAFE_NAME', /NUL/);
    const badPax = member('x', Buffer.from('99 path=x\n'), 'x');
    await rejectsWith(readAll(Readable.from([Buffer.concat([badPax, member('f', Buffer.from('1'))])])), 'ERR_CORRUPT', /pax/);
  });

  it('next() before the previous entry was consumed is a programming error', async () => {
    const r = new OuterTarReader(Readable.from([Buffer.concat([member('a', Buffer.from('1')), member('b', Buffer.from('2'))])]));
    const e = await r.next();
    assert.ok(e);
    await rejectsWith(r.next(), 'ERR_INTERNAL');
    await e.skip();
    assert.equal((await r.next())?.untrustedName, 'b');
  });

  it('source errors become ERR_IO', async () => {
    const src = new Readable({ read() {} });
    src.push(member('a', Buffer.from('1')).subarray(0, 100));
    setImmediate(() => src.destroy(new Error('disk on fire')));
    await rejectsWith(readAll(src), 'ERR_IO', /disk on fire/);
  });
});
