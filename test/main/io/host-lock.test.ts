// The host lock: exclusive between runs, waited for with a message, bounded, and released when its
// owner releases it, exits or is killed with SIGKILL (no process outlives the run holding it).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { lockHost } from '../../../src/main/io/host-lock.js';
import { waitFor } from '../../helpers/processes.js';

/** PIDs that have `file` open. */
function holdersOf(file: string): number[] {
  const out: number[] = [];
  for (const p of fs.readdirSync('/proc').filter((n) => /^\d+$/.test(n))) {
    try {
      if (fs.readdirSync(`/proc/${p}/fd`).some((f) => fs.readlinkSync(`/proc/${p}/fd/${f}`) === file)) out.push(Number(p));
    } catch {
      // gone, or not ours to read
    }
  }
  return out;
}

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'qvmb-lock-'));
after(() => fs.rmSync(root, { recursive: true, force: true }));
const LOCK_MODULE = new URL('../../../src/main/io/host-lock.js', import.meta.url).pathname;

describe('lockHost', () => {
  it('removeWithRoot takes the root and the directories above it that its own mkdir made, never one that was there before', async () => {
    const base = path.join(root, 'made');
    fs.mkdirSync(base);
    // a/b/c/root: a existed before (someone else's), b and c are ours
    fs.mkdirSync(path.join(base, 'a'));
    const deep = path.join(base, 'a', 'b', 'c', 'root');
    const lock = await lockHost(deep);
    assert.equal(lock.createdRoot, true);
    await lock.removeWithRoot();
    assert.deepEqual(fs.readdirSync(path.join(base, 'a')), [], 'b and c removed, a kept');
    // a root that existed: nothing of ours to remove
    fs.mkdirSync(path.join(base, 'x', 'root'), { recursive: true });
    const existing = await lockHost(path.join(base, 'x', 'root'));
    assert.equal(existing.createdRoot, false);
    await existing.release();
    // a directory on the way that is not empty any more stops the removal there
    const shared = path.join(base, 's', 'root');
    const mine = await lockHost(shared);
    fs.mkdirSync(path.join(base, 's', 'other-root'));
    await mine.removeWithRoot();
    assert.deepEqual(fs.readdirSync(path.join(base, 's')), ['other-root']);
  });

  it('a stop while the lock is taken in a root it created removes that root again', async () => {
    const base = path.join(root, 'stopped');
    fs.mkdirSync(base);
    const stopped = AbortSignal.abort();
    const deep = path.join(base, 'a', 'root');
    await assert.rejects(lockHost(deep, { signal: stopped }), (e: Error & { code?: string }) => e.code === 'ERR_CANCELLED');
    assert.deepEqual(fs.readdirSync(base), [], 'the root and the directory above it that the run made are gone');
  });

  it('createRoot false: a root that is not there is neither created nor locked (null); one that is, is locked as usual', async () => {
    const missing = path.join(root, 'not-yet', 'root');
    assert.equal(await lockHost(missing, { createRoot: false }), null);
    assert.equal(fs.existsSync(path.join(root, 'not-yet')), false, 'nothing created');
    const there = path.join(root, 'there');
    fs.mkdirSync(there);
    const l = await lockHost(there, { createRoot: false });
    assert.ok(l !== null && l.held() && !l.createdRoot);
    await l.release();
  });

  it('is exclusive: a second taker waits (saying so) until the first releases', async () => {
    const a = await lockHost(root);
    let waited = '';
    let bGot = false;
    const b = lockHost(root, { onWait: (m) => (waited = m) }).then((l) => {
      bGot = true;
      return l;
    });
    await waitFor('the second taker to wait', () => waited !== '');
    assert.match(waited, /qubes\.xml\.lock is held by another/);
    assert.equal(bGot, false);
    await a.release();
    const lb = await b;
    assert.ok(lb.held());
    await lb.release();
    assert.equal(lb.held(), false);
  });

  it('gives up after waitSeconds with ERR_LOCKED; a signal stops the wait', async () => {
    const a = await lockHost(root);
    try {
      await assert.rejects(lockHost(root, { waitSeconds: 1 }), (e: { code?: string }) => e.code === 'ERR_LOCKED');
      const ac = new AbortController();
      const p = lockHost(root, { waitSeconds: 300, signal: ac.signal, onWait: () => ac.abort(new Error('SIGINT')) });
      await assert.rejects(p, (e: { code?: string }) => e.code === 'ERR_CANCELLED');
    } finally {
      await a.release();
    }
  });

  it('a holder killed with SIGKILL releases the lock; no helper process holds it meanwhile', async () => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', `const { lockHost } = await import(${JSON.stringify(LOCK_MODULE)}); await lockHost(${JSON.stringify(root)}); console.log('locked'); setInterval(() => {}, 1000);`], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    await waitFor('the child to hold the lock', () => out.includes('locked'));
    // the lock lives in the child's own open file: no other process has the lock file open
    assert.deepEqual(holdersOf(path.join(root, 'qubes.xml.lock')), [child.pid]);
    await assert.rejects(lockHost(root, { waitSeconds: 1 }), (e: { code?: string }) => e.code === 'ERR_LOCKED');
    child.kill('SIGKILL');
    const l = await lockHost(root, { waitSeconds: 20 });
    await l.release();
  });

  it('a waiter whose lock file was removed by the previous holder starts over on the new file', async () => {
    const sub = path.join(root, 'fresh');
    const a = await lockHost(sub);
    let waiting = false;
    const b = lockHost(sub, { onWait: () => (waiting = true) });
    await waitFor('the second taker to wait', () => waiting);
    await a.removeWithRoot();
    await a.release();
    const lb = await b;
    assert.ok(fs.existsSync(path.join(sub, 'qubes.xml.lock')), 'the waiter locked a file that exists');
    assert.deepEqual(holdersOf(path.join(sub, 'qubes.xml.lock')), [process.pid]);
    await lb.release();
  });
});
