// A scrypt derivation in a child process (io/scrypt-child.ts): the same key as the workers derive,
// given up at once when killed (a derivation in a thread runs to its end), bounded, and a failing
// child gives null, never an exception. The passphrase never appears on the child's command line.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { deriveInChild } from '../../../src/main/io/scrypt-child.js';
import { scryptDeriveKey } from '../../../src/workers/scrypt-file.js';
import { alive, cmdline, descendants, environOf, waitFor } from '../../helpers/processes.js';

const SALT = Uint8Array.from({ length: 32 }, (_, i) => i * 7);

test('the child derives the key the workers derive (64 bytes, a non-ASCII passphrase), and its command line holds no secret', async () => {
  const pass = Buffer.from('backup-id!vm9/root.img.000!pässwörd ✓', 'utf8');
  const q = { logN: 12, r: 8, p: 1 };
  const d = deriveInChild(pass, SALT, q, 60_000);
  assert.ok(d.pid !== undefined);
  const line = alive(d.pid) ? cmdline(d.pid) : '';
  assert.ok(!line.includes('pässwörd') && !line.includes(Buffer.from(pass).toString('hex')), line);
  const key = await d.key;
  await d.exited;
  assert.ok(key !== null);
  assert.deepEqual(Buffer.from(key), scryptDeriveKey(pass, SALT, q));
  assert.equal(alive(d.pid), false);
});

test('kill() ends a long derivation at once: no key, the child gone, nothing left below us; the child starts without NODE_EXTRA_CA_CERTS', async () => {
  const had = process.env['NODE_EXTRA_CA_CERTS'];
  process.env['NODE_EXTRA_CA_CERTS'] = '/nonexistent/certs.pem';
  let d: ReturnType<typeof deriveInChild>;
  try {
    d = deriveInChild(Buffer.from('x'), SALT, { logN: 21, r: 8, p: 1 }, 600_000); // 2 GiB, ~10 s
  } finally {
    if (had === undefined) delete process.env['NODE_EXTRA_CA_CERTS'];
    else process.env['NODE_EXTRA_CA_CERTS'] = had;
  }
  await waitFor('the child running', () => d.pid !== undefined && alive(d.pid), 10_000);
  // a process between fork and exec may show an empty environment for a moment
  let env: string[] = [];
  await waitFor('the child\'s environment', () => (env = environOf(d.pid!)).some((l) => l.startsWith('PATH=')), 10_000);
  assert.deepEqual(env.filter((l) => l.startsWith('NODE_EXTRA_CA_CERTS=')), [], 'node 20 would read that file first');
  const t0 = Date.now();
  d.kill();
  assert.equal(await d.key, null);
  await d.exited;
  assert.ok(Date.now() - t0 < 5000, `ended after ${Date.now() - t0} ms`);
  assert.equal(alive(d.pid!), false);
  assert.deepEqual(descendants(process.pid).filter((p) => p === d.pid), []);
});

test('a derivation that outlasts its bound is killed and gives null', async () => {
  const d = deriveInChild(Buffer.from('x'), SALT, { logN: 21, r: 8, p: 1 }, 300);
  assert.equal(await d.key, null);
  await d.exited;
  assert.equal(alive(d.pid!), false);
});

test('parameters node:crypto refuses (p too large for maxmem): the child fails, null, nothing thrown', async () => {
  const d = deriveInChild(Buffer.from('x'), SALT, { logN: 1, r: 1, p: 2 ** 30 }, 30_000);
  assert.equal(await d.key, null);
  await d.exited;
});

test('no file descriptors left for its pipes (EMFILE): null, nothing thrown, nothing waits', () => {
  // in a child process whose descriptors are all taken but one (the pipes need more)
  const script = `
    import { openSync, closeSync } from 'node:fs';
    const { deriveInChild } = await import(${JSON.stringify(new URL('../../../src/main/io/scrypt-child.js', import.meta.url).href)});
    const fds = [];
    try { for (;;) fds.push(openSync('/dev/null', 'r')); } catch {}
    closeSync(fds.pop());
    let out;
    try {
      const d = deriveInChild(Buffer.from('x'), new Uint8Array(32), { logN: 10, r: 8, p: 1 }, 10_000);
      out = { key: await d.key };
      await d.exited;
    } catch (e) {
      out = { threw: String(e) };
    }
    for (const x of fds) closeSync(x);
    console.log(JSON.stringify(out));
  `;
  // under a low descriptor limit where prlimit exists (filling a limit of a million takes seconds)
  const argv = [process.execPath, '--input-type=module', '-e', script];
  const prlimit = spawnSync('prlimit', ['--version']).status === 0;
  const r = spawnSync(prlimit ? 'prlimit' : argv[0]!, prlimit ? ['--nofile=256', '--', ...argv] : argv.slice(1), { encoding: 'utf8', timeout: 30_000 });
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout.trim().split('\n').at(-1)!), { key: null });
});
