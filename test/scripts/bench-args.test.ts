// The bench scripts check their options before any work: `--help` prints the usage and exits 0,
// an unknown option, one given twice, or a missing or malformed value stops the script with
// status 2 and writes nothing (an ignored option once ran the whole bench and recorded it under a
// command line that was not what ran; a NaN count ran none). `npm run bench` is a driver that
// checks its own options before it builds anything (npm appends them to its one command).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { run, ROOT } from '../helpers/cli.js';
import { BENCHMARKS_MD } from '../../scripts/bench-report.js';

const SCRIPTS = ['bench.js', 'bench-zstd.js', 'bench-backup.js', 'bench-many.js'];
const bench = (script: string, ...args: string[]) => run(process.execPath, [join(ROOT, 'dist/scripts', script), ...args]);

test('bench scripts: --help, unknown options, repeats and bad values are answered before anything runs', { timeout: 60_000 }, () => {
  const before = readFileSync(BENCHMARKS_MD, 'utf8');
  for (const s of [...SCRIPTS, 'bench-start.js']) {
    const help = bench(s, '--help');
    assert.equal(help.status, 0, `${s} --help: ${help.stderr}`);
    assert.match(help.stdout, /^Usage: /, s);
  }
  for (const s of SCRIPTS) {
    const unknown = bench(s, '--restor-only');
    assert.equal(unknown.status, 2, `${s} with an unknown option: ${unknown.stdout}`);
    assert.match(unknown.stderr, /^unknown option --restor-only\nUsage: /, s);
    assert.equal(unknown.stdout, '', s);
    const twice = bench(s, '--quick', '--quick');
    assert.equal(twice.status, 2, s);
    assert.match(twice.stderr, /^--quick is given twice\n/, s);
  }
  const bad: [string, string[], RegExp][] = [
    ['bench-backup.js', ['--quick', '--repeat'], /^--repeat needs a positive integer\n/],
    ['bench-backup.js', ['--quick', '--repeat', 'x'], /^--repeat needs a positive integer, got 'x'\n/],
    ['bench-backup.js', ['--quick', '--repeat', '0'], /^--repeat needs a positive integer, got '0'\n/],
    ['bench-backup.js', ['--data-mib', '--quick'], /^--data-mib needs a positive integer, got '--quick'\n/],
    ['bench-zstd.js', ['--reps', '2.5'], /^--reps needs a positive integer, got '2.5'\n/],
    ['bench-many.js', ['--counts', '10,x'], /^--counts needs a comma list of positive integers, got '10,x'\n/],
    ['bench-many.js', ['--vms-19', '-3'], /^--vms-19 needs a positive integer, got '-3'\n/],
  ];
  for (const [s, args, message] of bad) {
    const r = bench(s, ...args);
    assert.equal(r.status, 2, `${s} ${args.join(' ')}: ${r.stdout}`);
    assert.match(r.stderr, message, `${s} ${args.join(' ')}`);
  }
  assert.equal(readFileSync(BENCHMARKS_MD, 'utf8'), before, 'BENCHMARKS.md untouched');
});

test('npm run bench: its driver answers --help and refuses an unknown option before the build', { timeout: 60_000 }, () => {
  const driver = join(ROOT, 'scripts/bench-all.mjs');
  const help = run(process.execPath, [driver, '--help']);
  assert.equal(help.status, 0, help.stderr);
  assert.match(help.stdout, /^Usage: npm run bench /);
  for (const args of [['--restore-only'], ['--quick', '--quick']]) {
    const r = run(process.execPath, [driver, ...args]);
    assert.equal(r.status, 2, `${args.join(' ')}: ${r.stdout}`);
    assert.match(r.stderr, /^(unknown option --restore-only|--quick is given twice)\nUsage: npm run bench /);
    assert.equal(r.stdout, '', 'nothing ran (the build prints its steps)');
  }
  assert.equal(JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).scripts.bench, 'node scripts/bench-all.mjs');
});
