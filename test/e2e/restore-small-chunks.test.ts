// Small chunks beside the large ones (restore/stream/chunks-in-flight.ts): an archive whose large
// image is followed by many tiny files restores them all, byte for byte, with one key derivation
// per chunk, and with as many chunks in flight at once as there are slots (small ones included)
// node prints no listener warning (review: "11 abort listeners added to [AbortSignal]").
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir, passFile, node, BACKUP_BIN, RESTORE_BIN, sampleIn } from '../helpers/cli.js';

const MiB = 1024 * 1024;
const EXTRA = 14;

test('a large image then many tiny ones at logN 14: all restored identically, one derivation per chunk, no warning', { timeout: 300_000 }, () => {
  const t = tempDir();
  try {
    const { root, home } = sampleIn(t.dir, { bigImageBytes: 16 * MiB, bigDataBytes: 6 * MiB, smallImageBytes: 64 * 1024, smallDataBytes: 8 * 1024, manyAppVms: { count: EXTRA, imageBytes: 64 * 1024, dataBytes: 8 * 1024 } });
    const pw = passFile(t.dir);
    const archive = join(t.dir, 'a.bin');
    // chunks of 2 MiB: the large image takes large slots, everything else fits in small ones
    const b = node(BACKUP_BIN, ['-y', '-p', pw, '--qubes-root', root, '--dom0-home', home, '-x', 'dom0', '--scrypt-logn', '14', '--chunk-size', '2M', archive]);
    assert.equal(b.status, 0, b.stderr);
    const host = join(t.dir, 'host');
    mkdirSync(join(t.dir, 'hh', 'user'), { recursive: true });
    const r = node(RESTORE_BIN, ['--json', '--stats', '-y', '-p', pw, '--qubes-root', host, '--dom0-home', join(t.dir, 'hh', 'user'), '--ignore-missing', archive]);
    assert.equal(r.status, 0, r.stderr);
    assert.doesNotMatch(r.stderr, /Warning/, r.stderr);
    const summary = JSON.parse(r.stdout.split('\n').filter((l) => l.includes('"summary"')).pop()!) as { stats: { key_derivations: number; key_derivation_engines: { wasm: number; openssl: number } } };
    const { key_derivations: kd, key_derivation_engines: e } = summary.stats;
    assert.equal(e.wasm + e.openssl, kd, JSON.stringify(summary.stats));
    for (const vm of readdirSync(join(root, 'appvms'))) {
      const images = readdirSync(join(root, 'appvms', vm)).filter((f) => f.endsWith('.img'));
      assert.ok(images.length > 0, vm);
      for (const f of images) assert.ok(readFileSync(join(host, 'appvms', vm, f)).equals(readFileSync(join(root, 'appvms', vm, f))), `${vm}/${f}`);
    }
  } finally {
    t.cleanup();
  }
});
