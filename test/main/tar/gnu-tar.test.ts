// Tests for the single-stream GNU tar drivers with real tar 1.34 (sparse files, --xform names,
// compression) and with fake tar programs (error wrapping, missing binary, cancellation).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { once } from 'node:events';
import { execFileSync } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { loadSpawner } from '../../../src/main/io/spawn.js';
import { checkGnuTar, findTar, tarCreateStream, tarExtractStream, xformExpression } from '../../../src/main/tar/gnu-tar.js';
import { FAKE_BIN, allocatedBytes, makeSparseFile, mkTmp, rejectsWith, rmTmp, run, sameFile } from './tar-test-helpers.js';

// the code under test starts processes: the entry points load execa first, so does this file
before(loadSpawner);

const MiB = 1024 * 1024;

/** tarCreateStream piped straight into tarExtractStream. tar -x may exit once it read the end of
 *  the archive, before its stdin reached EOF (Node 24 then closes the pipe first, and stream.pipeline
 *  calls that a premature close): the exit statuses and the extracted files are the verdict. */
async function roundTrip(
  create: Parameters<typeof tarCreateStream>[0],
  extract: Parameters<typeof tarExtractStream>[0],
): Promise<string[]> {
  const c = tarCreateStream(create);
  const x = tarExtractStream(extract);
  const copy = (async () => {
    for await (const chunk of c.stdout) {
      if (x.stdin.destroyed) continue; // keep reading: tar -c must not block on a full pipe
      if (!x.stdin.write(chunk)) await Promise.race([once(x.stdin, 'drain'), once(x.stdin, 'close')]);
    }
    x.stdin.end();
  })();
  await Promise.all([copy, c.done, x.done]);
  return x.listing;
}

describe('tarCreateStream → tarExtractStream with real GNU tar', () => {
  let dir = '';
  before(() => {
    dir = mkTmp();
    fs.mkdirSync(path.join(dir, 'src/vm9/apps'), { recursive: true });
    makeSparseFile(path.join(dir, 'src/private.img'), 16, [[0, 4096], [5 * MiB, MiB], [16 * MiB - 512, 512]]);
    fs.writeFileSync(path.join(dir, 'src/vm9/root.img'), 'root');
    fs.writeFileSync(path.join(dir, 'src/vm9/apps/a.desktop'), 'app');
    fs.writeFileSync(path.join(dir, 'src/a:b.c[1]*^$\\x'), 'meta');
  });
  after(() => rmTmp(dir));

  it('sparse image renamed by --xform, holes kept', async () => {
    const out = path.join(dir, 'out1');
    fs.mkdirSync(out);
    const inner = run('tar', ['-Pc', '--sparse', '-C', path.join(dir, 'src'), '--xform=s:^private.img:vm3/private.img:', 'private.img']);
    const listed = run('tar', ['-tvf', '-'], inner).toString();
    assert.match(listed, /^-rw-\S+ \S+ +16777216 .* vm3\/private\.img\n$/); // sanity: what Qubes' command line gives
    await roundTrip({ dir: path.join(dir, 'src'), name: 'private.img', archiveName: 'vm3/private.img' }, { dir: out, members: ['vm3/private.img'] });
    const got = path.join(out, 'vm3/private.img');
    assert.ok(sameFile(got, path.join(dir, 'src/private.img')));
    assert.equal(fs.statSync(got).size, 16 * MiB);
    assert.ok(allocatedBytes(got) < 3 * MiB, `holes kept (allocated ${allocatedBytes(got)})`);
  });

  it('whole directory: name "." gives members vm9/./…; listOnly lists them', async () => {
    const listing = await roundTrip(
      { dir: path.join(dir, 'src/vm9'), name: '.', archiveName: 'vm9/.' },
      { dir: path.join(dir, 'src'), members: [], listOnly: true },
    );
    assert.deepEqual([...listing].sort(), ['vm9/./', 'vm9/./apps/', 'vm9/./apps/a.desktop', 'vm9/./root.img']);
  });

  it('regex metacharacters, ":" and "&" in names are escaped in the xform', async () => {
    const out = path.join(dir, 'out2');
    fs.mkdirSync(out);
    const name = 'a:b.c[1]*^$\\x';
    const archiveName = 'vm1/x&y:z\\1';
    assert.equal(xformExpression(name, archiveName), 's:^a\\:b\\.c\\[1\\]\\*\\^\\$\\\\x:vm1/x\\&y\\:z\\\\1:');
    const listing = await roundTrip({ dir: path.join(dir, 'src'), name, archiveName }, { dir: out, members: [], listOnly: true });
    assert.deepEqual(listing, ['vm1/x&y:z\\\\1']); // tar -t quotes the backslash
    await roundTrip({ dir: path.join(dir, 'src'), name, archiveName }, { dir: out, members: [archiveName] });
    assert.equal(fs.readFileSync(path.join(out, archiveName), 'utf8'), 'meta');
  });

  it('compression inside tar on create (gzip and xz): `<program> -d | tar -x` restores it', async () => {
    for (const prog of ['gzip', 'xz']) {
      const out = path.join(dir, `out-${prog}`);
      fs.mkdirSync(out);
      const c = tarCreateStream({ dir: path.join(dir, 'src'), name: 'private.img', archiveName: 'vm3/private.img', compressProgram: prog });
      const chunks: Buffer[] = [];
      for await (const ch of c.stdout) chunks.push(ch as Buffer);
      await c.done;
      const magic = Buffer.concat(chunks).subarray(0, 3).toString('hex');
      assert.equal(magic, prog === 'gzip' ? '1f8b08' : 'fd377a');
      // restore runs the decompression program itself (restore/stream/program-decoder.ts)
      const plain = execFileSync(prog, ['-d'], { input: Buffer.concat(chunks), maxBuffer: 1 << 30 });
      const x = tarExtractStream({ dir: out, members: ['vm3/private.img'] });
      x.stdin.end(plain);
      await x.done;
      assert.ok(sameFile(path.join(out, 'vm3/private.img'), path.join(dir, 'src/private.img')));
    }
  });

  it('a missing source file is ERR_TAR_FAILED with tar\'s message', async () => {
    const c = tarCreateStream({ dir: path.join(dir, 'src'), name: 'nope.img', archiveName: 'vm3/nope.img' });
    c.stdout.resume();
    const e = await rejectsWith(c.done, 'ERR_TAR_FAILED', /^tar failed \(exit 2\): .*nope\.img: Cannot stat/s);
    assert.equal(e.context['exitCode'], 2);
    assert.match(String(e.context['command']), /--xform=s:\^nope\\.img:vm3\/nope\.img:/);
  });

  it('extract keeps existing files (-k) and refuses garbage input', async () => {
    const out = path.join(dir, 'out3');
    fs.mkdirSync(out);
    const x = tarExtractStream({ dir: out, members: ['vm3/private.img'] });
    x.stdin.on('error', () => undefined);
    x.stdin.end(Buffer.alloc(4096, 7));
    await rejectsWith(x.done, 'ERR_TAR_FAILED', /exit 2/);
  });
});

describe('fake tar programs and tar discovery', () => {
  const exit2 = path.join(FAKE_BIN, 'fake-tar-exit2.js');
  const hang = path.join(FAKE_BIN, 'fake-tar-hang.js');

  it('a non-zero exit becomes ERR_TAR_FAILED with command, exit code, stderr tail and file; the message is one line', async () => {
    const c = tarCreateStream({ dir: '/var/lib/qubes/appvms/work', name: 'private.img', archiveName: 'vm3/private.img', tarPath: exit2 });
    c.stdout.resume();
    // tar's closing "Exiting with failure status" line is left out of the message, kept in the context
    const e = await rejectsWith(c.done, 'ERR_TAR_FAILED', /^tar failed \(exit 2\): tar: vm3\/private\.img: Cannot open: No such file or directory$/);
    assert.equal(e.context['exitCode'], 2);
    assert.match(String(e.context['stderrTail']), /Cannot open: No such file or directory\ntar: Exiting with failure status/);
    assert.match(String(e.context['command']), /fake-tar-exit2\.js -Pc --sparse .* -- private\.img$/);
    assert.equal(e.context['file'], '/var/lib/qubes/appvms/work/private.img');
  });

  it('cancel via AbortSignal kills a hanging tar: ERR_CANCELLED', async () => {
    const ac = new AbortController();
    const x = tarExtractStream({ dir: '/tmp', members: ['a'], tarPath: hang, signal: ac.signal });
    x.stdin.on('error', () => undefined);
    x.stdin.write('data');
    const t0 = Date.now();
    setTimeout(() => ac.abort(), 100);
    await rejectsWith(x.done, 'ERR_CANCELLED');
    assert.ok(Date.now() - t0 < 2500, 'killed promptly');
    const c = tarCreateStream({ dir: '/tmp', name: 'x', archiveName: 'y', tarPath: hang, signal: AbortSignal.timeout(50) });
    await rejectsWith(c.done, 'ERR_CANCELLED');
  });

  it('a missing binary says so', async () => {
    const c = tarCreateStream({ dir: '/tmp', name: 'x', archiveName: 'y', tarPath: '/nonexistent/tar' });
    await rejectsWith(c.done, 'ERR_TAR_FAILED', /^tar not found: \/nonexistent\/tar$/);
    const saved = process.env['PATH'];
    process.env['PATH'] = '/nonexistent-dir';
    try {
      const d = tarCreateStream({ dir: '/tmp', name: 'x', archiveName: 'y' });
      await rejectsWith(d.done, 'ERR_TAR_FAILED', /^GNU tar not found in PATH$/);
      await rejectsWith(findTar(), 'ERR_TAR_FAILED', /^GNU tar not found in PATH$/);
    } finally {
      process.env['PATH'] = saved;
    }
  });

  it('checkGnuTar accepts GNU tar and rejects others', async () => {
    assert.match(await checkGnuTar(), /^tar \(GNU tar\) 1\.\d+/);
    assert.equal(path.basename(await findTar()), 'tar');
    await rejectsWith(checkGnuTar(path.join(FAKE_BIN, 'fake-tar-not-gnu.js')), 'ERR_TAR_FAILED', /is not GNU tar.*bsdtar/);
    await rejectsWith(checkGnuTar('/nonexistent/tar'), 'ERR_TAR_FAILED', /tar not found/);
  });

  it('unsafe names are refused before tar runs', () => {
    assert.throws(() => tarCreateStream({ dir: '/tmp', name: 'a/b', archiveName: 'x' }), (e: { code?: string }) => e.code === 'ERR_UNSAFE_NAME');
    assert.throws(() => tarCreateStream({ dir: '/tmp', name: '..', archiveName: 'x' }), (e: { code?: string }) => e.code === 'ERR_UNSAFE_NAME');
    assert.throws(() => tarExtractStream({ dir: '/tmp', members: ['a\nb'] }), (e: { code?: string }) => e.code === 'ERR_UNSAFE_NAME');
  });
});
