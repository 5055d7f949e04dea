// One process per command: the installed commands (bin/ launchers) exec node, so the PID the user
// started is the command itself; `kill -9` of it leaves nothing that goes on writing or installing
// (tar, filters and commands end on EOF/EPIPE), and no archive is ever renamed into place.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, readdirSync, readFileSync, existsSync, mkdirSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir, passFile, node, run, BACKUP_BIN, BACKUP_CMD, RESTORE_CMD, ROOT, launcherEnv, sampleIn } from '../helpers/cli.js';
import { alive, cmdline, descendants, environOf, exeOf, waitFor } from '../helpers/processes.js';

const MiB = 1024 * 1024;

function sample(dir: string) {
  return sampleIn(dir, { bigImageBytes: 64 * MiB, bigDataBytes: 12 * MiB, smallImageBytes: 8 * MiB, smallDataBytes: 256 * 1024 });
}

function exitOf(child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  return new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
}

/** Start a launcher with stderr captured; `kill()` SIGKILLs whatever of its tree is left (cleanup). */
function launch(cmd: string, args: string[], env: NodeJS.ProcessEnv = {}) {
  const child = spawn(cmd, args, { stdio: ['pipe', 'ignore', 'pipe'], env: launcherEnv(env) });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const seen = new Set<number>();
  const exited = exitOf(child);
  return {
    child,
    exited,
    stderr: () => stderr,
    tree(): number[] {
      const d = descendants(child.pid!);
      for (const p of d) seen.add(p);
      return d;
    },
    cleanup(): void {
      for (const p of [child.pid!, ...seen]) if (alive(p)) process.kill(p, 'SIGKILL');
    },
  };
}

/** kill -9 the started PID as soon as one of its processes matches `at` (checked and killed in the
 *  same tick, so a short-lived tar is still there); every process of its tree then must be gone soon
 *  after. */
async function kill9AndCheckNothingLives(l: ReturnType<typeof launch>, what: string, at: RegExp): Promise<void> {
  let tree: number[] = [];
  let names = new Map<number, string>();
  await waitFor(what, () => {
    tree = l.tree();
    names = new Map(tree.map((p) => [p, cmdline(p)]));
    if (![...names.values()].some((c) => at.test(c))) return false;
    process.kill(l.child.pid!, 'SIGKILL');
    return true;
  });
  const { signal } = await l.exited;
  assert.equal(signal, 'SIGKILL');
  await waitFor('every process of the killed run to end', () => tree.every((p) => !alive(p)), 15_000).catch(() => {
    assert.fail(`still running after kill -9 of ${l.child.pid}: ${tree.filter(alive).map((p) => `${p} ${names.get(p)}`).join('; ')}`);
  });
}

/** GLIBC_TUNABLES as the process was started with. glibc's loader, parsing the variable, writes a
 *  NUL after the first tunable it knows (glibc 2.36), so the rest shows up as separate entries. */
function tunablesOf(pid: number): string | undefined {
  const env = environOf(pid);
  const i = env.findIndex((e) => e.startsWith('GLIBC_TUNABLES='));
  if (i < 0) return undefined;
  const parts = [env[i]!.slice('GLIBC_TUNABLES='.length)];
  for (let j = i + 1; j < env.length && env[j]!.startsWith('glibc.'); j++) parts.push(env[j]!);
  return parts.join(':');
}

/** the malloc thresholds the launchers fix (bin/qvm-backup: a 16 MiB derivation mapped with huge pages every time) */
const THRESHOLDS = 'glibc.malloc.mmap_threshold=8388608:glibc.malloc.trim_threshold=67108864';

test('the launcher execs node: the started PID is node itself, with the malloc tunables unless QVMB_HUGEPAGES=0', async () => {
  const t = tempDir();
  try {
    const { root, home } = sample(t.dir);
    const cases: [NodeJS.ProcessEnv, string | undefined][] = [
      [{ GLIBC_TUNABLES: undefined }, `glibc.malloc.hugetlb=1:${THRESHOLDS}`],
      [{ GLIBC_TUNABLES: 'glibc.malloc.check=0' }, `glibc.malloc.check=0:glibc.malloc.hugetlb=1:${THRESHOLDS}`],
      [{ GLIBC_TUNABLES: 'glibc.malloc.hugetlb=0' }, `glibc.malloc.hugetlb=0:${THRESHOLDS}`],
      // each one the environment sets stays as it is
      [{ GLIBC_TUNABLES: 'glibc.malloc.mmap_threshold=65536' }, 'glibc.malloc.mmap_threshold=65536:glibc.malloc.hugetlb=1:glibc.malloc.trim_threshold=67108864'],
      // ... also where set by glibc's older variables (review: the launcher's value won over them)
      [{ GLIBC_TUNABLES: undefined, MALLOC_MMAP_THRESHOLD_: '65536', MALLOC_TRIM_THRESHOLD_: '0' }, 'glibc.malloc.hugetlb=1'],
      [{ GLIBC_TUNABLES: undefined, QVMB_HUGEPAGES: '0' }, undefined],
    ];
    for (const [env, expected] of cases) {
      // -p -: the run waits for the passphrase on stdin, a state in which to look at the process
      const l = launch(BACKUP_CMD, ['--qubes-root', root, '--dom0-home', home, '-y', '-p', '-', join(t.dir, 'x.bin')], env);
      try {
        await waitFor('the plan', () => l.stderr().includes('Total size:'));
        assert.equal(exeOf(l.child.pid!), process.execPath, 'the started PID runs node (the launcher exec()ed it)');
        assert.deepEqual(l.tree(), [], 'no second process');
        assert.equal(tunablesOf(l.child.pid!), expected, JSON.stringify(env));
        l.child.stdin!.end('');
        const { code } = await l.exited;
        assert.equal(code, 2, l.stderr()); // empty passphrase
      } finally {
        l.cleanup();
      }
    }
  } finally {
    t.cleanup();
  }
});

for (const dest of ['file', 'command'] as const) {
  test(`kill -9 of a backup (${dest} destination) leaves no process and nothing renamed into place`, { timeout: 120_000 }, async () => {
    const t = tempDir();
    try {
      const { root, home } = sample(t.dir);
      const pw = passFile(t.dir);
      const out = join(t.dir, 'out');
      mkdirSync(out);
      const target = dest === 'file' ? [out] : ['--dest-command', `cat > '${join(out, 'via-command.bin')}'`, 'loc'];
      const l = launch(BACKUP_CMD, ['-q', '--qubes-root', root, '--dom0-home', home, '-p', pw, '-y', '--scrypt-logn', '16', '--chunk-size', '1M', ...target]);
      try {
        // the hole-map helper lives through the whole backup, a tar only while it archives a directory
        await kill9AndCheckNothingLives(l, 'tar or the hole-map helper reading a VM', /\btar -Pc|\bperl -e/);
        const left = readdirSync(out);
        if (dest === 'file') assert.ok(left.every((n) => n.includes('.partial-')), `only a partial file may be left: ${left.join(' ')}`);
        assert.doesNotMatch(readFileSync(join(root, 'qubes.xml'), 'utf8'), /backup_timestamp/, 'backup_timestamp not set');
      } finally {
        l.cleanup();
      }
    } finally {
      t.cleanup();
    }
  });
}

test('kill -9 of a restore leaves no process: nothing is installed after the kill', { timeout: 120_000 }, async () => {
  const t = tempDir();
  try {
    const { root, home } = sample(t.dir);
    // a home file that keeps the home's `tar -x` alive for a while: the sample's directory archives
    // are extracted in milliseconds, and the 20 ms polling below could miss every one of them (CI)
    writeFileSync(join(home, 'zeros.bin'), Buffer.alloc(128 * MiB));
    const pw = passFile(t.dir);
    const archive = join(t.dir, 'b.bin');
    const b = node(BACKUP_BIN, ['-q', '--qubes-root', root, '--dom0-home', home, '-p', pw, '-y', '--scrypt-logn', '14', '--chunk-size', '1M', archive]);
    assert.equal(b.status, 0, b.stderr);
    const host = join(t.dir, 'host');
    const hostHome = join(t.dir, 'hh', 'user');
    mkdirSync(hostHome, { recursive: true });
    const l = launch(RESTORE_CMD, ['-q', '-y', '-p', pw, '--qubes-root', host, '--dom0-home', hostHome, archive]);
    try {
      await kill9AndCheckNothingLives(l, 'tar extracting', /\btar\b.* -x/);
      const installed = ['appvms', 'vm-templates'].flatMap((d) => (existsSync(join(host, d)) ? readdirSync(join(host, d)) : []));
      assert.ok(installed.length < 5, `the run stopped at the kill: installed ${installed.join(' ')}`);
    } finally {
      l.cleanup();
    }
  } finally {
    t.cleanup();
  }
});

test('npm packs the launchers as the bins, executable, with the entries they start', () => {
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { bin: Record<string, string>; files: string[] };
  assert.deepEqual(pkg.bin, { 'qvm-backup': 'bin/qvm-backup', 'qvm-backup-restore': 'bin/qvm-backup-restore' });
  const r = run('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: ROOT });
  assert.equal(r.status, 0, r.stderr);
  const files = new Map((JSON.parse(r.stdout) as { files: { path: string; mode: number }[] }[])[0]!.files.map((f) => [f.path, f.mode]));
  for (const [name, path] of Object.entries(pkg.bin)) {
    assert.ok(files.has(path), `${path} is packed`);
    assert.ok((files.get(path)! & 0o111) !== 0 && (statSync(join(ROOT, path)).mode & 0o111) !== 0, `${path} is executable`);
    const entry = `dist/src/main/cli/${name}`;
    assert.ok(files.has(`${entry}.js`), `${entry}.js is packed`);
    assert.ok(files.has(`${entry}.bundle.mjs`), `${entry}.bundle.mjs is packed`);
    assert.ok(files.has(`${entry}.start.mjs`), `${entry}.start.mjs is packed`);
    const text = readFileSync(join(ROOT, path), 'utf8');
    assert.ok(text.includes(`\nentry="$root/${entry}"\n`), text);
    assert.match(text, /^#!\/bin\/sh\n[\s\S]*\n {2}exec node "\$entry\.start\.mjs" "\$@"\nfi\nexec node "\$entry\.js" "\$@"\n$/);
    const v = run(join(ROOT, path), ['--version'], { env: launcherEnv() });
    assert.equal(v.status, 0, v.stderr);
    assert.match(v.stdout, /^\d+\.\d+\.\d+\n$/);
  }
});

test('the launcher runs the start file when it is not older than the compiled entry, else the entry; from a link (to it or its directory), a relative path or none', () => {
  const t = tempDir();
  try {
    const bin = join(t.dir, 'bin');
    const cli = join(t.dir, 'dist/src/main/cli');
    mkdirSync(bin);
    mkdirSync(cli, { recursive: true });
    copyFileSync(join(ROOT, 'bin/qvm-backup-restore'), join(bin, 'qvm-backup-restore'));
    const plain = join(cli, 'qvm-backup-restore.js');
    const started = join(cli, 'qvm-backup-restore.start.mjs');
    writeFileSync(plain, 'console.log("entry", process.argv.slice(2).join(" "));\n');
    const ran = (cmd = join(bin, 'qvm-backup-restore'), cwd?: string): string => {
      const r = run(cmd, ['a b', 'c'], { env: launcherEnv(), ...(cwd !== undefined ? { cwd } : {}) });
      assert.equal(r.status, 0, r.stderr);
      return r.stdout;
    };
    assert.equal(ran(), 'entry a b c\n', 'no start file: the entry');
    writeFileSync(started, 'console.log("start", process.argv.slice(2).join(" "));\n');
    const now = Date.now() / 1000;
    utimesSync(plain, now - 10, now - 10);
    utimesSync(started, now, now);
    assert.equal(ran(), 'start a b c\n', 'newer start file');
    // npm links the commands into its bin directory; the link is followed to the package
    const links = join(t.dir, 'links');
    mkdirSync(links);
    symlinkSync(join(bin, 'qvm-backup-restore'), join(links, 'qvm-backup-restore'));
    assert.equal(ran(join(links, 'qvm-backup-restore')), 'start a b c\n', 'started through a link');
    // a link to the directory: node would not follow it at "bin/..", so the launcher must
    symlinkSync(bin, join(links, 'bin'));
    assert.equal(ran(join(links, 'bin/qvm-backup-restore')), 'start a b c\n', 'started through a link to its directory');
    assert.equal(ran('bin/qvm-backup-restore', links), 'start a b c\n', 'the same, by a relative path');
    assert.equal(ran('bin/qvm-backup-restore', t.dir), 'start a b c\n', 'a relative path');
    const bare = run('sh', ['qvm-backup-restore', 'a b', 'c'], { env: launcherEnv(), cwd: bin });
    assert.equal(bare.status, 0, bare.stderr);
    assert.equal(bare.stdout, 'start a b c\n', 'a path without a slash');
    utimesSync(started, now - 10, now - 10);
    assert.equal(ran(), 'start a b c\n', 'same time (npm pack gives every file one date)');
    utimesSync(plain, now, now);
    assert.equal(ran(), 'entry a b c\n', 'an older start file never shadows a later build');
  } finally {
    t.cleanup();
  }
});
