// Tests for byte-input.ts: a regular file read in place (FileInput) gives the outer tar reader
// exactly what the stream path gives, into shared memory too; skipped data is not read but a skip
// past the end is still a truncation; a closed input fails its next read.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { FileInput, type ByteInput } from '../../../src/main/tar/byte-input.js';
import { OuterTarReader } from '../../../src/main/tar/outer-tar-reader.js';
import { fixtureArchives, mkTmp, rejectsWith, rmTmp, run } from './tar-test-helpers.js';

interface Read {
  name: string;
  data: Buffer | null;
}

/** Every member; data read into a SharedArrayBuffer view, or skipped when `skip(name)`. */
async function readAll(input: ByteInput | fs.ReadStream, skip: (name: string) => boolean = () => false): Promise<Read[]> {
  const r = new OuterTarReader(input);
  const out: Read[] = [];
  try {
    for (let e = await r.next(); e; e = await r.next()) {
      if (skip(e.untrustedName)) {
        await e.skip();
        out.push({ name: e.untrustedName, data: null });
        continue;
      }
      const shared = new Uint8Array(new SharedArrayBuffer(e.size + 64), 64, e.size);
      await e.readInto(shared);
      out.push({ name: e.untrustedName, data: Buffer.from(shared) });
    }
  } finally {
    await r.close();
  }
  return out;
}

const fileInput = async (file: string): Promise<FileInput> => new FileInput(await fsp.open(file, 'r'));

describe('FileInput', () => {
  let tmp = '';
  let archive = '';
  const big = randomBytes(3 * 1024 * 1024 + 17);
  before(() => {
    tmp = mkTmp();
    fs.mkdirSync(path.join(tmp, 'in'));
    fs.writeFileSync(path.join(tmp, 'in', 'a.000'), big);
    fs.writeFileSync(path.join(tmp, 'in', 'b.000'), 'second member\n');
    archive = path.join(tmp, 'x.tar');
    run('tar', ['--posix', '-cf', archive, '-C', path.join(tmp, 'in'), 'a.000', 'b.000']);
  });
  after(() => rmTmp(tmp));

  it('reads what the stream path reads (fixtures and a multi-MiB member), into shared memory', async (t) => {
    const files = [archive, ...fixtureArchives()];
    if (files.length === 1) t.diagnostic('no Qubes-made fixtures on this machine');
    for (const file of files) {
      const viaFile = await readAll(await fileInput(file));
      const viaStream = await readAll(fs.createReadStream(file, { highWaterMark: 4093 }));
      assert.deepEqual(viaFile, viaStream, file);
      assert.ok(viaFile.length >= 2, file);
    }
    const mine = await readAll(await fileInput(archive));
    assert.ok(mine[0]!.data!.equals(big));
  });

  it('skips data without reading it; the next header is found after it', async () => {
    const got = await readAll(await fileInput(archive), (n) => n === 'a.000');
    assert.deepEqual(got.map((g) => [g.name, g.data?.toString()]), [['a.000', undefined], ['b.000', 'second member\n']]);
  });

  it('a file cut inside data is "archive truncated" whether the data is read or skipped', async () => {
    const cut = path.join(tmp, 'cut.tar');
    fs.writeFileSync(cut, fs.readFileSync(archive).subarray(0, 2 * 1024 * 1024));
    await rejectsWith(readAll(await fileInput(cut)), 'ERR_CORRUPT', /archive truncated in a\.000/);
    await rejectsWith(readAll(await fileInput(cut), () => true), 'ERR_CORRUPT', /archive truncated in a\.000/);
  });

  it('a skip sees a file that grew after it was opened (a copy still being written)', async () => {
    const growing = path.join(tmp, 'growing.tar');
    const whole = fs.readFileSync(archive);
    fs.writeFileSync(growing, whole.subarray(0, 4096));
    const input = await fileInput(growing);
    const r = new OuterTarReader(input);
    const first = await r.next();
    assert.equal(first?.untrustedName, 'a.000');
    fs.writeFileSync(growing, whole);
    await first!.skip();
    assert.equal((await r.next())?.untrustedName, 'b.000');
    await r.close();
  });

  it('after close() the next read fails (ERR_IO), nothing hangs', async () => {
    const input = await fileInput(archive);
    const r = new OuterTarReader(input);
    const first = await r.next();
    await input.close();
    await rejectsWith(first!.readInto(Buffer.alloc(first!.size)), 'ERR_IO', /interrupted/);
  });
  it('close() gives up a read that never ends (a dead mount): the take fails at once', { timeout: 10_000 }, async () => {
    // a file handle whose read never returns, as on a mount whose server is gone
    let closed = false;
    const stuck = { read: () => new Promise(() => {}), close: async () => void (closed = true), stat: async () => ({ size: 1 << 20 }) } as unknown as fsp.FileHandle;
    const input = new FileInput(stuck);
    const take = input.take(Buffer.alloc(4096), 0, 4096);
    await new Promise((res) => setTimeout(res, 20));
    await input.close();
    await rejectsWith(take, 'ERR_IO', /interrupted/);
    assert.equal(closed, true);
  });
});
