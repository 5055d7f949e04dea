// The bench scripts check their options before any work: `--help` prints the usage and exits 0,
// an unknown option or a missing value stops the script with status 2 and writes nothing (an
// ignored option once ran the whole bench and recorded it under a command line that was not
// what ran).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { run, ROOT } from '../helpers/cli.js';
import { BENCHMARKS_MD } from '../../scripts/bench-report.js';

const SCRIPTS = ['bench.js', 'bench-zstd.js', 'bench-backup.js', 'bench-many.js'];

test('bench scripts: --help, unknown options and missing values are answered before anything runs', { timeout: 60_000 }, () => {
  const before = readFileSync(BENCHMARKS_MD, 'utf8');
  for (const s of SCRIPTS) {
    const script = join(ROOT, 'dist/scripts', s);
    const help = run(process.execPath, [script, '--help']);
    assert.equal(help.status, 0, `${s} --help: ${help.stderr}`);
    assert.match(help.stdout, /^Usage: /, s);
    const unknown = run(process.execPath, [script, '--restor-only']);
    assert.equal(unknown.status, 2, `${s} with an unknown option: ${unknown.stdout}`);
    assert.match(unknown.stderr, /^unknown option --restor-only\nUsage: /, s);
    assert.equal(unknown.stdout, '', s);
  }
  const missing = run(process.execPath, [join(ROOT, 'dist/scripts/bench-backup.js'), '--quick', '--repeat']);
  assert.equal(missing.status, 2);
  assert.match(missing.stderr, /^--repeat needs a value\n/);
  assert.equal(readFileSync(BENCHMARKS_MD, 'utf8'), before, 'BENCHMARKS.md untouched');
});
