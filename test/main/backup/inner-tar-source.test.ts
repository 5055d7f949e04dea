// The in-process inner archive of a regular file must be byte for byte what `tar -Pc --sparse`
// writes for it (regular, empty, sparse maps of every shape incl. extension blocks, sizes and offsets
// past 8 GiB in base-256, other owners); everything else falls back to GNU tar (null); a file that
// shrinks or changes while read fails with ERR_IO; the map helper's failures fall back; an early stop
// or an abort closes the file and returns the read buffers only once no read is in flight.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadSpawner } from '../../../src/main/io/spawn.js';
import { openInnerTar, PROGRAM_READ_BYTES, ReadBuffers, READ_BYTES, type InnerTarSource } from '../../../src/main/backup/inner-tar-source.js';
import { HoleMapper, parseRuns } from '../../../src/main/io/hole-map.js';
import { makeSparseFile, mkTmp, rejectsWith, rmTmp, run } from '../tar/tar-test-helpers.js';
import { cmdline, descendants, waitFor } from '../../helpers/processes.js';

// the code under test starts processes: the entry points load execa first, so does this file
before(loadSpawner);

const MiB = 1024 * 1024;
let dir: string;
let mapper: HoleMapper;
const buffers = new ReadBuffers();
const never = new AbortController().signal;

function tarOf(name: string, archiveName: string, dereference = false): Buffer {
  return run('tar', ['-Pc', '--sparse', '--no-unquote', '-C', dir, ...(dereference ? ['--dereference'] : []), `--xform=s:^${name.replace(/\./g, '\\.')}:${archiveName}:`, '-f', '-', '--', name]);
}

async function bytesOf(src: InnerTarSource): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of src.stdout) parts.push(Buffer.from(c)); // views are reused: copy
  await src.done;
  return Buffer.concat(parts);
}

async function ours(name: string, o: { archiveName?: string; dereference?: boolean; mapper?: HoleMapper } = {}): Promise<InnerTarSource | null> {
  return openInnerTar({ dir, name, archiveName: o.archiveName ?? `vm1/${name}`, dereference: o.dereference ?? false }, { mapper: o.mapper ?? mapper, buffers, signal: never });
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

describe('in-process inner tar', () => {
  before(() => {
    dir = mkTmp();
    mapper = new HoleMapper();
    fs.writeFileSync(path.join(dir, 'regular.bin'), Buffer.alloc(1_000_003, 7).map((_, i) => (i * 31) & 0xff));
    fs.writeFileSync(path.join(dir, 'empty.bin'), '');
    fs.writeFileSync(path.join(dir, 'firewall.xml'), '<firewall/>\n', { mode: 0o600 });
    makeSparseFile(path.join(dir, 'hole-end.img'), 64, [[10 * MiB, 3 * MiB]]);
    makeSparseFile(path.join(dir, 'data-end.img'), 20, [[19 * MiB, MiB]]);
    makeSparseFile(path.join(dir, 'all-hole.img'), 5, []);
    // 3 runs + the closing entry fill the header exactly; 24 + 1 fill one extension block exactly
    makeSparseFile(path.join(dir, 'four.img'), 16, [0, 1, 2].map((i) => [i * 4 * MiB, 4096]));
    makeSparseFile(path.join(dir, 'twentyfive.img'), 100, Array.from({ length: 24 }, (_, i) => [i * 4 * MiB + 8192, 4096]));
    makeSparseFile(path.join(dir, 'many.img'), 200, Array.from({ length: 61 }, (_, i) => [i * 3 * MiB, 4096 * ((i % 3) + 1)]));
    // past 8 GiB: the real size and the offsets need GNU base-256
    makeSparseFile(path.join(dir, 'big.img'), 9 * 1024, [[8800 * MiB, 2 * MiB]]);
    fs.writeFileSync(path.join(dir, 'owned.txt'), 'hello');
    fs.chownSync(path.join(dir, 'owned.txt'), 12345, 23456); // no passwd entry: empty uname, as tar
    fs.symlinkSync('regular.bin', path.join(dir, 'link.img'));
    fs.mkdirSync(path.join(dir, 'subdir'));
    run('mkfifo', [path.join(dir, 'fifo')]);
  });
  after(async () => {
    await mapper.close();
    rmTmp(dir);
  });

  for (const name of ['regular.bin', 'empty.bin', 'firewall.xml', 'hole-end.img', 'data-end.img', 'all-hole.img', 'four.img', 'twentyfive.img', 'many.img', 'big.img', 'owned.txt']) {
    it(`${name}: the same bytes as GNU tar`, async () => {
      const src = await ours(name);
      assert.ok(src, 'made in-process');
      const mine = await bytesOf(src);
      const theirs = tarOf(name, `vm1/${name}`);
      assert.equal(mine.length, theirs.length);
      assert.equal(sha(mine), sha(theirs));
    });
  }

  it('with the larger buffers of a compression program: the same bytes, no view longer than a buffer, unusable sizes refused', async () => {
    const big = new ReadBuffers(PROGRAM_READ_BYTES);
    const P = PROGRAM_READ_BYTES;
    // data of exactly one read, one byte more or less, and runs that cross a read's end
    for (const [name, bytes] of [['p-exact.bin', P], ['p-less.bin', P - 1], ['p-more.bin', P + 1]] as const) fs.writeFileSync(path.join(dir, name), Buffer.alloc(bytes, 3).map((_, i) => (i * 7) & 0xff));
    makeSparseFile(path.join(dir, 'p-cross.img'), 26, [[MiB, P], [2 * P - 4096, 8192], [5 * P, P + 4096]]);
    for (const name of ['hole-end.img', 'many.img', 'regular.bin', 'p-exact.bin', 'p-less.bin', 'p-more.bin', 'p-cross.img']) {
      const src = await openInnerTar({ dir, name, archiveName: `vm1/${name}`, dereference: false }, { mapper, buffers: big, signal: never });
      assert.ok(src);
      const parts: Buffer[] = [];
      for await (const c of src.stdout) {
        assert.ok(c.length <= PROGRAM_READ_BYTES, `a view of ${c.length} bytes`);
        parts.push(Buffer.from(c));
      }
      await src.done;
      // hole-end.img has a 3 MiB run: one read, where 1 MiB buffers take three
      if (name === 'hole-end.img') assert.ok(parts.some((p) => p.length === 3 * MiB), 'a run read at once');
      assert.equal(sha(Buffer.concat(parts)), sha(tarOf(name, `vm1/${name}`)));
    }
    for (const bad of [0, 100, 1.5 * 512, -512]) assert.throws(() => new ReadBuffers(bad), RangeError);
  });

  it('follows a symlink only with dereference (as tar --dereference), else leaves it to GNU tar', async () => {
    assert.equal(await ours('link.img'), null);
    const src = await ours('link.img', { dereference: true });
    assert.ok(src);
    assert.equal(sha(await bytesOf(src)), sha(tarOf('link.img', 'vm1/link.img', true)));
  });

  it('leaves directories, FIFOs, missing files and long names to GNU tar', async () => {
    assert.equal(await ours('subdir'), null);
    assert.equal(await ours('fifo'), null);
    assert.equal(await ours('missing'), null);
    assert.equal(await ours('regular.bin', { archiveName: `vm1/${'x'.repeat(100)}` }), null);
    assert.equal(await ours('.'), null);
  });

  it('a file the plan saw as regular that is gone, a directory, a FIFO or a link now fails with ERR_IO (no GNU tar in its place)', async () => {
    const regular = (name: string, dereference = false): Promise<InnerTarSource | null> =>
      openInnerTar({ dir, name, archiveName: `vm1/${name}`, dereference, regular: true }, { mapper, buffers, signal: never });
    await rejectsWith(regular('missing'), 'ERR_IO', /missing: it disappeared since the backup was planned .*the backup stopped$/);
    await rejectsWith(regular('subdir'), 'ERR_IO', /subdir: it is no longer a regular file \(a directory\) since the backup was planned/);
    await rejectsWith(regular('fifo'), 'ERR_IO', /fifo: it is no longer a regular file \(a FIFO\)/);
    fs.symlinkSync('regular.bin', path.join(dir, 'now-a-link'));
    try {
      // followed (formats 3 and 4 follow links for the files they read in-process): the file it names
      const followed = await regular('now-a-link', true);
      assert.ok(followed !== null);
      await bytesOf(followed);
    } finally {
      fs.rmSync(path.join(dir, 'now-a-link'));
    }
  });

  it('says whether a file changed since the plan (its size or change time moved)', async () => {
    const file = path.join(dir, 'regular.bin');
    const st = fs.statSync(file, { bigint: true });
    const open = (planned: { size: bigint; ctimeNs: bigint }): Promise<InnerTarSource | null> =>
      openInnerTar({ dir, name: 'regular.bin', archiveName: 'vm1/regular.bin', dereference: true, regular: true, planned }, { mapper, buffers, signal: never });
    for (const [planned, changed] of [
      [{ size: st.size, ctimeNs: st.ctimeNs }, false],
      [{ size: st.size - 1n, ctimeNs: st.ctimeNs }, true],
      [{ size: st.size, ctimeNs: st.ctimeNs - 1n }, true],
    ] as const) {
      const src = await open(planned);
      assert.equal(src?.changedSincePlan, changed);
      assert.ok((src?.restoreCountBytes ?? 0) >= Number(st.size));
      await bytesOf(src!);
    }
  });

  it('a modification time before 1970 is left to GNU tar (it writes negative times)', async () => {
    const f = path.join(dir, 'old.txt');
    fs.writeFileSync(f, 'old');
    fs.utimesSync(f, new Date('1960-01-01T00:00:00Z'), new Date('1960-01-01T00:00:00Z'));
    assert.equal(await ours('old.txt'), null);
  });

  it('a run stopped while the file is opened and mapped: it is closed again, nothing handed out', async () => {
    const fdsBefore = fs.readdirSync('/proc/self/fd').length;
    const ac = new AbortController();
    const opening = openInnerTar({ dir, name: 'hole-end.img', archiveName: 'vm1/h', dereference: false }, { mapper, buffers, signal: ac.signal });
    ac.abort(new Error('stopped'));
    await assert.rejects(opening, /stopped/);
    await waitFor('the file to be closed', () => fs.readdirSync('/proc/self/fd').length <= fdsBefore, 10_000);
  });

  it('without the map helper: sparse files go to GNU tar, the others stay in-process', async () => {
    const told: string[] = [];
    const broken = new HoleMapper({ perl: path.join(dir, 'no-such-perl'), onUnavailable: (why) => told.push(why) });
    try {
      assert.equal(await ours('hole-end.img', { mapper: broken }), null);
      assert.match(broken.unavailable ?? '', /hole map helper/);
      assert.equal(told.length, 1, 'said once');
      const src = await ours('regular.bin', { mapper: broken });
      assert.ok(src);
      assert.equal(sha(await bytesOf(src)), sha(tarOf('regular.bin', 'vm1/regular.bin')));
    } finally {
      await broken.close();
    }
  });

  it('a file that shrinks while read fails with ERR_IO, naming it', async () => {
    const f = path.join(dir, 'shrinks.img');
    fs.writeFileSync(f, Buffer.alloc(4 * READ_BYTES, 1));
    const src = await ours('shrinks.img');
    assert.ok(src);
    const it = src.stdout[Symbol.asyncIterator]();
    await it.next(); // the header
    fs.truncateSync(f, READ_BYTES);
    await rejectsWith(async () => {
      for (let r = await it.next(); !r.done; r = await it.next());
    }, 'ERR_IO', /shrinks\.img: it shrank while it was being backed up/);
    await rejectsWith(src.done, 'ERR_IO');
  });

  it('a file written to while read fails with ERR_IO (its change time moved)', async () => {
    const f = path.join(dir, 'changes.img');
    fs.writeFileSync(f, Buffer.alloc(2 * READ_BYTES, 1));
    const src = await ours('changes.img');
    assert.ok(src);
    const it = src.stdout[Symbol.asyncIterator]();
    await it.next();
    const fd = fs.openSync(f, 'r+');
    fs.writeSync(fd, Buffer.from('x'), 0, 1, 10);
    fs.closeSync(fd);
    await rejectsWith(async () => {
      for (let r = await it.next(); !r.done; r = await it.next());
    }, 'ERR_IO', /changes\.img: it changed while/);
  });

  it('stopped early, or aborted before it was read, it closes its file and gives its buffers back', async () => {
    const fdsBefore = fs.readdirSync('/proc/self/fd').length;
    class Counted extends ReadBuffers {
      given = 0;
      override give(b: Buffer[]): void {
        this.given++;
        super.give(b);
      }
    }
    const pool = new Counted();
    const first = await openInnerTar({ dir, name: 'regular.bin', archiveName: 'vm1/r', dereference: false }, { mapper, buffers: pool, signal: never });
    assert.ok(first);
    const it = first.stdout[Symbol.asyncIterator]();
    await it.next();
    await it.next(); // a data view handed out, the next read in flight
    await it.return?.(undefined);
    assert.equal(pool.given, 1, 'its buffers came back');
    const ac = new AbortController();
    const second = await openInnerTar({ dir, name: 'regular.bin', archiveName: 'vm1/r', dereference: false }, { mapper, buffers: pool, signal: ac.signal });
    assert.ok(second);
    ac.abort(new Error('run failed'));
    await waitFor('the aborted source to close its file', () => fs.readdirSync('/proc/self/fd').length <= fdsBefore, 10_000);
    assert.equal(fs.readdirSync('/proc/self/fd').length, fdsBefore, 'no file left open');
    assert.equal(pool.given, 1, 'a source never read takes no buffers');
  });

  it('parseRuns refuses maps out of order, overlapping, empty runs or past the end', () => {
    assert.deepEqual(parseRuns('0 10 20 5', 100), [{ offset: 0, length: 10 }, { offset: 20, length: 5 }]);
    assert.deepEqual(parseRuns('', 100), []);
    assert.equal(parseRuns('20 5 0 10', 100), null);
    assert.equal(parseRuns('0 10 5 10', 100), null);
    assert.equal(parseRuns('0 0', 100), null);
    assert.equal(parseRuns('90 20', 100), null);
    assert.equal(parseRuns('1 2 3', 100), null);
    assert.equal(parseRuns('a b', 100), null);
  });

  it('the helper is one process for the whole run, and gone after close()', async () => {
    const m = new HoleMapper();
    const perls = (): number => descendants(process.pid).filter((pid) => cmdline(pid).includes('hole map') || cmdline(pid).startsWith('perl')).length;
    const before = perls();
    for (const n of ['hole-end.img', 'many.img', 'four.img']) {
      const src = await ours(n, { mapper: m });
      assert.ok(src);
      await bytesOf(src);
    }
    assert.equal(perls() - before, 1, 'one helper for three maps');
    await m.close();
    await waitFor('the helper to exit', () => perls() === before, 10_000);
    assert.equal(await ours('hole-end.img', { mapper: m }), null, 'a closed mapper maps nothing');
  });
});
