// Tests for the GNU tar multi-volume drivers with real tar 1.34: a sparse image over 4+ volumes of
// 1 MiB, round trips repeated to catch FIFO races, truncated sets, failures and cancellation.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { after, afterEach, before, describe, it } from 'node:test';
import { loadSpawner } from '../../../src/main/io/spawn.js';
import { tarCreateMultiVolume, tarExtractMultiVolume } from '../../../src/main/tar/gnu-tar.js';
import { allocatedBytes, makeSparseFile, mkTmp, rejectsWith, rmTmp, sameFile } from './tar-test-helpers.js';

// the code under test starts processes: the entry points load execa first, so does this file
before(loadSpawner);

const MiB = 1024 * 1024;
const TAPE_KIB = 1024;
const VOLUME_BYTES = 1_054_720; // 1024 KiB rounded up to whole 10240-byte records (LIMITS §4a)

async function readVolume(s: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of s) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

/** Fails the test instead of hanging forever. */
function within<T>(ms: number, p: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no result after ${ms} ms (hang)`)), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

describe('GNU tar multi-volume through FIFOs', () => {
  let dir = '';
  let src = '';
  let savedTmp: string | undefined;
  let fifoTmp = '';
  before(() => {
    dir = mkTmp();
    src = path.join(dir, 'src');
    fs.mkdirSync(src);
    // 64 MiB apparent, ~5 MiB of data in runs that cross the 1 MiB volume boundaries.
    makeSparseFile(path.join(src, 'private.img'), 64, [
      [0, 700 * 1024],
      [3 * MiB - 4096, 1536 * 1024],
      [20 * MiB + 512, MiB],
      [40 * MiB, 1200 * 1024],
      [64 * MiB - 900 * 1024, 900 * 1024],
    ]);
    // FIFO dirs go to os.tmpdir(): point it at a private dir so leftovers can be checked.
    savedTmp = process.env['TMPDIR'];
    fifoTmp = path.join(dir, 'tmp');
    fs.mkdirSync(fifoTmp);
    process.env['TMPDIR'] = fifoTmp;
  });
  after(() => {
    if (savedTmp === undefined) delete process.env['TMPDIR'];
    else process.env['TMPDIR'] = savedTmp;
    rmTmp(dir);
  });
  afterEach(() => {
    assert.deepEqual(fs.readdirSync(fifoTmp), [], 'FIFO directories removed');
  });

  const create = (extra: Partial<Parameters<typeof tarCreateMultiVolume>[0]> = {}): AsyncGenerator<Readable, void, undefined> =>
    tarCreateMultiVolume({ dir: src, name: 'private.img', archiveName: 'vm3/private.img', tapeLengthKiB: TAPE_KIB, ...extra });

  async function createAll(): Promise<Buffer[]> {
    const vols: Buffer[] = [];
    for await (const v of create()) vols.push(await readVolume(v));
    return vols;
  }

  it('creates 4+ volumes of tape-length size and extracts them volume by volume (sparse kept)', async () => {
    const vols = await within(30_000, createAll(), 'create');
    assert.ok(vols.length >= 4, `${vols.length} volumes`);
    for (const v of vols.slice(0, -1)) assert.equal(v.length, VOLUME_BYTES);
    assert.ok((vols.at(-1)?.length ?? 0) <= VOLUME_BYTES);
    assert.equal(vols[1]?.[156], 'M'.charCodeAt(0), 'continuation volumes start with an M header');

    const out = path.join(dir, 'out0');
    fs.mkdirSync(out);
    const x = tarExtractMultiVolume({ dir: out, members: ['vm3/private.img'] });
    for (const v of vols) await within(20_000, x.feedVolume([v.subarray(0, 1000), v.subarray(1000)]), 'feed');
    await within(20_000, x.finish(), 'finish');
    const got = path.join(out, 'vm3/private.img');
    assert.ok(sameFile(got, path.join(src, 'private.img')));
    assert.ok(allocatedBytes(got) < 8 * MiB, `holes kept: ${allocatedBytes(got)} bytes allocated`);
  });

  it('10 round trips in a row, alternating batch and pipelined (create feeds extract directly)', async () => {
    for (let i = 0; i < 10; i++) {
      const out = path.join(dir, `loop${i}`);
      fs.mkdirSync(out);
      const x = tarExtractMultiVolume({ dir: out, members: ['vm3/private.img'] });
      let count = 0;
      if (i % 2 === 0) {
        for (const v of await within(30_000, createAll(), `create ${i}`)) {
          await within(20_000, x.feedVolume([v]), `feed ${i}`);
          count++;
        }
      } else {
        for await (const v of create()) {
          await within(20_000, x.feedVolume([await readVolume(v)]), `feed ${i}`);
          count++;
        }
      }
      await within(20_000, x.finish(), `finish ${i}`);
      assert.ok(count >= 4);
      assert.ok(sameFile(path.join(out, 'vm3/private.img'), path.join(src, 'private.img')), `round ${i}`);
      rmTmp(out);
    }
  });

  it('listOnly lists the member; a truncated set ends in ERR_TAR_FAILED, not a hang', async () => {
    const vols = await createAll();
    const l = tarExtractMultiVolume({ dir, members: [], listOnly: true });
    for (const v of vols) await l.feedVolume([v]);
    await l.finish();
    assert.deepEqual(await l.listing, ['vm3/private.img']);

    const out = path.join(dir, 'trunc');
    fs.mkdirSync(out);
    const x = tarExtractMultiVolume({ dir: out, members: ['vm3/private.img'] });
    await x.feedVolume([vols[0] ?? Buffer.alloc(0)]);
    await x.feedVolume([vols[1] ?? Buffer.alloc(0)]);
    await within(15_000, rejectsWith(x.finish(), 'ERR_TAR_FAILED', /exit 2/), 'finish of a truncated set');
  });

  it('a volume that is not the next one fails (ERR_TAR_FAILED), never hangs', async () => {
    const vols = await createAll();
    fs.mkdirSync(path.join(dir, 'wrong'));
    const x = tarExtractMultiVolume({ dir: path.join(dir, 'wrong'), members: [] });
    const run = async (): Promise<void> => {
      await x.feedVolume([vols[0] ?? Buffer.alloc(0)]);
      await x.feedVolume([vols[2] ?? Buffer.alloc(0)]); // skips volume 2
      for (const v of vols.slice(3)) await x.feedVolume([v]);
      await x.finish();
    };
    await within(20_000, rejectsWith(run, 'ERR_TAR_FAILED'), 'out-of-order volumes');
    await x.abort();
  });

  it('garbage instead of a volume: ERR_TAR_FAILED', async () => {
    const x = tarExtractMultiVolume({ dir, members: [] });
    const run = async (): Promise<void> => {
      await x.feedVolume([Buffer.alloc(20480, 0x41)]);
      await x.finish();
    };
    await within(15_000, rejectsWith(run, 'ERR_TAR_FAILED', /does not look like a tar archive|Skipping|exit 2/), 'garbage');
  });

  it('a missing source: the iteration throws ERR_TAR_FAILED', async () => {
    const run = async (): Promise<void> => {
      for await (const v of create({ name: 'missing.img' })) await readVolume(v);
    };
    await within(15_000, rejectsWith(run, 'ERR_TAR_FAILED', /missing\.img: Cannot stat/), 'missing source');
  });

  it('stopping the iteration early kills tar and cleans up', async () => {
    let n = 0;
    for await (const v of create()) {
      await readVolume(v);
      if (++n === 2) break;
    }
    assert.equal(n, 2);
  });

  it('AbortSignal cancels creation (ERR_CANCELLED) and extraction', async () => {
    const ac = new AbortController();
    const run = async (): Promise<void> => {
      for await (const v of create({ signal: ac.signal })) {
        await readVolume(v);
        ac.abort();
      }
    };
    await within(15_000, rejectsWith(run, 'ERR_CANCELLED'), 'cancel create');

    const vols = await createAll();
    const ac2 = new AbortController();
    fs.mkdirSync(path.join(dir, 'cancel'));
    const x = tarExtractMultiVolume({ dir: path.join(dir, 'cancel'), members: [], signal: ac2.signal });
    await x.feedVolume([vols[0] ?? Buffer.alloc(0)]);
    ac2.abort();
    await within(15_000, rejectsWith(x.feedVolume([vols[1] ?? Buffer.alloc(0)]), 'ERR_CANCELLED'), 'cancel extract');
    await x.abort();
  });
});
