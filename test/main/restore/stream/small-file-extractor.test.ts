// A VM's small inner archives (firewall.xml, menu lists) are written in-process when they hold one
// regular file named as expected, with what GNU tar would have made of them; anything else (a
// directory, a link, a stream the parser refuses, one larger than the limit) goes to GNU tar with
// every byte, and tar's verdict is the file's.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { before, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { isQvmBackupError } from '../../../../src/main/errors.js';
import { loadSpawner } from '../../../../src/main/io/spawn.js';
import { openStreamExtractor, type InnerExtractor } from '../../../../src/main/restore/stream/file-extractor.js';
import type { InnerFilter } from '../../../../src/main/restore/stream/filters.js';
import { SMALL_FILE_MAX_INPUT, isSmallFileBase, openSmallFileExtractor } from '../../../../src/main/restore/stream/small-file-extractor.js';
import { zstdZlib } from '../../../../src/workers/zstd-zlib.js';
import { sampleData } from '../../../workers/tools.js';
import { tempDir } from './stream-helpers.js';

before(loadSpawner);

/** `tar -c` of `names` under `src` (GNU tar, as the backup writers run it). */
function tarOf(src: string, names: string[], extra: string[] = []): Buffer {
  const r = spawnSync('tar', ['-c', '--sparse', ...extra, '-C', src, ...names], { maxBuffer: 1 << 30 });
  assert.equal(r.status, 0, r.stderr.toString());
  return r.stdout;
}

function encode(filter: InnerFilter, tar: Buffer): Buffer {
  if (filter.kind === 'gunzip') return gzipSync(tar);
  if (filter.kind === 'zstd') return Buffer.from(zstdZlib!.zstdCompressSync(tar));
  return tar;
}

/** x.finish() as 'resolved' or the error's code (awaited later, while the test acts on x). */
function finishCode(x: InnerExtractor): Promise<string> {
  return x.finish().then(
    () => 'resolved',
    (e: unknown) => (isQvmBackupError(e) ? e.code : String(e)),
  );
}

/** Run `body` in a fresh temporary directory, removed afterwards. */
async function inTempDir(body: (dir: string) => Promise<void>): Promise<void> {
  const dir = tempDir();
  try {
    await body(dir);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** `<dir>/src/vm3/<name>` holding `content`; returns `<dir>/src` (the tar source). */
function sourceFile(dir: string, name: string, content: string | Buffer): string {
  const src = path.join(dir, 'src');
  fs.mkdirSync(path.join(src, 'vm3'), { recursive: true });
  fs.writeFileSync(path.join(src, 'vm3', name), content);
  return src;
}

/** The small-file extractor of `member` into `dir`, counting the tar extractors it opens. */
function counted(dir: string, member: string, filter: InnerFilter, counter = { tarOpened: 0 }, listOnly = false): { x: InnerExtractor; counter: { tarOpened: number } } {
  const opts = { dir, member, listOnly };
  const x = openSmallFileExtractor(opts, filter, () => {
    counter.tarOpened++;
    return openStreamExtractor(opts, filter);
  });
  return { x, counter };
}

/** Run the small-file extractor over `input` in `piece`-byte writes; the caller's buffer is
 *  overwritten after each write (it is a reused chunk slot). Counts the tar extractors opened. */
async function extract(
  out: string,
  member: string,
  filter: InnerFilter,
  input: Buffer,
  o: { piece?: number; listOnly?: boolean; beforeFinish?: (x: InnerExtractor) => Promise<void>; counter?: { tarOpened: number } } = {},
): Promise<{ tarOpened: number }> {
  fs.mkdirSync(out, { recursive: true });
  const { x, counter } = counted(out, member, filter, o.counter, o.listOnly === true);
  const piece = o.piece ?? 64 * 1024;
  const slot = Buffer.alloc(piece);
  try {
    for (let off = 0; off < input.length; off += piece) {
      const n = input.copy(slot, 0, off, off + piece);
      await x.write(slot.subarray(0, n));
      slot.fill(0xa5);
    }
    await o.beforeFinish?.(x);
    await x.finish();
  } finally {
    await x.abort();
  }
  return counter;
}

const filters: InnerFilter[] = [{ kind: 'none' }, { kind: 'gunzip' }, ...(zstdZlib !== null ? [{ kind: 'zstd' } as InnerFilter] : [])];

test('which inner archives are tried in-process', () => {
  for (const b of ['vm3/firewall.xml', 'vm3/whitelisted-appmenus.list', 'vm3/notes.txt', 'vm3/apps']) assert.equal(isSmallFileBase(b), true, b);
  for (const b of ['vm3/private.img', 'vm3/root.img', 'vm9/.', 'qubes.xml']) assert.equal(isSmallFileBase(b), false, b);
});

test('one regular file: written in-process, as GNU tar writes it (bytes, mode, mtime, atime), no tar started', () =>
  inTempDir(async (dir) => {
    const content = Buffer.concat([Buffer.from('<firewall policy="drop">\n'), sampleData(70_000, 4)]);
    const src = sourceFile(dir, 'firewall.xml', content);
    const file = path.join(src, 'vm3', 'firewall.xml');
    fs.chmodSync(file, 0o640);
    fs.utimesSync(file, 1_600_000_000, 1_600_000_123);
    const tar = tarOf(src, ['vm3/firewall.xml']);
    for (const filter of filters) {
      for (const piece of [1000, 1 << 20]) {
        const label = `${filter.kind}, ${piece}-byte writes`;
        const ours = path.join(dir, `ours-${filter.kind}-${piece}`);
        const startedMs = Date.now();
        const r = await extract(ours, 'vm3/firewall.xml', filter, encode(filter, tar), { piece });
        assert.equal(r.tarOpened, 0, `${label}: no tar`);
        // the same inner archive through GNU tar, for comparison
        const theirs = path.join(dir, `tar-${filter.kind}-${piece}`);
        fs.mkdirSync(theirs);
        const t = openStreamExtractor({ dir: theirs, member: 'vm3/firewall.xml', listOnly: false }, filter);
        await t.write(encode(filter, tar));
        await t.finish();
        const [a, b] = [path.join(ours, 'vm3/firewall.xml'), path.join(theirs, 'vm3/firewall.xml')];
        // before anything reads them (a read may update the access time)
        const [sa, sb] = [fs.lstatSync(a), fs.lstatSync(b)];
        assert.ok(fs.readFileSync(a).equals(content), `${label}: the file's bytes`);
        // tar sets the access time to when it started, not to the mtime
        assert.ok(sa.atimeMs >= startedMs - 1000 && sa.atimeMs <= Date.now() + 1000, `${label}: atime ${sa.atimeMs} is the extraction's time, as tar's (${sb.atimeMs})`);
        assert.ok(sa.isFile());
        assert.equal(sa.mode, sb.mode, `${label}: mode as tar's`);
        assert.equal(sa.mtimeMs, sb.mtimeMs, `${label}: mtime as tar's`);
        assert.equal(Math.floor(sa.mtimeMs / 1000), 1_600_000_123);
        assert.deepEqual(fs.readdirSync(ours), ['vm3']);
        assert.deepEqual(fs.readdirSync(path.join(ours, 'vm3')), ['firewall.xml']);
      }
    }
    // verify-only: checked in-process, nothing written, no tar
    const v = path.join(dir, 'verify');
    const r = await extract(v, 'vm3/firewall.xml', { kind: 'gunzip' }, gzipSync(tar), { listOnly: true });
    assert.equal(r.tarOpened, 0);
    assert.deepEqual(fs.readdirSync(v), []);
  }));

test('a directory, a link, another name: GNU tar extracts what it holds, from every byte', () =>
  inTempDir(async (dir) => {
    const src = path.join(dir, 'src');
    fs.mkdirSync(path.join(src, 'vm3', 'apps'), { recursive: true });
    fs.writeFileSync(path.join(src, 'vm3', 'apps', 'a.desktop'), sampleData(50_000, 5));
    fs.writeFileSync(path.join(src, 'vm3', 'apps', 'b.desktop'), 'b\n');
    fs.symlinkSync('apps/b.desktop', path.join(src, 'vm3', 'firewall.xml'));
    for (const filter of filters) {
      const apps = path.join(dir, `apps-${filter.kind}`);
      const r = await extract(apps, 'vm3/apps', filter, encode(filter, tarOf(src, ['vm3/apps'])), { piece: 3000 });
      assert.equal(r.tarOpened, 1, 'a directory: tar');
      assert.ok(fs.readFileSync(path.join(apps, 'vm3/apps/a.desktop')).equals(fs.readFileSync(path.join(src, 'vm3/apps/a.desktop'))));
      assert.equal(fs.readFileSync(path.join(apps, 'vm3/apps/b.desktop'), 'utf8'), 'b\n');

      const link = path.join(dir, `link-${filter.kind}`);
      const l = await extract(link, 'vm3/firewall.xml', filter, encode(filter, tarOf(src, ['vm3/firewall.xml'])));
      assert.equal(l.tarOpened, 1, 'a link: tar (the checks after extraction judge it, as before)');
      assert.equal(fs.readlinkSync(path.join(link, 'vm3/firewall.xml')), 'apps/b.desktop');
    }
    // the expected member and a second one: the parser refuses, tar extracts the one asked for
    fs.writeFileSync(path.join(src, 'vm3', 'notes.txt'), 'notes\n');
    const two = path.join(dir, 'two');
    const t = await extract(two, 'vm3/notes.txt', { kind: 'none' }, tarOf(src, ['vm3/notes.txt', 'vm3/apps/b.desktop']));
    assert.equal(t.tarOpened, 1);
    assert.equal(fs.readFileSync(path.join(two, 'vm3/notes.txt'), 'utf8'), 'notes\n');
    assert.equal(fs.existsSync(path.join(two, 'vm3/apps')), false, 'tar extracts only the member asked for');
  }));

test('larger than the limit: handed to tar as it grows, every byte kept', () =>
  inTempDir(async (dir) => {
    const content = sampleData(SMALL_FILE_MAX_INPUT + 300_000, 6);
    const src = sourceFile(dir, 'big.list', content);
    const out = path.join(dir, 'out');
    const counter = { tarOpened: 0 };
    let openedBeforeEnd = -1;
    const r = await extract(out, 'vm3/big.list', { kind: 'none' }, tarOf(src, ['vm3/big.list']), {
      piece: 100_000,
      counter,
      beforeFinish: () => Promise.resolve(void (openedBeforeEnd = counter.tarOpened)),
    });
    assert.equal(r.tarOpened, 1);
    assert.equal(openedBeforeEnd, 1, 'tar took over before the end of the input');
    assert.ok(fs.readFileSync(path.join(out, 'vm3/big.list')).equals(content));
    // one write larger than the limit (a whole chunk): straight to tar
    const one = path.join(dir, 'one');
    const input = tarOf(src, ['vm3/big.list']);
    const c1 = { tarOpened: 0 };
    let atEnd = -1;
    await extract(one, 'vm3/big.list', { kind: 'none' }, input, { piece: input.length, counter: c1, beforeFinish: () => Promise.resolve(void (atEnd = c1.tarOpened)) });
    assert.equal(atEnd, 1);
    assert.ok(fs.readFileSync(path.join(one, 'vm3/big.list')).equals(content));
  }));

test('a stream that does not decode: tar gets it and its failure is the file\'s; an abort writes nothing', () =>
  inTempDir(async (dir) => {
    const src = sourceFile(dir, 'firewall.xml', sampleData(20_000, 7));
    const good = gzipSync(tarOf(src, ['vm3/firewall.xml']));
    const bad = Buffer.from(good);
    bad[bad.length - 6]! ^= 0xff; // the CRC
    const out = path.join(dir, 'bad');
    const counter = { tarOpened: 0 };
    await assert.rejects(extract(out, 'vm3/firewall.xml', { kind: 'gunzip' }, bad, { counter }), (e: unknown) => isQvmBackupError(e) && e.code === 'ERR_CORRUPT');
    assert.equal(counter.tarOpened, 1, 'tar gave the verdict');
    // junk after the gzip stream (which gzip -d refuses): not accepted in-process either
    const junk = path.join(dir, 'junk');
    const c2 = { tarOpened: 0 };
    await assert.rejects(
      extract(junk, 'vm3/firewall.xml', { kind: 'gunzip' }, Buffer.concat([good, Buffer.from([0]), Buffer.from('junk')]), { counter: c2 }),
      (e: unknown) => isQvmBackupError(e) && e.code === 'ERR_CORRUPT' && /after the end of the gzip stream/.test(e.message),
    );
    assert.equal(c2.tarOpened, 1);
    // aborted before its end: finish() fails, nothing written, no tar
    const ab = path.join(dir, 'aborted');
    fs.mkdirSync(ab);
    const { x, counter: c } = counted(ab, 'vm3/firewall.xml', { kind: 'gunzip' });
    await x.write(good);
    await x.abort();
    await assert.rejects(x.finish(), (e: unknown) => isQvmBackupError(e) && e.code === 'ERR_CANCELLED');
    assert.equal(c.tarOpened, 0);
    assert.deepEqual(fs.readdirSync(ab), []);
  }));

test('an abort while the file is being written stops the write: finish() fails', () =>
  inTempDir(async (dir) => {
    // 64 MiB of zeros stored as data (no --sparse): ~64 KiB of gzip, long enough to write
    const src = sourceFile(dir, 'zeros.list', '');
    fs.truncateSync(path.join(src, 'vm3', 'zeros.list'), 64 * 1024 * 1024);
    const r = spawnSync('tar', ['-c', '-f', path.join(dir, 'zeros.tar'), '-C', src, 'vm3/zeros.list']);
    assert.equal(r.status, 0);
    const input = gzipSync(fs.readFileSync(path.join(dir, 'zeros.tar')), { level: 1 });
    assert.ok(input.length < SMALL_FILE_MAX_INPUT);
    const out = path.join(dir, 'out');
    fs.mkdirSync(out);
    const { x, counter: c } = counted(out, 'vm3/zeros.list', { kind: 'gunzip' });
    await x.write(input);
    const finished = finishCode(x);
    // the write pass has begun once its file exists (the check before it writes nothing)
    const file = path.join(out, 'vm3', 'zeros.list');
    while (!fs.existsSync(file)) await new Promise((resolve) => setImmediate(resolve));
    await x.abort();
    assert.equal(await finished, 'ERR_CANCELLED');
    assert.ok(fs.statSync(file).size <= 64 * 1024 * 1024);
    assert.equal(c.tarOpened, 0);
  }));

/** What an extractor made of `input`: the file's bytes, mode and mtime, or the error code. */
async function outcome(x: InnerExtractor, out: string, member: string, input: Buffer): Promise<string> {
  try {
    await x.write(input);
    await x.finish();
  } catch (e) {
    await x.abort();
    return `error ${isQvmBackupError(e) ? e.code : String(e)}`;
  }
  const f = path.join(out, member);
  const st = fs.lstatSync(f);
  return `${st.isFile() ? 'file' : 'other'} ${st.mode.toString(8)} ${st.mtimeMs} ${st.isFile() ? fs.readFileSync(f).toString('hex') : ''}`;
}

// Found by review: the parser's leniency (for images) read some shapes differently from GNU tar
// (pax and global records, a zero block first, `./` names, odd mode/mtime fields). In strict mode
// each goes to tar, and the result is tar's.
test('shapes GNU tar reads its own way go to tar: the same outcome as tar alone', () =>
  inTempDir(async (dir) => {
    const src = sourceFile(dir, 'notes.txt', 'some notes\n'.repeat(5));
    const file = path.join(src, 'vm3', 'notes.txt');
    fs.utimesSync(file, 1_600_000_000, 1_600_000_000.75);
    const plain = tarOf(src, ['vm3/notes.txt']);
    const edited = (edit: (h: Buffer) => void): Buffer => {
      const t = Buffer.from(plain);
      const h = t.subarray(0, 512);
      edit(h);
      h.fill(0x20, 148, 156);
      let sum = 0;
      for (const b of h) sum += b;
      h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1');
      return t;
    };
    const cases: [string, Buffer][] = [
      ['pax records (--format=posix, mtime with a fraction)', tarOf(src, ['vm3/notes.txt'], ['--format=posix'])],
      ['a zero block first', Buffer.concat([Buffer.alloc(512), plain])],
      ['./ before the name', tarOf(src, ['./vm3/notes.txt'])],
      ['mode 0', edited((h) => h.write('0000000\0', 100, 'latin1'))],
      ['a malformed mtime', edited((h) => h.write('zzzzzzzzzzz\0', 136, 'latin1'))],
      ['setuid in the mode', edited((h) => h.write('0004755\0', 100, 'latin1'))],
    ];
    let i = 0;
    for (const [what, input] of cases) {
      const ours = path.join(dir, `ours${i}`);
      const theirs = path.join(dir, `tar${i++}`);
      fs.mkdirSync(ours);
      fs.mkdirSync(theirs);
      const { x, counter: c } = counted(ours, 'vm3/notes.txt', { kind: 'none' });
      const a = await outcome(x, ours, 'vm3/notes.txt', input);
      const b = await outcome(openStreamExtractor({ dir: theirs, member: 'vm3/notes.txt', listOnly: false }, { kind: 'none' }), theirs, 'vm3/notes.txt', input);
      assert.equal(c.tarOpened, 1, `${what}: to tar`);
      assert.equal(a, b, `${what}: tar's outcome`);
    }
  }));

test('an abort while the held bytes are being checked starts no tar: finish() fails', () =>
  inTempDir(async (dir) => {
    const src = sourceFile(dir, 'firewall.xml', sampleData(200_000, 8));
    const input = gzipSync(tarOf(src, ['vm3/firewall.xml']));
    const out = path.join(dir, 'out');
    fs.mkdirSync(out);
    const { x, counter: c } = counted(out, 'vm3/firewall.xml', { kind: 'gunzip' });
    await x.write(input);
    const finished = finishCode(x);
    await x.abort(); // the check pass is running
    assert.equal(await finished, 'ERR_CANCELLED');
    await assert.rejects(x.write(input), (e: unknown) => isQvmBackupError(e) && e.code === 'ERR_CANCELLED', 'no write after an abort');
    assert.equal(c.tarOpened, 0);
    assert.deepEqual(fs.readdirSync(out), []);
  }));
