// TarDiskCount against what GNU tar 1.34 really writes and really extracts: trees archived in every
// format with --sparse, fed in many chunkings, extracted, and their disk (st_blocks) compared with
// the count; and hand-made hostile streams (sparse maps of 1-byte runs in each format, names that
// imply deep directories, headers hidden in link or directory data, bad and zero blocks), which
// tar extracts the way the walker says; and garbage, which must never make it throw.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { TarDiskCount } from '../../../../src/main/restore/stream/tar-disk-count.js';
import { headerChecksum } from '../../../../src/main/tar/tar-header.js';
import { paxRecord, paxSparse, tarBlockHeader, toBlocks } from '../../../helpers/tar-craft.js';

let dir: string;
let block: number;

before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qvmb-tdc-'));
  block = fs.statfsSync(dir).bsize;
  const t = path.join(dir, 'tree');
  const mk = (p: string): string => {
    fs.mkdirSync(path.join(t, p), { recursive: true });
    return path.join(t, p);
  };
  for (let i = 0; i < 40; i++) mk(`empty/e${i}`);
  mk('nested/a/b/c/d');
  const files = mk('files');
  fs.writeFileSync(path.join(files, 'one'), 'x');
  fs.writeFileSync(path.join(files, 'odd'), randomBytes(5000));
  fs.writeFileSync(path.join(files, 'block'), randomBytes(4096));
  fs.writeFileSync(path.join(files, 'more'), randomBytes(8193));
  fs.writeFileSync(path.join(files, 'empty'), '');
  for (let i = 0; i < 120; i++) fs.writeFileSync(path.join(files, `small-file-number-${i}.txt`), 'y'.repeat(i * 7));
  fs.linkSync(path.join(files, 'odd'), path.join(files, 'hard'));
  const links = mk('links');
  fs.symlinkSync('t'.repeat(100), path.join(links, 'long100'));
  fs.symlinkSync('t'.repeat(60), path.join(links, 'long60'));
  fs.symlinkSync('t'.repeat(59), path.join(links, 'short59'));
  fs.symlinkSync('../files/one', path.join(links, 'rel'));
  fs.symlinkSync(`${'u'.repeat(150)}/${'v'.repeat(150)}`, path.join(links, 'long301'));
  const long = mk(`${'n'.repeat(90)}/${'m'.repeat(90)}`);
  fs.writeFileSync(path.join(long, 'q'.repeat(120)), 'long name');
  let deep = '';
  for (let i = 0; i < 40; i++) deep += `d${i}/`;
  fs.writeFileSync(path.join(mk(deep), 'leaf'), 'leaf');
  // sparse files: truncate, then runs written in place
  const sparse = mk('sparse');
  const runs = (name: string, size: number, writes: [at: number, len: number][]): void => {
    const f = path.join(sparse, name);
    execFileSync('truncate', ['-s', String(size), f]);
    for (const [at, len] of writes) execFileSync('dd', ['if=/dev/urandom', `of=${f}`, 'bs=1', `count=${len}`, `seek=${at}`, 'conv=notrunc', 'status=none']);
  };
  const scattered = Array.from({ length: 40 }, (_, i): [number, number] => [i * 1_000_003, 1 + i * 97]);
  runs('scattered', 64 << 20, scattered);
  runs('tail', 10 << 20, [
    [12_345, 9000],
    [(10 << 20) - 700, 700],
  ]);
  runs('hole-at-end', 3 << 20, [[4096 * 3, 5000]]);
});

after(() => fs.rmSync(dir, { recursive: true, force: true }));

interface Walked {
  extra: number;
  reports: string[];
  ended: boolean;
  lost: boolean;
}

/** Feed `bytes` in pieces of the given sizes (cycled), and what the walker said. */
function walk(bytes: Uint8Array, pieces: number[] = [bytes.length]): Walked {
  let extra = 0;
  const reports: string[] = [];
  const w = new TarDiskCount((n, name) => {
    assert.ok(n > 0 && Number.isFinite(n), `${name}: ${n}`);
    extra += n;
    reports.push(`${name}:${n}`);
  }, block);
  for (let at = 0, i = 0; at < bytes.length; i++) {
    const n = Math.max(1, pieces[i % pieces.length]!);
    w.push(bytes.subarray(at, at + n));
    at += n;
  }
  return { extra, reports, ended: w.ended, lost: w.lost };
}

/** A reproducible list of random piece sizes from 1 byte to 64 KiB. */
function randomPieces(seed: number, n = 200): number[] {
  let s = seed;
  return Array.from({ length: n }, () => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    return 1 + (s % (s % 3 === 0 ? 65536 : 1500));
  });
}

/** The disk (st_blocks) that `tar -x` as the restore runs it takes for `bytes`, and its exit status. */
function extractDisk(bytes: Uint8Array): { disk: number; status: number | null } {
  const out = fs.mkdtempSync(path.join(dir, 'x-'));
  try {
    const r = spawnSync('tar', ['-x', '--sparse', '-k', '--no-same-owner', '--no-same-permissions', '-C', out, '-f', '-'], {
      input: bytes,
      maxBuffer: 1 << 26,
    });
    execFileSync('sync'); // delayed allocation: extent tree blocks appear once written out
    let disk = 0;
    const seen = new Set<number>(); // hard links: one inode
    const sum = (p: Buffer): void => {
      for (const e of fs.readdirSync(p, { withFileTypes: true, encoding: 'buffer' })) {
        const f = Buffer.concat([p, Buffer.from('/'), e.name]);
        const st = fs.lstatSync(f);
        if (!seen.has(st.ino)) disk += st.blocks * 512;
        seen.add(st.ino);
        if (e.isDirectory()) sum(f);
      }
    };
    sum(Buffer.from(out));
    return { disk, status: r.status };
  } finally {
    fs.rmSync(out, { recursive: true, force: true });
  }
}

const tarOf = (args: string[], names: string[]): Buffer => execFileSync('tar', ['-c', ...args, '-C', dir, '-f', '-', '--', ...names], { maxBuffer: 1 << 28 });
const entryCount = (bytes: Uint8Array): number =>
  execFileSync('tar', ['-t', '-f', '-'], { input: bytes, maxBuffer: 1 << 26 })
    .toString()
    .split('\n').length - 1;

/** Seal a hand-made header's checksum. */
function seal(b: Buffer): Buffer {
  b.fill(0x20, 148, 156);
  b.write(headerChecksum(b).unsigned.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1');
  return b;
}

/** A header for `name` of `type` and `size`, with the GNU magic (`ustar  \0`) when `gnu`. */
function header(name: string, type: string, size: number, opts: { gnu?: boolean; link?: string; edit?: (b: Buffer) => void } = {}): Buffer {
  const b = tarBlockHeader(name, type, size);
  if (opts.gnu === true) b.write('ustar  \0', 257, 'latin1');
  if (opts.link !== undefined) b.write(opts.link, 157, 'latin1');
  opts.edit?.(b);
  return seal(b);
}

const octal12 = (n: number): string => n.toString(8).padStart(11, '0') + '\0';
const END = Buffer.alloc(1024);

/** Every run of an archive made here: one byte of 'z' each, stored in a block of its own. */
const runBlocks = (runs: { offset: number; length: number }[]): Buffer => Buffer.concat(runs.map((r) => toBlocks(Buffer.alloc(r.length, 0x7a))));

/** An old GNU sparse member ('S', 4 runs in the header, 21 in each extension block). */
function gnuSparse(name: string, runs: { offset: number; length: number }[], realSize: number): Buffer {
  const data = runBlocks(runs);
  const h = header(name, 'S', data.length, {
    gnu: true,
    edit: (b) => {
      runs.slice(0, 4).forEach((r, i) => b.write(octal12(r.offset) + octal12(r.length), 386 + i * 24, 'latin1'));
      b[482] = runs.length > 4 ? 1 : 0;
      b.write(octal12(realSize), 483, 'latin1');
    },
  });
  const ext: Buffer[] = [];
  for (let i = 4; i < runs.length; i += 21) {
    const e = Buffer.alloc(512);
    runs.slice(i, i + 21).forEach((r, j) => e.write(octal12(r.offset) + octal12(r.length), j * 24, 'latin1'));
    e[504] = i + 21 < runs.length ? 1 : 0;
    ext.push(e);
  }
  return Buffer.concat([h, ...ext, data]);
}

/** A pax sparse 0.0 or 0.1 member: its map in the extended header, then the runs. */
function pax0Sparse(name: string, runs: { offset: number; length: number }[], realSize: number, minor: 0 | 1): Buffer {
  const data = runBlocks(runs);
  let recs = paxRecord('GNU.sparse.size', String(realSize)) + paxRecord('GNU.sparse.numblocks', String(runs.length));
  if (minor === 0) for (const r of runs) recs += paxRecord('GNU.sparse.offset', String(r.offset)) + paxRecord('GNU.sparse.numbytes', String(r.length));
  else recs += paxRecord('GNU.sparse.name', name) + paxRecord('GNU.sparse.map', runs.map((r) => `${r.offset},${r.length}`).join(','));
  const pax = Buffer.from(recs);
  return Buffer.concat([header(`PaxHeaders/${name}`, 'x', pax.length), toBlocks(pax), header(name, '0', data.length), data]);
}

const spread = (n: number, apart: number): { offset: number; length: number }[] => Array.from({ length: n }, (_, i) => ({ offset: i * apart, length: 1 }));

describe('TarDiskCount: what GNU tar writes, against what it extracts', () => {
  for (const [label, args] of [
    ['gnu (old GNU sparse)', ['--format=gnu']],
    ['posix, sparse 0.0', ['--format=posix', '--sparse-version=0.0']],
    ['posix, sparse 0.1', ['--format=posix', '--sparse-version=0.1']],
    ['posix, sparse 1.0', ['--format=posix', '--sparse-version=1.0']],
    ['pax', ['--format=pax']],
  ] as const) {
    it(`${label}: at least the disk tar takes, within a block an entry; the same in any chunking`, () => {
      const bytes = tarOf(['--sparse', ...args], ['tree']);
      const whole = walk(bytes);
      assert.ok(whole.ended && !whole.lost);
      for (const pieces of [[511], [513], [4096], randomPieces(bytes.length)]) assert.deepEqual(walk(bytes, pieces), whole, `pieces of ${pieces[0]}…`);
      const { disk, status } = extractDisk(bytes);
      assert.equal(status, 0);
      const total = bytes.length + whole.extra;
      const entries = entryCount(bytes);
      assert.ok(total >= disk, `${label}: counted ${total}, tar took ${disk}`);
      assert.ok(total - disk <= entries * block, `${label}: counted ${total}, tar took ${disk}, ${entries} entries`);
      // what needs blocks beyond its header is reported: directories, small files, the long link
      for (const name of ['tree/empty/e7', 'tree/files/one', 'tree/links/long100', 'tree/links/long60'])
        assert.ok(
          whole.reports.some((r) => r.startsWith(name)),
          `${name} in ${whole.reports.length} reports`,
        );
      assert.ok(!whole.reports.some((r) => r.startsWith('tree/links/short59:')));
    });
  }

  it('one byte at a time', () => {
    const bytes = tarOf(['--sparse', '--format=posix'], ['tree/links', 'tree/files/odd', 'tree/sparse/tail']);
    assert.deepEqual(walk(bytes, [1]), walk(bytes));
  });

  it('base-256 sizes (GNU tar writes them from 8 GiB): read as tar reads them', () => {
    const data = randomBytes(5000);
    const h = header('big', '0', 0, { gnu: true, edit: (b) => b.fill(0, 124, 136).writeUIntBE(5000, 130, 6) });
    h[124] = 0x80;
    const bytes = Buffer.concat([seal(h), toBlocks(data), header('after/', '5', 0), END]);
    const w = walk(bytes);
    assert.ok(w.ended);
    assert.deepEqual(
      w.reports.map((r) => r.split(':')[0]),
      ['big', 'after/'],
    );
    assert.ok(bytes.length + w.extra >= extractDisk(bytes).disk);
  });
});

describe('TarDiskCount: hostile streams, extracted by tar as counted', () => {
  it('pax sparse 1.0, 10 000 one-byte runs 8 KiB apart: ~10 000 blocks less its archive bytes', () => {
    const bytes = paxSparse(spread(10_000, 8192), 10_000 * 8192, () => Buffer.from('z'), undefined, 'h/bomb.img');
    const whole = walk(bytes);
    const archive = bytes.length - END.length;
    assert.ok(whole.extra >= 10_000 * block - archive, `${whole.extra}`);
    assert.ok(whole.extra <= 10_000 * block - archive + 64 * block, `${whole.extra}`);
    for (const pieces of [[1], [511], [513], [4096], randomPieces(7)]) assert.deepEqual(walk(bytes, pieces), whole);
    const { disk } = extractDisk(bytes);
    assert.ok(disk > 10_000 * block, `tar took ${disk}`);
    assert.ok(bytes.length + whole.extra >= disk, `counted ${bytes.length + whole.extra}, tar took ${disk}`);
  });

  for (const [label, make] of [
    ['old GNU sparse with extension blocks', () => gnuSparse('s/gnu', spread(300, 8192), 300 * 8192)],
    ['pax sparse 0.0', () => pax0Sparse('s/p00', spread(300, 8192), 300 * 8192, 0)],
    ['pax sparse 0.1', () => pax0Sparse('s/p01', spread(300, 8192), 300 * 8192, 1)],
  ] as const) {
    it(`${label}, 300 one-byte runs: counted, and at least what tar takes`, () => {
      const bytes = Buffer.concat([make(), header('s/after', '0', 1), toBlocks(Buffer.from('a')), END]);
      const whole = walk(bytes);
      assert.ok(whole.ended && !whole.lost);
      assert.ok(whole.extra >= 300 * block - bytes.length, `${whole.extra}`);
      assert.ok(
        whole.reports.some((r) => r.startsWith('s/after:')),
        'the member after it is found',
      );
      assert.deepEqual(walk(bytes, [1]), whole);
      const { disk } = extractDisk(bytes);
      assert.ok(disk >= 300 * block, `tar took ${disk}`);
      assert.ok(bytes.length + whole.extra >= disk, `counted ${bytes.length + whole.extra}, tar took ${disk}`);
    });
  }

  it('a long name of 1000 directories that no entry makes: a block each', () => {
    const name = `${'a/'.repeat(1000)}f`;
    const bytes = Buffer.concat([
      header('././@LongLink', 'L', name.length + 1, { gnu: true }),
      toBlocks(Buffer.from(`${name}\0`)),
      header('x', '0', 0, { gnu: true }),
      END,
    ]);
    const whole = walk(bytes);
    assert.ok(whole.extra >= 1000 * block - bytes.length, `${whole.extra}`);
    const { disk } = extractDisk(bytes);
    assert.ok(disk >= 1000 * block, `tar took ${disk}`);
    assert.ok(bytes.length + whole.extra >= disk);
    // a directory made once is not counted again
    const twice = Buffer.concat([
      bytes.subarray(0, bytes.length - END.length),
      header('././@LongLink', 'L', name.length + 2, { gnu: true }),
      toBlocks(Buffer.from(`${name}2\0`)),
      header('x', '0', 0, { gnu: true }),
      END,
    ]);
    assert.ok(walk(twice).extra < whole.extra + block);
  });

  it('headers in the data of a symbolic link and of a directory: tar reads them as headers', () => {
    const hidden = Buffer.concat([header('hidden-dir/', '5', 0), header('hidden-file', '0', 0)]);
    const bytes = Buffer.concat([
      header('link', '2', hidden.length, { link: 'target' }),
      hidden,
      header('dir/', '5', hidden.length),
      hidden,
      header('last/', '5', 0),
      END,
    ]);
    const w = walk(bytes);
    assert.ok(w.ended && !w.lost);
    assert.ok(w.reports.some((r) => r.startsWith('hidden-dir/:')));
    assert.ok(w.reports.some((r) => r.startsWith('last/:')));
    const { disk } = extractDisk(bytes);
    assert.ok(bytes.length + w.extra >= disk, `counted ${bytes.length + w.extra}, tar took ${disk}`);
    // tar did make the hidden directory: its data was read as a header
    assert.ok(disk >= 3 * block);
  });

  it('a sparse map whose tiny runs come first: counted by its worst prefix, for a stream cut after them', () => {
    // 2000 runs 8 KiB apart, then 16 000 packed into four blocks: the whole map takes less disk
    // than its archive bytes, but tar has written 2000 blocks when the stream stops after them
    const runs = [...spread(2000, 8192), ...Array.from({ length: 16_000 }, (_, i) => ({ offset: 2000 * 8192 + i, length: 1 }))];
    const whole = paxSparse(runs, 2000 * 8192 + 16_000, () => Buffer.from('z'), undefined, 'cut.img');
    const cut = whole.subarray(0, whole.length - END.length - 16_000 * 512);
    const w = walk(cut);
    assert.ok(w.extra >= 2000 * block - cut.length, `${w.extra}`);
    const { disk, status } = extractDisk(cut);
    assert.notEqual(status, 0);
    assert.ok(disk >= 2000 * block, `tar took ${disk}`);
    assert.ok(cut.length + w.extra >= disk, `counted ${cut.length + w.extra}, tar took ${disk}`);
  });

  it('global headers apply to every member after them: a size, a sparse version', () => {
    // `size=512` makes the next (empty) file read a header as its data
    const g = Buffer.from(paxRecord('size', '512'));
    const sized = Buffer.concat([header('g', 'g', g.length), toBlocks(g), header('a', '0', 0), header('b/', '5', 0), header('c/', '5', 0), END]);
    assert.deepEqual(
      walk(sized).reports.map((r) => r.split(':')[0]),
      ['a', 'c/'],
    );
    assert.equal(extractDisk(sized).disk, 2 * block);
    // GNU.sparse.major=1 makes a directory with an extended header a sparse file of map and runs
    const x = Buffer.from(paxRecord('GNU.sparse.major', '1') + paxRecord('GNU.sparse.minor', '0'));
    const map = toBlocks(Buffer.from('2\n0\n1\n8192\n1\n'));
    const z = toBlocks(Buffer.from('z'));
    const sparse = Buffer.concat([
      header('g', 'g', x.length),
      toBlocks(x),
      header('PaxHeaders/d', 'x', 0),
      header('d/', '5', 1536),
      map,
      z,
      z,
      header('e/', '5', 0),
      END,
    ]);
    const w = walk(sparse);
    assert.deepEqual(
      w.reports.map((r) => r.split(':')[0]),
      ['d/', 'e/'],
    );
    assert.ok(sparse.length + w.extra >= extractDisk(sparse).disk);
  });

  it('past 8 diverging paths the walk stops forking and says so', () => {
    // each link's data is a header of a 1 MiB file: read as a header when extracted, skipped otherwise
    const parts: Buffer[] = [];
    for (let i = 0; i < 12; i++) parts.push(header(`l${i}`, '2', 512, { link: 't' }), header(`big${i}`, '0', 1 << 20));
    const bytes = Buffer.concat([...parts, END]);
    const w = walk(bytes);
    assert.ok(w.lost);
    assert.ok(!walk(bytes.subarray(0, 4 * 1024)).lost);
  });

  it('a bad header is skipped a block at a time (tar goes on after it); a lone zero block ends the archive', () => {
    const bad = header('bad/', '5', 0);
    bad[0] = bad[0]! ^ 1;
    const bytes = Buffer.concat([bad, randomBytes(1024), header('after-bad/', '5', 0), Buffer.alloc(512), header('after-zero/', '5', 0), END]);
    const w = walk(bytes);
    assert.deepEqual(
      w.reports.map((r) => r.split(':')[0]),
      ['after-bad/'],
    );
    assert.ok(w.ended);
    const { disk } = extractDisk(bytes);
    assert.equal(disk, block); // tar made after-bad only
  });

  it('a pax 1.0 map claiming more data than the member holds: read into the next headers, as tar does', () => {
    // the map's 40 runs take 40 blocks; the member says it holds one: tar reads on past it
    const map = toBlocks(
      Buffer.from(
        `40\n${spread(40, 8192)
          .map((r) => `${r.offset}\n${r.length}\n`)
          .join('')}`,
      ),
    );
    const pax = Buffer.from(paxRecord('GNU.sparse.major', '1') + paxRecord('GNU.sparse.minor', '0') + paxRecord('GNU.sparse.realsize', String(40 * 8192)));
    const runs = runBlocks(spread(40, 8192));
    const bytes = Buffer.concat([
      header('PaxHeaders/m', 'x', pax.length),
      toBlocks(pax),
      header('m', '0', map.length + 512),
      map,
      runs,
      header('after/', '5', 0),
      END,
    ]);
    const w = walk(bytes);
    assert.ok(w.ended);
    assert.ok(w.reports.some((r) => r.startsWith('after/:')));
    assert.ok(w.extra >= 40 * block - bytes.length);
    assert.ok(bytes.length + w.extra >= extractDisk(bytes).disk);
  });
});

describe('TarDiskCount: garbage never throws', () => {
  it('random bytes, truncations and flipped bytes of real archives, malformed pax records', () => {
    const real = tarOf(['--sparse', '--format=posix'], ['tree/files', 'tree/links', 'tree/sparse/tail']);
    const gnu = tarOf(['--sparse', '--format=gnu'], ['tree/sparse', 'tree/links']);
    const inputs: Buffer[] = [randomBytes(1 << 20), Buffer.alloc(0), Buffer.alloc(7), real.subarray(0, 700), gnu.subarray(0, 1500)];
    for (let i = 0; i < 40; i++) {
      const src = i % 2 === 0 ? real : gnu;
      inputs.push(src.subarray(0, (i * 7919) % src.length));
      const flipped = Buffer.from(src);
      for (let j = 0; j < 20; j++) flipped[(i * 104729 + j * 7927) % 8192]! ^= 1 << (j % 8);
      inputs.push(flipped);
      // flipped bytes in the first headers, checksums made good again: the walk must go on regardless
      const resealed = Buffer.from(flipped);
      for (let h = 0; h < 8192; h += 512) seal(resealed.subarray(h, h + 512));
      inputs.push(resealed);
    }
    const junkPax = ['9999999999 size=1\n', '12 size=1x\n', '5 a=b\n', '0 =\n', ` 30 GNU.sparse.map=1,2,3,4,x,\n`, `20 path=\0abc\n`, '13 size=-1\n'];
    for (const j of junkPax)
      inputs.push(Buffer.concat([header('PaxHeaders/j', 'x', j.length), toBlocks(Buffer.from(j)), header('j', '0', 1), Buffer.alloc(512), END]));
    inputs.push(Buffer.concat([header('g', 'g', 18), toBlocks(Buffer.from('18 size=99999999\n')), header('after', '0', 0), END]));
    for (const b of inputs) {
      for (const pieces of [[b.length || 1], [513], randomPieces(b.length)]) {
        const w = walk(b, pieces);
        assert.ok(Number.isFinite(w.extra));
      }
    }
  });
});
