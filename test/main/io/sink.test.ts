// Tests for sink.ts: file sink commit/abort (no partial file left), command sink with real shell
// commands (success, failure, early exit, abort), stdout sink backpressure and EPIPE, freeBytes.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { commandSink, freeBytes, openFileSink, stdoutSink } from '../../../src/main/io/sink.js';
import { mkTmp, rejectsWith, rmTmp } from '../tar/tar-test-helpers.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const MiB = 1024 * 1024;

/** Whether a process runs (a killed but unreaped zombie does not count). */
function alive(pid: number): boolean {
  try {
    return fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.[0] !== 'Z';
  } catch {
    return false;
  }
}

describe('openFileSink', () => {
  let dir = '';
  before(() => {
    dir = mkTmp();
  });
  after(() => rmTmp(dir));

  it('writes under .<base>.partial-<pid> and renames into place on commit', async () => {
    const final = path.join(dir, 'qubes-backup');
    const sink = await openFileSink(final);
    const partial = path.join(dir, `.qubes-backup.partial-${process.pid}`);
    await sink.write(Buffer.from('hello '));
    await sink.write(new Uint8Array(Buffer.from('world')));
    assert.ok(fs.existsSync(partial));
    assert.ok(!fs.existsSync(final), 'nothing under the final name before commit');
    await sink.commit();
    assert.equal(fs.readFileSync(final, 'utf8'), 'hello world');
    assert.deepEqual(fs.readdirSync(dir), ['qubes-backup']);
    await rejectsWith(sink.write(Buffer.from('x')), 'ERR_INTERNAL');
    assert.match(sink.description, /qubes-backup/);
  });

  it('abort removes the partial file and leaves nothing behind', async () => {
    const final = path.join(dir, 'aborted');
    const sink = await openFileSink(final);
    await sink.write(Buffer.alloc(3 * MiB, 1));
    await sink.abort();
    await sink.abort(); // idempotent
    assert.ok(!fs.readdirSync(dir).some((f) => f.includes('aborted')));
  });

  it('replaces a stale partial of the same pid; missing directory is ERR_IO', async () => {
    const final = path.join(dir, 'stale');
    fs.writeFileSync(path.join(dir, `.stale.partial-${process.pid}`), 'old junk');
    const sink = await openFileSink(final);
    await sink.write(Buffer.from('new'));
    await sink.commit();
    assert.equal(fs.readFileSync(final, 'utf8'), 'new');
    await rejectsWith(openFileSink(path.join(dir, 'no/such/dir/file')), 'ERR_IO', /cannot create/);
  });
});

describe('commandSink', () => {
  let dir = '';
  before(() => {
    dir = mkTmp();
  });
  after(() => rmTmp(dir));

  it('`cat > file` receives every byte; commit waits for exit 0', async () => {
    const out = path.join(dir, 'out.bin');
    const sink = commandSink(`cat > '${out}'`);
    const data = Buffer.alloc(5 * MiB);
    for (let i = 0; i < data.length; i += 4) data.writeUInt32LE(i, i);
    for (let i = 0; i < data.length; i += MiB) await sink.write(data.subarray(i, i + MiB));
    await sink.commit();
    assert.ok(fs.readFileSync(out).equals(data));
  });

  it('a failing command: ERR_IO with exit code and stderr tail', async () => {
    const sink = commandSink('cat > /dev/null; echo "no space on target" >&2; exit 3');
    await sink.write(Buffer.from('data'));
    const e = await rejectsWith(sink.commit(), 'ERR_IO', /exit 3.*no space on target/);
    assert.equal(e.context['exitCode'], 3);
    assert.equal(e.context['stderrTail'], 'no space on target');
  });

  it('a command that stops reading early: the write fails with ERR_IO', async () => {
    const sink = commandSink('head -c 10 > /dev/null; echo gone >&2; exit 4');
    const run = async (): Promise<void> => {
      for (let i = 0; i < 64; i++) await sink.write(Buffer.alloc(MiB));
      await sink.commit();
    };
    await rejectsWith(run, 'ERR_IO', /exit 4.*gone/);
  });

  it('abort kills the whole command, children included', async () => {
    const pidFile = path.join(dir, 'child.pid');
    const sink = commandSink(`sleep 60 & echo $! > '${pidFile}'; wait`);
    await sink.write(Buffer.from('x'));
    for (let i = 0; i < 200 && !fs.existsSync(pidFile); i++) await new Promise((r) => setTimeout(r, 10));
    const pid = Number(fs.readFileSync(pidFile, 'utf8'));
    const t0 = Date.now();
    await sink.abort();
    assert.ok(Date.now() - t0 < 5000, 'prompt');
    await new Promise((r) => setTimeout(r, 50));
    assert.ok(!alive(pid), 'the background sleep is gone too');
    const plain = commandSink('sleep 60');
    await plain.abort();
  });
});

describe('stdoutSink', () => {
  it('waits for drain (backpressure) and keeps order', async () => {
    const got: Buffer[] = [];
    let pending = 0;
    const w = new Writable({
      highWaterMark: 1024,
      write(chunk: Buffer, _enc, cb) {
        pending++;
        setTimeout(() => {
          got.push(chunk);
          pending--;
          cb();
        }, 2);
      },
    });
    const sink = stdoutSink(w);
    for (let i = 0; i < 20; i++) {
      await sink.write(Buffer.alloc(4096, i));
      assert.ok(w.writableLength <= 4096, 'write resolved only after drain');
    }
    await sink.commit();
    assert.equal(pending, 0);
    assert.deepEqual(got.filter((b) => b.length > 0).map((b) => b[0]), [...Array(20).keys()]);
  });

  it('EPIPE (reader went away) is ERR_IO, not a crash', () => {
    const child = path.join(here, 'stdout-sink-child.js');
    const r = spawnSync('sh', ['-c', `"${process.execPath}" "${child}" 64 | head -c 100 > /dev/null`], { encoding: 'utf8', timeout: 20_000 });
    const report = JSON.parse(r.stderr.trim().split('\n').at(-1) ?? '{}') as { ok: boolean; code?: string; message?: string };
    assert.equal(report.ok, false, r.stderr);
    assert.equal(report.code, 'ERR_IO');
    assert.match(report.message ?? '', /EPIPE/);
  });

  it('a complete write to a pipe commits', () => {
    const child = path.join(here, 'stdout-sink-child.js');
    const r = spawnSync('sh', ['-c', `"${process.execPath}" "${child}" 4 | wc -c`], { encoding: 'utf8', timeout: 20_000 });
    assert.equal(r.stdout.trim(), String(4 * MiB));
    assert.match(r.stderr, /"ok":true/);
  });
});

describe('freeBytes', () => {
  it('reports the bytes available on the filesystem', async () => {
    const n = await freeBytes(process.cwd());
    const s = fs.statfsSync(process.cwd());
    assert.ok(n > 0 && Number.isSafeInteger(n));
    assert.ok(Math.abs(n - s.bavail * s.bsize) < 512 * MiB);
    await assert.rejects(freeBytes('/no/such/dir'));
  });
});
