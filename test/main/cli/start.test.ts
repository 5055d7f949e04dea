// The start file's steps (src/main/cli/start.ts), each on its own: the moved NODE_EXTRA_CA_CERTS put
// back, and the compile cache enabled only in a directory that is ours alone. The whole, through the
// launchers, is in test/e2e/compile-cache.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, chownSync, mkdirSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { enableOwnCompileCache, isOwnPrivateDir, restoreMovedEnv } from '../../../src/main/cli/start.js';
import { tempDir } from '../../helpers/cli.js';

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
  restoreMovedEnv(env);
  assert.deepEqual(env, { NODE_EXTRA_CA_CERTS: '/etc/certs with space.pem', OTHER: 'x' });
  const empty: NodeJS.ProcessEnv = { QVMB_NODE_EXTRA_CA_CERTS: '' };
  restoreMovedEnv(empty);
  assert.deepEqual(empty, { NODE_EXTRA_CA_CERTS: '' });
  const none: NodeJS.ProcessEnv = { NODE_EXTRA_CA_CERTS: '/a' };
  restoreMovedEnv(none);
  assert.deepEqual(none, { NODE_EXTRA_CA_CERTS: '/a' }, 'nothing moved: left as it is');
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

test('the compile cache is never a directory someone else can write, a link or a file', () => {
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
    const ours = join(t.dir, 'ours');
    mkdirSync(ours, { mode: 0o700 });
    chmodSync(ours, 0o755);
    assert.equal(isOwnPrivateDir(ours), true, 'readable by others is fine: only writing is code');
  } finally {
    t.cleanup();
  }
});
