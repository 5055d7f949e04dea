// The stage profile says what bounded a run: the --json summary always carries it (no --stats
// needed), --stats prints it in text; a slow destination command is named as the bound of a backup,
// a slow --source-command as the bound of a restore, and a fast file destination is not.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir, passFile, node, sampleIn, BACKUP_BIN, RESTORE_BIN, ROOT } from '../helpers/cli.js';
import type { StatsReport } from '../../src/main/stats/report-types.js';

const MiB = 1024 * 1024;
const SLOW_READER = join(ROOT, 'test/fixtures/bin/slow-reader.js');
const SLOW_CAT = join(ROOT, 'test/fixtures/bin/slow-cat.js');

function statsOf(stdout: string): StatsReport {
  const line = stdout.split('\n').filter((l) => l.includes('"summary"')).pop();
  assert.ok(line, `no summary line in ${stdout.slice(-500)}`);
  const s = (JSON.parse(line) as { stats?: StatsReport }).stats;
  assert.ok(s, 'the --json summary carries the stage profile without --stats');
  return s;
}

test('the bound of a run: slow destination, slow source, and a plain file', { timeout: 300_000 }, () => {
  const t = tempDir();
  try {
    // ~3 MiB of mostly random data: ~3 MB of archive, ~4 s through the slow reader (~0.7 MB/s)
    const { root, home } = sampleIn(t.dir, { bigImageBytes: 16 * MiB, bigDataBytes: 3 * MiB, smallImageBytes: 2 * MiB, smallDataBytes: 64 * 1024 });
    const pw = passFile(t.dir);
    const base = ['-y', '-p', pw, '--qubes-root', root, '--dom0-home', home, '-x', 'dom0', '--scrypt-logn', '10'];
    const archive = join(t.dir, 'a.bin');

    const slow = node(BACKUP_BIN, ['--json', ...base, '--dest-command', `${process.execPath} ${SLOW_READER} ${archive}`, 'backup-location', 'work']);
    assert.equal(slow.status, 0, slow.stderr);
    const sb = statsOf(slow.stdout).bound;
    assert.equal(sb?.resource, 'destination', JSON.stringify(sb));
    assert.ok(sb.share >= 0.5 && sb.share <= 1, JSON.stringify(sb));

    const file = node(BACKUP_BIN, ['--json', ...base, join(t.dir, 'b.bin'), 'work']);
    assert.equal(file.status, 0, file.stderr);
    const fb = statsOf(file.stdout).bound;
    assert.ok(fb !== undefined && fb.resource !== 'destination', JSON.stringify(fb));

    // restore from a source command that delivers ~1 MB/s: ~3 s of reading, well over the fixed
    // costs (start-up, key derivations, tar for the small files, installs) even on a loaded machine
    mkdirSync(join(t.dir, 'hh', 'user'), { recursive: true });
    const r = node(RESTORE_BIN, ['--json', '-y', '-p', pw, '--qubes-root', join(t.dir, 'host'), '--dom0-home', join(t.dir, 'hh', 'user'), '--ignore-missing', '--source-command', `${process.execPath} ${SLOW_CAT} ${archive} 16`]);
    assert.equal(r.status, 0, r.stderr);
    const rb = statsOf(r.stdout).bound;
    assert.equal(rb?.resource, 'source', JSON.stringify(rb));

    // --stats in text: the verdict is the profile's last line
    const text = node(BACKUP_BIN, ['-q', '--stats', ...base, join(t.dir, 'c.bin'), 'work']);
    assert.equal(text.status, 0, text.stderr);
    assert.match(text.stderr, /Stage profile[\s\S]*\n {2}bounded by: (cpu|source|main thread|mixed) \(.+\) — .+\n$/);
  } finally {
    t.cleanup();
  }
});
