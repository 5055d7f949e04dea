#!/usr/bin/env node
// Second step of `npm run build` (after tsc): one file each for the two commands and the worker
// entry, next to the compiled entries (dist/src/main/cli/*.bundle.mjs, dist/src/workers/pool-entry.bundle.mjs).
// Why: node spends ~0.2 s of a run's start resolving, reading and compiling ~250 modules (ours and
// our dependencies'), one core busy and the other idle; one file loads in ~0.08 s (BENCHMARKS.md).
// The bundles are made from the compiled JavaScript, so they hold exactly what tsc emitted.
// The launchers in bin/ and the worker pool use a bundle only when it is newer than its compiled
// entry (a later tsc-only build is never shadowed by an older bundle); without one they load the
// modules as before.
// Kept outside: piscina (it starts its own worker script by path). The bundles sit at the same depth
// as the modules that compute paths from import.meta.url (the worker file), and VERSION is inlined
// (version.js reads package.json relative to itself).
import { build } from 'esbuild';
import { readFileSync, readdirSync, rmSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const version = JSON.parse(readFileSync(`${root}package.json`, 'utf8')).version;

/** version.js reads ../../../package.json at run time, a path only right for its own place. */
const inlineVersion = {
  name: 'inline-version',
  setup(b) {
    b.onLoad({ filter: /[\\/]dist[\\/]src[\\/]main[\\/]version\.js$/ }, () => ({ contents: `export const VERSION = ${JSON.stringify(version)};\n`, loader: 'js' }));
  },
};

// CommonJS dependencies bundled into an ES module still ask for require, __filename and __dirname.
const banner = [
  "import { createRequire as __bundleRequire } from 'node:module';",
  "import { fileURLToPath as __bundlePath } from 'node:url';",
  'const require = __bundleRequire(import.meta.url);',
  'const __filename = __bundlePath(import.meta.url);',
  "const __dirname = __bundlePath(new URL('.', import.meta.url));",
].join(' ');

// Each command also gets its start file (<command>.start.mjs, from <command>.start.js: src/main/cli/start.ts),
// which the launcher runs: it prepares the process, then loads the command's bundle (not part of it:
// its import is by a computed URL). Made after the bundles, so that a start file is never newer than
// the bundle it loads.
const entries = [
  ['dist/src/main/cli/qvm-backup.js', 'dist/src/main/cli/qvm-backup.bundle.mjs'],
  ['dist/src/main/cli/qvm-backup-restore.js', 'dist/src/main/cli/qvm-backup-restore.bundle.mjs'],
  ['dist/src/workers/pool-entry.js', 'dist/src/workers/pool-entry.bundle.mjs'],
  ['dist/src/main/cli/qvm-backup.start.js', 'dist/src/main/cli/qvm-backup.start.mjs'],
  ['dist/src/main/cli/qvm-backup-restore.start.js', 'dist/src/main/cli/qvm-backup-restore.start.mjs'],
];

// node >= 22.8 caches the bundles' compiled code there (src/main/cli/start.ts); a
// new build has new bundles, whose entries would only pile up beside the old ones'
// (only tidying: node rejects an entry whose source changed). Best effort: a cache root made
// when running from this checkout is root's, and must not fail the build of the checkout's owner.
try {
  rmSync(`${root}dist/.compile-cache`, { recursive: true, force: true });
} catch (e) {
  console.warn(`bundle: dist/.compile-cache left as it is (${e.code ?? e.message})`);
}

// What a command imports only when it needs it (execa, ~0.3 MB with its dependencies: loaded by
// io/spawn.ts before the first process a run starts through it) goes into a file of its own beside
// the bundle (code splitting): a restore of VM images never starts one, and its start no longer
// parses it (~20 ms of a Node 20 start here, one core busy: BENCHMARKS.md). The chunk files are
// named by their content; those of an earlier build are removed first.
const CHUNK = /^(chunk|execa)-[A-Z0-9]{8}\.mjs$/;
for (const dir of new Set(entries.map(([, out]) => dirname(`${root}${out}`)))) {
  for (const name of readdirSync(dir)) if (CHUNK.test(name)) rmSync(join(dir, name), { force: true });
}

for (const [entry, out] of entries) {
  const split = out.endsWith('.bundle.mjs') && out.includes('/cli/');
  await build({
    entryPoints: { [basename(out, '.mjs')]: `${root}${entry}` },
    outdir: dirname(`${root}${out}`),
    outExtension: { '.js': '.mjs' },
    splitting: split,
    chunkNames: '[name]-[hash]',
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    external: ['piscina'],
    plugins: [inlineVersion],
    banner: { js: banner },
    legalComments: 'none',
    logLevel: 'warning',
  });
}
