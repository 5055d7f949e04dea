// What the launchers set up before the command's bundle (bin/qvm-backup, src/main/cli/start.ts):
// node >= 22.8 keeps the bundles' compiled code beside them in dist/.compile-cache, for the main
// thread and the workers; no process we spawn inherits the variable; a cache the user chose (or
// disabled) is left alone. Node starts with the launcher's malloc tunables and without
// NODE_EXTRA_CA_CERTS, and the programs we spawn get both as the user set them.
// Run on a copy of the installed layout (bin/, the bundles, node_modules linked), so that the
// cache directory is this test's own.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, copyFileSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { ROOT, launcherEnv, passFile, sampleIn, tempDir } from '../helpers/cli.js';

const MiB = 1024 * 1024;
/** node:module.enableCompileCache exists from node 22.8 on */
const NODE_HAS_COMPILE_CACHE = typeof (createRequire(import.meta.url)('node:module') as { enableCompileCache?: unknown }).enableCompileCache === 'function';
const BUNDLED = ['dist/src/main/cli/qvm-backup.bundle.mjs', 'dist/src/main/cli/qvm-backup.start.mjs', 'dist/src/workers/pool-entry.bundle.mjs'].every((f) => existsSync(join(ROOT, f)));

/** bin/qvm-backup and what it runs, copied to `dir` (the worker entry's plain module only as the older
 *  stand-in the bundle is chosen over). */
function installCopy(dir: string): string {
  for (const d of ['bin', 'dist/src/main/cli', 'dist/src/workers']) mkdirSync(join(dir, d), { recursive: true });
  copyFileSync(join(ROOT, 'bin/qvm-backup'), join(dir, 'bin/qvm-backup'));
  copyFileSync(join(ROOT, 'dist/src/main/cli/qvm-backup.bundle.mjs'), join(dir, 'dist/src/main/cli/qvm-backup.bundle.mjs'));
  copyFileSync(join(ROOT, 'dist/src/main/cli/qvm-backup.start.mjs'), join(dir, 'dist/src/main/cli/qvm-backup.start.mjs'));
  // the code the bundle loads only when it needs it (scripts/bundle.mjs: execa), and what it shares with that
  for (const f of readdirSync(join(ROOT, 'dist/src/main/cli')).filter((n) => /^(chunk|execa)-\w+\.mjs$/.test(n))) copyFileSync(join(ROOT, 'dist/src/main/cli', f), join(dir, 'dist/src/main/cli', f));
  copyFileSync(join(ROOT, 'dist/src/workers/pool-entry.bundle.mjs'), join(dir, 'dist/src/workers/pool-entry.bundle.mjs'));
  writeFileSync(join(dir, 'dist/src/workers/pool-entry.js'), '');
  utimesSync(join(dir, 'dist/src/workers/pool-entry.js'), 1_000_000, 1_000_000);
  symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'));
  return join(dir, 'bin/qvm-backup');
}

/** The names of the files node cached code for in `dir` (each cache file names its source). */
function cachedSources(dir: string): string[] {
  if (!existsSync(dir)) return [];
  const names: string[] = [];
  for (const sub of readdirSync(dir)) {
    for (const f of readdirSync(join(dir, sub))) {
      const m = /[\w.-]+\.bundle\.mjs/.exec(readFileSync(join(dir, sub, f)).toString('latin1'));
      if (m) names.push(m[0]);
    }
  }
  return names;
}

test('the launcher caches the compiled bundles in dist/.compile-cache, and nothing spawned inherits it', { skip: !BUNDLED && 'no bundles (npm run build)', timeout: 120_000 }, () => {
  const t = tempDir();
  try {
    const { root, home } = sampleIn(t.dir, { bigImageBytes: 16 * MiB, bigDataBytes: 2 * MiB, smallImageBytes: 4 * MiB, smallDataBytes: 64 * 1024 });
    const pw = passFile(t.dir);
    const cmd = installCopy(join(t.dir, 'install'));
    const cache = join(t.dir, 'install/dist/.compile-cache');
    const userCache = join(t.dir, 'user-cache');
    const certs = join(t.dir, 'certs with spaces.pem');
    writeFileSync(certs, '');
    const cases: { name: string; env: NodeJS.ProcessEnv; childSees: string | undefined; ours: boolean; certs?: string | undefined; tunables?: string }[] = [
      { name: 'default', env: {}, childSees: undefined, ours: NODE_HAS_COMPILE_CACHE },
      { name: "the user's cache", env: { NODE_COMPILE_CACHE: userCache }, childSees: userCache, ours: false },
      { name: 'disabled', env: { NODE_DISABLE_COMPILE_CACHE: '1' }, childSees: undefined, ours: false },
      // the marker the launchers used before the start file: nothing reads it any more
      { name: 'a stray QVMB_OWN_COMPILE_CACHE', env: { NODE_COMPILE_CACHE: userCache, QVMB_OWN_COMPILE_CACHE: '1' }, childSees: userCache, ours: false },
      { name: 'NODE_EXTRA_CA_CERTS', env: { NODE_EXTRA_CA_CERTS: certs }, childSees: undefined, ours: NODE_HAS_COMPILE_CACHE, certs },
      { name: 'NODE_EXTRA_CA_CERTS empty', env: { NODE_EXTRA_CA_CERTS: '' }, childSees: undefined, ours: NODE_HAS_COMPILE_CACHE, certs: '' },
      // a value the launcher did not move must not come back as NODE_EXTRA_CA_CERTS
      { name: 'a stray QVMB_NODE_EXTRA_CA_CERTS', env: { QVMB_NODE_EXTRA_CA_CERTS: certs }, childSees: undefined, ours: NODE_HAS_COMPILE_CACHE },
      // the launcher's malloc tunables are node's alone
      { name: "the user's GLIBC_TUNABLES", env: { GLIBC_TUNABLES: 'glibc.malloc.check=0:glibc.malloc.tcache_count=0' }, childSees: undefined, ours: NODE_HAS_COMPILE_CACHE, tunables: 'glibc.malloc.check=0:glibc.malloc.tcache_count=0' },
      { name: 'GLIBC_TUNABLES empty', env: { GLIBC_TUNABLES: '' }, childSees: undefined, ours: NODE_HAS_COMPILE_CACHE, tunables: '' },
      { name: 'QVMB_HUGEPAGES=0', env: { GLIBC_TUNABLES: 'glibc.malloc.check=0', QVMB_HUGEPAGES: '0' }, childSees: undefined, ours: NODE_HAS_COMPILE_CACHE, tunables: 'glibc.malloc.check=0' },
      { name: 'a stray QVMB_USER_GLIBC_TUNABLES', env: { QVMB_USER_GLIBC_TUNABLES: '=glibc.malloc.check=0' }, childSees: undefined, ours: NODE_HAS_COMPILE_CACHE },
    ];
    for (const c of cases) {
      const envFile = join(t.dir, `env-${cases.indexOf(c)}.txt`);
      // the command's shell is started by the wrapper that checks what it left unread (command-sink.ts),
      // whose parent is node: what node was started with is in that one's /proc environ
      const dest = `node_pid=$(awk '{print $4}' /proc/$PPID/stat); env > '${envFile}'; tr '\\0' '\\n' < /proc/$node_pid/environ > '${envFile}.node'; cat > /dev/null`;
      const r = spawnSync(cmd, ['-q', '--threads', '2', '--qubes-root', root, '--dom0-home', home, '-p', pw, '-y', '--scrypt-logn', '10', '--dest-command', dest, 'loc'], {
        env: launcherEnv({ NODE_COMPILE_CACHE: undefined, NODE_DISABLE_COMPILE_CACHE: undefined, QVMB_OWN_COMPILE_CACHE: undefined, NODE_EXTRA_CA_CERTS: undefined, QVMB_NODE_EXTRA_CA_CERTS: undefined, GLIBC_TUNABLES: undefined, QVMB_USER_GLIBC_TUNABLES: undefined, QVMB_HUGEPAGES: undefined, ...c.env }),
        encoding: 'utf8',
        timeout: 100_000,
      });
      assert.equal(r.status, 0, `${c.name}: ${r.stderr}`);
      const env = readFileSync(envFile, 'utf8').split('\n');
      const nodeEnv = readFileSync(`${envFile}.node`, 'utf8').split('\n');
      assert.ok(nodeEnv.some((l) => l.startsWith('PATH=')), `${c.name}: node's environ was read`);
      // (glibc's loader writes a NUL after the first tunable it knows: the rest shows as entries of their own)
      if (c.env['QVMB_HUGEPAGES'] !== '0') assert.ok(nodeEnv.some((l) => /^(GLIBC_TUNABLES=)?glibc\.malloc\.hugetlb=1(:|$)/.test(l)), `${c.name}: node got the launcher's tunables`);
      assert.deepEqual(env.filter((l) => l.startsWith('GLIBC_TUNABLES=')), c.tunables === undefined ? [] : [`GLIBC_TUNABLES=${c.tunables}`], `${c.name}: the command gets the user's GLIBC_TUNABLES`);
      assert.deepEqual(env.filter((l) => l.startsWith('QVMB_USER_GLIBC_TUNABLES=')), [], c.name);
      assert.deepEqual(env.filter((l) => l.startsWith('NODE_COMPILE_CACHE=')), c.childSees === undefined ? [] : [`NODE_COMPILE_CACHE=${c.childSees}`], c.name);
      assert.deepEqual(env.filter((l) => l.startsWith('QVMB_NODE_EXTRA_CA_CERTS=')), [], c.name);
      assert.deepEqual(env.filter((l) => l.startsWith('NODE_EXTRA_CA_CERTS=')), c.certs === undefined ? [] : [`NODE_EXTRA_CA_CERTS=${c.certs}`], `${c.name}: the command gets it as the user set it`);
      assert.deepEqual(nodeEnv.filter((l) => l.startsWith('NODE_EXTRA_CA_CERTS=')), [], `${c.name}: node started without it`);
      const cached = cachedSources(cache);
      if (c.ours) {
        assert.ok(cached.includes('qvm-backup.bundle.mjs'), `the command's bundle is cached: ${cached.join(' ')}`);
        assert.ok(cached.includes('pool-entry.bundle.mjs'), `the workers' bundle is cached: ${cached.join(' ')}`);
      } else if (c.name === 'default') {
        assert.deepEqual(cached, [], 'node without a compile cache writes none');
      }
      if (c.name === "the user's cache" && NODE_HAS_COMPILE_CACHE) assert.ok(cachedSources(userCache).includes('qvm-backup.bundle.mjs'), "the user's cache is used");
    }
  } finally {
    t.cleanup();
  }
});

test('the start file uses dist/.compile-cache only as a directory of its own that no one else can write', { skip: !BUNDLED && 'no bundles (npm run build)', timeout: 60_000 }, () => {
  const t = tempDir();
  try {
    const cmd = installCopy(join(t.dir, 'install'));
    const cache = join(t.dir, 'install/dist/.compile-cache');
    const elsewhere = join(t.dir, 'elsewhere');
    // under umask 000: what the start file makes must still be its own alone
    const run = (): void => {
      const r = spawnSync('sh', ['-c', 'umask 000; exec "$0" "$@"', cmd, '--version'], { env: launcherEnv({ NODE_COMPILE_CACHE: undefined, NODE_DISABLE_COMPILE_CACHE: undefined, QVMB_OWN_COMPILE_CACHE: undefined }), encoding: 'utf8', timeout: 30_000 });
      assert.equal(r.status, 0, r.stderr);
    };
    run();
    if (NODE_HAS_COMPILE_CACHE) {
      assert.equal(statSync(cache).mode & 0o777, 0o700, 'made 0700');
      assert.ok(cachedSources(cache).includes('qvm-backup.bundle.mjs'), 'and used');
    } else {
      assert.equal(existsSync(cache), false, 'node without a compile cache: not made');
    }
    const unused: [string, () => void][] = [
      ['writable by others', () => {
        mkdirSync(cache);
        chmodSync(cache, 0o777);
      }],
      ['writable by the group', () => {
        mkdirSync(cache);
        chmodSync(cache, 0o770);
      }],
      ['a link to a directory of ours', () => {
        mkdirSync(elsewhere, { mode: 0o700 });
        symlinkSync(elsewhere, cache);
      }],
    ];
    // another user's directory, when the test may give it away
    if (process.getuid?.() === 0) unused.push(['another user\'s', () => {
      mkdirSync(cache, { mode: 0o700 });
      chownSync(cache, 65534, 65534);
    }]);
    for (const [name, make] of unused) {
      rmSync(cache, { recursive: true, force: true });
      rmSync(elsewhere, { recursive: true, force: true });
      make();
      run();
      assert.deepEqual(cachedSources(cache), [], `${name}: left unused`);
      if (existsSync(elsewhere)) assert.deepEqual(cachedSources(elsewhere), [], `${name}: not followed`);
      if (name.startsWith('a link')) assert.ok(lstatSync(cache).isSymbolicLink(), 'the link left as it is');
    }
  } finally {
    t.cleanup();
  }
});

test('under nohup a SIGHUP does not stop a backup (node resets signals as it starts; the launcher tells it); without, it stops it (129)', { timeout: 120_000 }, async () => {
  const t = tempDir('qvmb-nohup-');
  try {
    const { root, home } = sampleIn(t.dir, { bigImageBytes: 64 * 1024 * 1024, bigDataBytes: 24 * 1024 * 1024, smallImageBytes: 1024 * 1024, smallDataBytes: 64 * 1024 });
    const pw = passFile(t.dir);
    const cmd = join(ROOT, 'bin', 'qvm-backup');
    for (const nohup of [true, false]) {
      const out = join(t.dir, `out-${nohup}`);
      mkdirSync(out);
      const args = ['-q', '-y', '-p', pw, '--scrypt-logn', '14', '--qubes-root', root, '--dom0-home', home, out];
      const child = spawn(nohup ? 'nohup' : cmd, nohup ? [cmd, ...args] : args, { env: launcherEnv(), stdio: ['ignore', 'ignore', 'pipe'], cwd: t.dir });
      let err = '';
      child.stderr.on('data', (d: Buffer) => (err += d.toString()));
      const code = new Promise<number | null>((res) => child.once('exit', (c) => res(c)));
      // once it is at work (its partial file is there), the hangup
      for (let i = 0; i < 3000 && readdirSync(out).length === 0; i++) await new Promise((r) => setTimeout(r, 5));
      child.kill('SIGHUP');
      const c = await code;
      if (nohup) {
        assert.equal(c, 0, err);
        assert.equal(readdirSync(out).filter((n) => !n.startsWith('.')).length, 1, 'the archive is whole');
      } else {
        assert.equal(c, 129, err);
        assert.deepEqual(readdirSync(out), []);
      }
    }
  } finally {
    t.cleanup();
  }
});
