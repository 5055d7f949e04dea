// An in-process inner archive through a compression program (program-compressor.ts): the program
// gets exactly the source's bytes although the source reuses its buffer after each write; its output
// survives being read only after it exited (node discards an unclaimed child output at exit); a
// failing program, one that stops reading, a failing source, an abort and a consumer that stops
// early each end with their own error, the source closed and no process left.
import assert from 'node:assert/strict';
import { createHash, randomFillSync } from 'node:crypto';
import { chmodSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { after, before, describe, it } from 'node:test';
import { QvmBackupError } from '../../../src/main/errors.js';
import { loadSpawner } from '../../../src/main/io/spawn.js';
import { PROGRAM_READ_BYTES, type InnerTarSource } from '../../../src/main/backup/inner-tar-source.js';
import { compressWithProgram } from '../../../src/main/backup/program-compressor.js';
import { mkTmp, rejectsWith, rmTmp } from '../tar/tar-test-helpers.js';
import { cmdline, descendants, waitFor } from '../../helpers/processes.js';

before(loadSpawner);

const MiB = 1024 * 1024;
let dir: string;
before(() => {
  dir = mkTmp();
});
after(() => rmTmp(dir));

interface Fake {
  src: InnerTarSource;
  /** sha256 of every byte handed out */
  digest: () => string;
  closed: () => boolean;
}

/** A source of `total` random bytes in views of one buffer, overwritten as soon as the next view is
 *  asked for (as inner-tar-source.ts reuses its read buffers); `failAt`: throws ERR_IO there. */
function fakeSource(total: number, o: { piece?: number; failAt?: number } = {}): Fake {
  const buf = Buffer.alloc(o.piece ?? 256 * 1024);
  const hash = createHash('sha256');
  let sent = 0;
  let closed = false;
  let settle!: { resolve: () => void; reject: (e: unknown) => void };
  const done = new Promise<void>((resolve, reject) => (settle = { resolve, reject }));
  done.catch(() => undefined);
  async function* bytes(): AsyncGenerator<Uint8Array> {
    try {
      while (sent < total) {
        if (o.failAt !== undefined && sent >= o.failAt) throw new QvmBackupError('ERR_IO', 'vm1/private.img: it changed while it was being backed up');
        const n = Math.min(buf.length, total - sent);
        randomFillSync(buf, 0, n);
        hash.update(buf.subarray(0, n));
        sent += n;
        yield buf.subarray(0, n);
        buf.fill(0xee); // the consumer asked for the next view: the last one is dead
      }
      settle.resolve();
    } catch (e) {
      settle.reject(e);
      throw e;
    } finally {
      closed = true;
    }
  }
  const it = bytes();
  return { src: { stdout: { [Symbol.asyncIterator]: () => it }, done, inputBytes: () => sent }, digest: () => hash.digest('hex'), closed: () => closed };
}

/** Our child processes running `name`. */
const running = (name: string): number[] => descendants(process.pid).filter((p) => cmdline(p).includes(name));

async function collect(src: InnerTarSource): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of src.stdout) parts.push(Buffer.from(c));
  await src.done;
  return Buffer.concat(parts);
}

function script(name: string, body: string): string {
  const file = path.join(dir, name);
  writeFileSync(file, `#!/bin/sh\n${body}\n`);
  chmodSync(file, 0o755);
  return file;
}

const gzip = { program: 'gzip', args: ['-1'] };

describe('compressWithProgram', () => {
  for (const piece of [1 * MiB, PROGRAM_READ_BYTES]) {
    it(`the program gets exactly the bytes the source handed out, although each buffer is reused at once (${piece / MiB} MiB views)`, async () => {
      const total = 3 * PROGRAM_READ_BYTES + 12345; // the last view short
      const f = fakeSource(total, { piece });
      const out = await compressWithProgram(f.src, gzip, { what: 'vm1/private.img', signal: new AbortController().signal });
      const z = await collect(out);
      assert.equal(createHash('sha256').update(gunzipSync(z)).digest('hex'), f.digest());
      assert.equal(out.inputBytes(), total);
      assert.ok(f.closed());
    });
  }

  it('output read only after the program exited is all there (started ahead of its reader)', async () => {
    const f = fakeSource(10 * 1024);
    const out = await compressWithProgram(f.src, gzip, { what: 'vm1/firewall.xml', signal: new AbortController().signal });
    await waitFor('the source to be read to its end', () => f.closed());
    await waitFor('gzip to exit', () => running('gzip').length === 0);
    await new Promise((r) => setImmediate(r)); // past node's turn that resumes unclaimed outputs
    const z = await collect(out);
    assert.equal(createHash('sha256').update(gunzipSync(z)).digest('hex'), f.digest());
  });

  it('a failing program: ERR_FILTER_FAILED with its exit status and stderr, from done and from the output alike; the source closed', async () => {
    const exe = script('fails', 'head -c 1000 >/dev/null; echo "out of cheese" >&2; exit 3');
    const f = fakeSource(4 * MiB);
    const out = await compressWithProgram(f.src, { program: 'gzip', args: [] }, { what: 'vm1/private.img', signal: new AbortController().signal, exe });
    const e = await rejectsWith(collect(out), 'ERR_FILTER_FAILED', /vm1\/private\.img: the compression program failed: gzip \(exit 3\): out of cheese/);
    assert.equal(e.context['exitCode'], 3);
    assert.equal(e.context['file'], 'vm1/private.img');
    await rejectsWith(out.done, 'ERR_FILTER_FAILED', /exit 3/);
    assert.ok(f.closed(), 'the source (the file) was closed');
  });

  it('a program that exits 0 without reading all of its input fails the file, also when the input fit in the pipe', async () => {
    const exe = script('quits', 'exit 0');
    const f = fakeSource(2 * MiB);
    const out = await compressWithProgram(f.src, { program: 'gzip', args: [] }, { what: 'vm1/private.img', signal: new AbortController().signal, exe });
    await rejectsWith(collect(out), 'ERR_FILTER_FAILED', /gzip exited before it read all of its input/);
    assert.ok(f.closed());
    // 10 KiB fit in the pipe: taken whether or not the program reads them, so only its output tells
    const small = await compressWithProgram(fakeSource(10 * 1024).src, { program: 'gzip', args: [] }, { what: 'vm1/firewall.xml', signal: new AbortController().signal, exe: script('swallows', 'cat >/dev/null; exit 0') });
    await rejectsWith(collect(small), 'ERR_FILTER_FAILED', /vm1\/firewall\.xml: gzip exited 0 without any output/);
  });

  it('an abort before anyone read the output (a file started ahead): the program goes and done settles', { timeout: 60_000 }, async () => {
    const ac = new AbortController();
    const f = fakeSource(64 * MiB);
    const out = await compressWithProgram(f.src, gzip, { what: 'vm1/private.img', signal: ac.signal });
    // its output waits unread in the pipe and in node's buffer
    await waitFor('the program to have taken some input', () => (f.src.inputBytes() ?? 0) >= 512 * 1024);
    ac.abort(new QvmBackupError('ERR_CANCELLED', 'the run failed elsewhere'));
    await rejectsWith(out.done, 'ERR_CANCELLED');
    await waitFor('gzip to be gone', () => running('gzip').length === 0);
    await waitFor('the source to be closed', () => f.closed());
  });

  it('a source failing midway is the error, not what its cut input did to the program; the program is gone', async () => {
    const f = fakeSource(8 * MiB, { failAt: 3 * MiB });
    const out = await compressWithProgram(f.src, gzip, { what: 'vm1/private.img', signal: new AbortController().signal });
    await rejectsWith(collect(out), 'ERR_IO', /it changed while it was being backed up/);
    await rejectsWith(out.done, 'ERR_IO');
    await waitFor('gzip to be gone', () => running('gzip').length === 0);
  });

  it('an abort: the program is killed and the stream fails, nothing hangs', async () => {
    const ac = new AbortController();
    const f = fakeSource(64 * MiB);
    const out = await compressWithProgram(f.src, gzip, { what: 'vm1/private.img', signal: ac.signal });
    const it = out.stdout[Symbol.asyncIterator]();
    assert.equal((await it.next()).done, false);
    await waitFor('gzip to run', () => running('gzip').length === 1);
    ac.abort(new QvmBackupError('ERR_CANCELLED', 'interrupted'));
    await assert.rejects(async () => {
      for (let r = await it.next(); r.done !== true; r = await it.next());
    });
    const e = await rejectsWith(out.done, 'ERR_CANCELLED');
    assert.match(e.message, /cancelled|interrupted/);
    await waitFor('gzip to be gone', () => running('gzip').length === 0);
    assert.ok(f.closed());
  });

  it('a consumer that stops early: the program is killed and the source closed', async () => {
    const f = fakeSource(64 * MiB);
    const out = await compressWithProgram(f.src, gzip, { what: 'vm1/private.img', signal: new AbortController().signal });
    const it = out.stdout[Symbol.asyncIterator]();
    assert.equal((await it.next()).done, false);
    await it.return?.(undefined);
    await waitFor('gzip to be gone', () => running('gzip').length === 0);
    await waitFor('the source to be closed', () => f.closed());
    await assert.rejects(out.done);
  });
});
