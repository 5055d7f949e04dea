// What `npm pack` makes of a fresh checkout (no dist/) is a working package: the `prepare` build
// runs, the tarball holds the launchers, their entries and the man pages, and installed into an
// empty prefix both commands run — version, help, and a small backup verified by the restore.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdirSync, readFileSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir, passFile, run, ROOT, launcherEnv, sampleIn } from '../helpers/cli.js';

const MiB = 1024 * 1024;

/** The environment without the npm_* variables of the `npm test` around us (they name this
 *  checkout as the project and would steer the nested npm to it). */
function cleanEnv(): NodeJS.ProcessEnv {
  const env = launcherEnv();
  for (const k of Object.keys(env)) if (/^npm_/i.test(k)) delete env[k];
  return env;
}

test('npm pack of a fresh checkout builds it; installed from the tarball both commands work', { timeout: 240_000 }, (t) => {
  const tmp = tempDir('qvmb-pack-');
  try {
    // a checkout as git has it: sources, no dist/ (node_modules linked: the build needs tsc)
    const src = join(tmp.dir, 'checkout');
    mkdirSync(src);
    for (const f of ['package.json', 'package-lock.json', 'tsconfig.json', 'README.md', 'bin', 'man', 'src', 'scripts/bundle.mjs']) cpSync(join(ROOT, f), join(src, f), { recursive: true });
    symlinkSync(join(ROOT, 'node_modules'), join(src, 'node_modules'));
    const env = cleanEnv();
    const packed = run('npm', ['pack', '--json', '--pack-destination', tmp.dir], { cwd: src, env });
    assert.equal(packed.status, 0, packed.stderr);
    const info = (JSON.parse(packed.stdout.slice(packed.stdout.search(/^\[/m))) as { filename: string; files: { path: string }[] }[])[0]!;
    const files = new Set(info.files.map((f) => f.path));
    for (const f of ['bin/qvm-backup', 'bin/qvm-backup-restore', 'dist/src/main/cli/qvm-backup.js', 'dist/src/main/cli/qvm-backup-restore.js', 'dist/src/workers/chunk-worker.js', 'dist/src/main/cli/qvm-backup.bundle.mjs', 'dist/src/main/cli/qvm-backup-restore.bundle.mjs', 'dist/src/main/cli/qvm-backup.start.mjs', 'dist/src/main/cli/qvm-backup-restore.start.mjs', 'dist/src/workers/pool-entry.bundle.mjs', 'dist/src/main/index.js', 'dist/src/main/index.d.ts', 'man/qvm-backup.1', 'man/qvm-backup-restore.1']) {
      assert.ok(files.has(f), `${f} is in the package`);
    }
    assert.ok(![...files].some((f) => f.startsWith('dist/test/') || f.startsWith('src/')), 'no tests or TypeScript sources in the package');

    const prefix = join(tmp.dir, 'prefix');
    // the dependencies come from npm's cache (filled by `npm ci`): no network
    const inst = run('npm', ['install', '-g', '--offline', '--no-audit', '--no-fund', '--prefix', prefix, join(tmp.dir, info.filename)], { env });
    if (inst.status !== 0 && /ENOTCACHED|ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ETIMEDOUT/.test(inst.stderr)) {
      t.skip('the dependencies are not in the npm cache and the network is not used: run `npm ci` first');
      return;
    }
    assert.equal(inst.status, 0, inst.stderr);
    const backup = join(prefix, 'bin', 'qvm-backup');
    const restore = join(prefix, 'bin', 'qvm-backup-restore');
    const version = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
    for (const [bin, name] of [[backup, 'qvm-backup'], [restore, 'qvm-backup-restore']] as const) {
      const v = run(bin, ['--version'], { env });
      assert.equal(v.status, 0, v.stderr);
      assert.equal(v.stdout, `${version}\n`);
      const h = run(bin, ['--help'], { env });
      assert.equal(h.status, 0, h.stderr);
      assert.match(h.stdout, new RegExp(`^Usage: ${name} \\[options\\]`));
      assert.ok(existsSync(join(prefix, 'share', 'man', 'man1', `${name}.1`)), `man page of ${name} installed`);
    }

    const { root, home } = sampleIn(tmp.dir, { bigImageBytes: 8 * MiB, bigDataBytes: MiB, smallImageBytes: 4 * MiB, smallDataBytes: 64 * 1024 });
    const pw = passFile(tmp.dir);
    const archive = join(tmp.dir, 'backup.bin');
    const b = run(backup, ['-q', '-y', '--scrypt-logn', '10', '--chunk-size', '1M', '--qubes-root', root, '--dom0-home', home, '-p', pw, archive, 'work', 'dom0'], { env });
    assert.equal(b.status, 0, b.stderr);
    const r = run(restore, ['-y', '--verify-only', '-p', pw, archive], { env });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /^done: work \(verified\)$/m);
    assert.match(r.stderr, /^done: dom0 home \(verified\)$/m);
    assert.match(r.stderr, /^Verification succeeded: 1 VM\(s\) and the dom0 home complete and authentic/m);

    // the library, imported by name from a project that has the package installed
    const proj = join(tmp.dir, 'project');
    mkdirSync(join(proj, 'node_modules'), { recursive: true });
    symlinkSync(join(prefix, 'lib', 'node_modules', 'qvm-backup'), join(proj, 'node_modules', 'qvm-backup'));
    const script = "const { verify } = await import('qvm-backup'); const r = await verify({ location: process.argv[1], passphrase: process.argv[2] }); console.log(JSON.stringify(r.vms.map((v) => v.name)), r.dom0User);";
    const l = run(process.execPath, ['--input-type=module', '-e', script, archive, 'correct horse battery staple'], { cwd: proj, env });
    assert.equal(l.status, 0, l.stderr);
    assert.equal(l.stdout, '["work"] user\n');
  } finally {
    tmp.cleanup();
  }
});
