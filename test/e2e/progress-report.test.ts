// Progress as the user sees it (JSON lines): a backup through a compression program counts the
// bytes read from the disks (it stopped at the compression ratio, ~30 %, counting tar's compressed
// output), a restore names its key-derivation phases and is below 100 % until it is done.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir, passFile, node, haveCmd, BACKUP_BIN, RESTORE_BIN, sampleIn } from '../helpers/cli.js';

const MiB = 1024 * 1024;
const jsonLines = (stdout: string): Record<string, unknown>[] => stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);

test('backup with -Z xz (a filter program): the progress reaches the total of the files, not the compressed size', { timeout: 120_000, skip: !haveCmd('xz') && 'xz not installed' }, () => {
  const t = tempDir();
  try {
    const { root, home } = sampleIn(t.dir, { bigImageBytes: 32 * MiB, bigDataBytes: 6 * MiB, smallImageBytes: 4 * MiB, smallDataBytes: 256 * 1024 });
    const pw = passFile(t.dir);
    const out = join(t.dir, 'out');
    mkdirSync(out);
    const r = node(BACKUP_BIN, ['--json', '--qubes-root', root, '--dom0-home', home, '-p', pw, '-y', '--scrypt-logn', '10', '-Z', 'xz', out]);
    assert.equal(r.status, 0, r.stderr);
    const lines = jsonLines(r.stdout);
    const status = lines.filter((l) => l['message_type'] === 'status' && (l['phase'] ?? null) === null);
    assert.ok(status.length > 0, r.stdout);
    const total = status.at(-1)!['total_bytes'] as number;
    const summary = lines.at(-1)!;
    assert.equal(summary['message_type'], 'summary');
    assert.equal(summary['bytes_done'], total, `read ${String(summary['bytes_done'])} of ${total}`);
    assert.ok((summary['bytes_written'] as number) < total / 2, 'the archive is compressed (the test measures what it means to)');
    assert.ok(status.every((l) => (l['percent_done'] as number) < 1), 'not 100 % before the end');
  } finally {
    t.cleanup();
  }
});

test('restore --verify-only: key-derivation phases are named, percent stays below 1 until the summary', { timeout: 120_000 }, () => {
  const t = tempDir();
  try {
    const { root, home } = sampleIn(t.dir, { bigImageBytes: 16 * MiB, bigDataBytes: 3 * MiB, smallImageBytes: 4 * MiB, smallDataBytes: 128 * 1024 });
    const pw = passFile(t.dir);
    const archive = join(t.dir, 'b.bin');
    const b = node(BACKUP_BIN, ['-q', '--qubes-root', root, '--dom0-home', home, '-p', pw, '-y', '--scrypt-logn', '14', '--chunk-size', '1M', archive]);
    assert.equal(b.status, 0, b.stderr);
    const r = node(RESTORE_BIN, ['--json', '--verify-only', '-p', pw, '-y', archive]);
    assert.equal(r.status, 0, r.stderr);
    const lines = jsonLines(r.stdout);
    const types = lines.map((l) => `${String(l['message_type'])}${l['phase'] ? `:${String(l['phase'])}` : ''}`);
    const headPhase = types.indexOf('status:reading the backup header and qubes.xml, deriving their keys');
    const plan = types.indexOf('plan');
    const chunkPhase = types.indexOf('status:deriving keys for the first chunks');
    assert.ok(headPhase >= 0 && headPhase < plan && plan < chunkPhase, types.join('\n'));
    assert.ok(lines.every((l) => l['message_type'] !== 'status' || l['operation'] === 'verify'), 'the operation is right from the first line');
    const status = lines.filter((l) => l['message_type'] === 'status');
    assert.ok(status.every((l) => (l['percent_done'] as number) < 1), JSON.stringify(status));
    assert.ok(status.every((l) => (l['bytes_done'] as number) <= (l['bytes_read'] as number)));
    const summary = lines.at(-1)!;
    assert.equal(summary['ok'], true);
  } finally {
    t.cleanup();
  }
});
