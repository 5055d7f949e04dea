// The start file's steps (src/main/cli/start.ts), each on its own: the moved NODE_EXTRA_CA_CERTS put
// back, and the compile cache enabled only in a directory that is ours alone. The whole, through the
// launchers, is in test/e2e/compile-cache.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, chownSync, mkdirSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { enableOwnCompileCache, isOwnPrivateDir, restoreMovedEnv } from '../../../src/main/cli/start.js';
import { tempDir } from '../../helpers/cli.js';
import { LAUNCH_STATE_KEY, ownNodeChildEnv } from '../../../src/main/launch-state.js';

const ENABLED = 1;
/** A stand-in for node:module: records the directories it was asked to enable. */
function fakeModule(status = ENABLED, throws = false): { mod: Parameters<typeof enableOwnCompileCache>[2]; calls: string[] } {
  const calls: string[] = [];
  return {
    calls,
    mod: {
      enableCompileCache: (dir: string) => {
        calls.push(dir);
        if (throws) throw new Error('EACCES');
        return { status };
      },
      constants: { compileCacheStatus: { ENABLED } },
    },
  };
}

test('the moved NODE_EXTRA_CA_CERTS is put back as it was, and only a moved one', () => {
  const env: NodeJS.ProcessEnv = { QVMB_NODE_EXTRA_CA_CERTS: '/etc/certs with space.pem', OTHER: 'x' };
  assert.deepEqual(restoreMovedEnv(env), {}, 'nothing of it for a node child of ours (ownNodeChildEnv leaves it out)');
  assert.deepEqual(env, { NODE_EXTRA_CA_CERTS: '/etc/certs with space.pem', OTHER: 'x' });
  const empty: NodeJS.ProcessEnv = { QVMB_NODE_EXTRA_CA_CERTS: '' };
  restoreMovedEnv(empty);
  assert.deepEqual(empty, { NODE_EXTRA_CA_CERTS: '' });
  const none: NodeJS.ProcessEnv = { NODE_EXTRA_CA_CERTS: '/a' };
  restoreMovedEnv(none);
  assert.deepEqual(none, { NODE_EXTRA_CA_CERTS: '/a' }, 'nothing moved: left as it is');
});

test("the user's GLIBC_TUNABLES put back (none, empty, a value); node's own kept for a node child of ours", () => {
  const LAUNCHER = 'glibc.malloc.hugetlb=1:glibc.malloc.mmap_threshold=8388608';
  const none: NodeJS.ProcessEnv = { GLIBC_TUNABLES: LAUNCHER, QVMB_USER_GLIBC_TUNABLES: '' };
  assert.deepEqual(restoreMovedEnv(none), { GLIBC_TUNABLES: LAUNCHER });
  assert.deepEqual(none, {}, 'the user had none');
  const empty: NodeJS.ProcessEnv = { GLIBC_TUNABLES: LAUNCHER, QVMB_USER_GLIBC_TUNABLES: '=' };
  restoreMovedEnv(empty);
  assert.deepEqual(empty, { GLIBC_TUNABLES: '' }, 'an empty one');
  const value: NodeJS.ProcessEnv = { GLIBC_TUNABLES: `glibc.malloc.check=0:${LAUNCHER}`, QVMB_USER_GLIBC_TUNABLES: '=glibc.malloc.check=0' };
  assert.deepEqual(restoreMovedEnv(value), { GLIBC_TUNABLES: `glibc.malloc.check=0:${LAUNCHER}` });
  assert.deepEqual(value, { GLIBC_TUNABLES: 'glibc.malloc.check=0' });
  const untouched: NodeJS.ProcessEnv = { GLIBC_TUNABLES: 'glibc.malloc.check=0' };
  assert.deepEqual(restoreMovedEnv(untouched), {}, 'no launcher (QVMB_HUGEPAGES=0, node run directly)');
  assert.deepEqual(untouched, { GLIBC_TUNABLES: 'glibc.malloc.check=0' });
});

test('a node child of ours: the user\'s environment with what node itself was given on top', () => {
  const g = globalThis as Record<symbol, unknown>;
  const had = g[LAUNCH_STATE_KEY];
  try {
    delete g[LAUNCH_STATE_KEY];
    assert.equal(ownNodeChildEnv()['NODE_EXTRA_CA_CERTS'], undefined, 'never NODE_EXTRA_CA_CERTS');
    assert.equal(ownNodeChildEnv()['PATH'], process.env['PATH'], 'no start file: the environment as it is');
    g[LAUNCH_STATE_KEY] = { nodeEnv: { GLIBC_TUNABLES: 'glibc.malloc.hugetlb=1' } };
    assert.equal(ownNodeChildEnv()['GLIBC_TUNABLES'], 'glibc.malloc.hugetlb=1');
    assert.equal(ownNodeChildEnv()['NODE_EXTRA_CA_CERTS'], undefined, 'never NODE_EXTRA_CA_CERTS, with a start file too');
    assert.equal(ownNodeChildEnv()['PATH'], process.env['PATH']);
  } finally {
    g[LAUNCH_STATE_KEY] = had;
  }
});

test('the compile cache: made 0700 when missing and enabled; the user\'s choice, node 20 and failures leave it off', () => {
  const t = tempDir();
  const old = process.umask(0);
  try {
    const dir = join(t.dir, '.compile-cache');
    const f = fakeModule();
    assert.equal(enableOwnCompileCache(dir, {}, f.mod), dir);
    assert.deepEqual(f.calls, [dir]);
    assert.equal(statSync(dir).mode & 0o777, 0o700, 'made 0700 under umask 000');
    assert.equal(enableOwnCompileCache(dir, {}, f.mod), dir, 'there already: used');

    const other = join(t.dir, 'other');
    for (const env of [{ NODE_COMPILE_CACHE: '/elsewhere' }, { NODE_COMPILE_CACHE: '' }, { NODE_DISABLE_COMPILE_CACHE: '1' }]) {
      const g = fakeModule();
      assert.equal(enableOwnCompileCache(other, env, g.mod), undefined, JSON.stringify(env));
      assert.deepEqual(g.calls, [], `${JSON.stringify(env)}: the user's choice stays`);
    }
    assert.equal(enableOwnCompileCache(other, {}, {}), undefined, 'node without enableCompileCache (20)');
    assert.throws(() => statSync(other), { code: 'ENOENT' }, 'and nothing is made for it');
    assert.equal(enableOwnCompileCache(dir, {}, fakeModule(3).mod), undefined, 'a status other than ENABLED');
    assert.equal(enableOwnCompileCache(dir, {}, fakeModule(ENABLED, true).mod), undefined, 'a throw');
  } finally {
    process.umask(old);
    t.cleanup();
  }
});

test('the compile cache is never a directory someone else can enter, a link or a file', () => {
  const t = tempDir();
  try {
    const cases: [string, (p: string) => void][] = [
      ['writable by others', (p) => { mkdirSync(p); chmodSync(p, 0o757); }],
      ['writable by the group', (p) => { mkdirSync(p); chmodSync(p, 0o770); }],
      ['a link to a directory of ours', (p) => { const d = `${p}-real`; mkdirSync(d, { mode: 0o700 }); symlinkSync(d, p); }],
      ['a file', (p) => writeFileSync(p, '', { mode: 0o600 })],
    ];
    if (process.getuid?.() === 0) cases.push(["another user's", (p) => { mkdirSync(p, { mode: 0o700 }); chownSync(p, 65534, 65534); }]);
    for (const [name, make] of cases) {
      const p = join(t.dir, name.replace(/\W+/g, '-'));
      make(p);
      assert.equal(isOwnPrivateDir(p), false, name);
      const f = fakeModule();
      assert.equal(enableOwnCompileCache(p, {}, f.mod), undefined, name);
      assert.deepEqual(f.calls, [], `${name}: not enabled`);
    }
    // node makes its entries inside with the process's umask (a subdirectory 0777 under umask 000):
    // a directory others can enter would leave those open to them
    const open = join(t.dir, 'open');
    mkdirSync(open);
    chmodSync(open, 0o755);
    assert.equal(isOwnPrivateDir(open), false, 'one others can enter');
    chmodSync(open, 0o701);
    assert.equal(isOwnPrivateDir(open), false, 'one others can pass through');
    chmodSync(open, 0o700);
    assert.equal(isOwnPrivateDir(open), true, 'ours alone');
  } finally {
    t.cleanup();
  }
});
