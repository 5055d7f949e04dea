#!/usr/bin/env node
// `npm run bench`: checks its options before anything runs, builds, then runs the four benches in
// turn with the options each takes (npm would append them to the last command of a chain only).
// Usage: npm run bench [-- --quick] [-- --wait-quiet] [-- --help]
//   --quick: smoke runs, printed only (BENCHMARKS.md untouched); --wait-quiet: first wait up to
//   10 min for the 1-minute load average to drop below 0.5 (other jobs skew every figure).
// Each bench also runs alone: node dist/scripts/<bench>.js --help.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const USAGE = `Usage: npm run bench [-- --quick] [-- --wait-quiet]
  runs, after the build: bench.js (codecs), bench-zstd.js, bench-backup.js, bench-many.js
  --quick       smoke runs, printed only (BENCHMARKS.md untouched)
  --wait-quiet  first wait up to 10 min for the load average to drop below 0.5
Each bench alone, with its own options: node dist/scripts/<bench>.js --help`;

const args = process.argv.slice(2);
if (args.includes('--help') || args.includes('-h')) {
  console.log(USAGE);
  process.exit(0);
}
const unknown = args.find((a) => a !== '--quick' && a !== '--wait-quiet');
const twice = args.find((a, i) => args.indexOf(a) !== i);
if (unknown !== undefined || twice !== undefined) {
  console.error(`${unknown !== undefined ? `unknown option ${unknown}` : `${twice} is given twice`}\n${USAGE}`);
  process.exit(2);
}
const quick = args.includes('--quick') ? ['--quick'] : [];
const root = fileURLToPath(new URL('..', import.meta.url));
const steps = [
  ['npm', ['run', 'build']],
  // the wait comes once, before the first bench
  [process.execPath, ['dist/scripts/bench.js', ...quick, ...(args.includes('--wait-quiet') ? ['--wait-quiet'] : [])]],
  [process.execPath, ['dist/scripts/bench-zstd.js', ...quick]],
  [process.execPath, ['dist/scripts/bench-backup.js', ...quick]],
  [process.execPath, ['dist/scripts/bench-many.js', ...quick]],
];
for (const [cmd, argv] of steps) {
  const r = spawnSync(cmd, argv, { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) {
    console.error(`${[cmd === process.execPath ? 'node' : cmd, ...argv].join(' ')} failed (${r.error?.message ?? (r.signal ?? `exit ${r.status}`)})`);
    process.exit(r.status ?? 1);
  }
}
