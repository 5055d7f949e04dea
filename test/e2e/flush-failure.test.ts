// A background flush that fails (an I/O error, or a full disk found by delayed allocation) fails
// the run like a failed write: backup exit 6 (no space) or 1 (I/O), the partial archive removed;
// restore exit 6, its staging directory removed, nothing installed. The failure is injected into
// FileHandle.datasync with a preload (test/fixtures/preload/fail-datasync.mjs).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { tempDir, passFile, node, sampleIn, BACKUP_BIN, RESTORE_BIN, ROOT } from '../helpers/cli.js';

const MiB = 1024 * 1024;
const PRELOAD = pathToFileURL(join(ROOT, 'test/fixtures/preload/fail-datasync.mjs')).href;
const inject = (code: string): NodeJS.ProcessEnv => ({ NODE_OPTIONS: `--import=${PRELOAD}`, FAIL_CODE: code });

test('a failed background flush fails backup and restore with the right status, nothing left behind', { timeout: 300_000 }, () => {
  const t = tempDir();
  try {
    // uncompressed, so that archive and image pass the 64 MiB between two flushes
    const { root, home } = sampleIn(t.dir, { bigImageBytes: 160 * MiB, bigDataBytes: 80 * MiB, smallImageBytes: 2 * MiB, smallDataBytes: 64 * 1024 });
    const pw = passFile(t.dir);
    const base = ['-q', '-y', '-p', pw, '--qubes-root', root, '--dom0-home', home, '-x', 'dom0', '--scrypt-logn', '10', '--no-compress'];
    const out = join(t.dir, 'out');
    mkdirSync(out);

    for (const [code, status] of [['ENOSPC', 6], ['EIO', 1]] as const) {
      const r = node(BACKUP_BIN, [...base, join(out, 'a.bin'), 'work'], { env: inject(code) });
      assert.match(r.stderr, /\[inject\] datasync #1/, 'the flush ran');
      assert.equal(r.status, status, `${code}: ${r.stderr}`);
      assert.match(r.stderr, new RegExp(`qvm-backup: error: .*${code}`));
      assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
      assert.deepEqual(readdirSync(out), [], `${code}: no archive and no partial file left`);
    }

    const archive = join(t.dir, 'a.bin');
    const ok = node(BACKUP_BIN, [...base, archive, 'work']);
    assert.equal(ok.status, 0, ok.stderr);
    const host = join(t.dir, 'host');
    mkdirSync(host);
    mkdirSync(join(t.dir, 'hh', 'user'), { recursive: true });
    const r = node(RESTORE_BIN, ['-q', '-y', '-p', pw, '--qubes-root', host, '--dom0-home', join(t.dir, 'hh', 'user'), '--ignore-missing', archive], { env: inject('ENOSPC') });
    assert.match(r.stderr, /\[inject\] datasync #1/, 'the flush ran');
    assert.equal(r.status, 6, r.stderr);
    assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
    assert.deepEqual(readdirSync(host).filter((n) => n.startsWith('.restore-')), [], 'staging removed');
    assert.equal(existsSync(join(host, 'appvms', 'work')), false, 'nothing installed');
  } finally {
    t.cleanup();
  }
});
