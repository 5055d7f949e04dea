// bench-start: each checkout's restore timed to its data pass and to its exit; a restore that
// fails stops it with one line and exit 1.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir, passFile, node, run, sampleIn, BACKUP_BIN, ROOT, launcherEnv } from '../helpers/cli.js';

const MiB = 1024 * 1024;
const SCRIPT = join(ROOT, 'dist/scripts/bench-start.js');

test('bench-start: the time to the data pass and to the exit per checkout; a failing restore is one line, exit 1', { timeout: 120_000 }, () => {
  const t = tempDir();
  try {
    const { root, home } = sampleIn(t.dir, { bigImageBytes: 16 * MiB, bigDataBytes: 2 * MiB, smallImageBytes: 4 * MiB, smallDataBytes: 64 * 1024 });
    const pw = passFile(t.dir);
    const archive = join(t.dir, 'a.bin');
    const b = node(BACKUP_BIN, ['-q', '-y', '-p', pw, '--qubes-root', root, '--dom0-home', home, '--scrypt-logn', '10', archive, 'work']);
    assert.equal(b.status, 0, b.stderr);
    const r = run(process.execPath, [SCRIPT, '--rounds', '2', '--archive', archive, '--passphrase-file', pw, ROOT, ROOT], { env: launcherEnv() });
    assert.equal(r.status, 0, r.stderr);
    const lines = r.stdout.trim().split('\n');
    assert.match(lines[0]!, /^restore start-up, 2 rounds in turns \(median, range\), node v\d+/);
    assert.equal(lines.length, 3, r.stdout);
    for (const l of lines.slice(1)) assert.match(l, /^ {2}\/.+: to the data pass \d+ ms \(\d+–\d+\), to the exit \d+ ms \(\d+–\d+\)$/);
    const wrong = join(t.dir, 'wrong');
    writeFileSync(wrong, 'not the passphrase\n');
    const bad = run(process.execPath, [SCRIPT, '--rounds', '1', '--archive', archive, '--passphrase-file', wrong], { env: launcherEnv() });
    assert.equal(bad.status, 1);
    assert.match(bad.stderr, /^bench-start: .+: exit 4, no data pass status: /);
    assert.doesNotMatch(bad.stderr, /^\s+at /m, 'no stack trace');
  } finally {
    t.cleanup();
  }
});
