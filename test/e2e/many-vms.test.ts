// Many small VMs: a restore of two VMs out of a 30-VM archive derives keys for their chunks only
// (the others' chunks are skipped unread by the workers), counted by the stage profile (--stats);
// the full restore registers every VM; --stats prints the profile in text, --json always carries it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir, passFile, node, run, BACKUP_BIN, RESTORE_BIN, sampleIn } from '../helpers/cli.js';

const MiB = 1024 * 1024;
const EXTRA = 25; // plus the sample's five VMs
// inner archives: one per image (the template has two: root and private), work's firewall.xml and notes.txt
const FILES = EXTRA + 4 + 2 + 2;

interface Stats {
  key_derivations: number;
  key_derivation_engines?: { wasm: number; openssl: number };
  spawns: { count: number };
  stages: { stage: string; count: number }[];
  workers: { threads: number; utilisation: number };
}

function summaryOf(stdout: string): { ok: boolean; stats?: Stats } {
  const line = stdout.split('\n').filter((l) => l.includes('"summary"')).pop();
  assert.ok(line, `no summary line in ${stdout.slice(-500)}`);
  return JSON.parse(line) as { ok: boolean; stats?: Stats };
}

test('restoring 2 of 30 VMs derives the keys of their chunks only; the full restore registers all 30', { timeout: 600_000 }, () => {
  const t = tempDir();
  try {
    const { root, home } = sampleIn(t.dir, { bigImageBytes: 2 * MiB, bigDataBytes: 64 * 1024, smallImageBytes: 2 * MiB, smallDataBytes: 64 * 1024, manyAppVms: { count: EXTRA, imageBytes: 2 * MiB, dataBytes: 64 * 1024 } });
    const pw = passFile(t.dir);
    const archive = join(t.dir, 'many.bin');
    const b = node(BACKUP_BIN, ['--json', '--stats', '-y', '-p', pw, '--qubes-root', root, '--dom0-home', home, '-x', 'dom0', '--scrypt-logn', '10', archive]);
    assert.equal(b.status, 0, b.stderr);
    const bs = summaryOf(b.stdout).stats!;
    // header + qubes.xml + one chunk per inner archive
    assert.equal(bs.key_derivations, 2 + FILES, 'backup derivations');
    // each ran in one of the two scrypt engines, as the workers counted them
    const engines = (st: Stats): number => (st.key_derivation_engines?.wasm ?? NaN) + (st.key_derivation_engines?.openssl ?? NaN);
    assert.equal(engines(bs), bs.key_derivations, JSON.stringify(bs.key_derivation_engines));
    // every inner archive is a regular file's: made in-process; the one child is the hole-map helper
    const inProcess = bs.stages.find((s) => s.stage === 'inner tar in-process (open to end)');
    assert.equal(inProcess?.count, FILES, 'inner archives made in-process');
    assert.equal(bs.spawns.count, 1, `no tar per inner archive: ${bs.spawns.count} children`);

    const subset = (host: string, vms: string[]) => {
      mkdirSync(join(t.dir, 'hh', 'user'), { recursive: true });
      return node(RESTORE_BIN, ['--json', '--stats', '-y', '-p', pw, '--qubes-root', host, '--dom0-home', join(t.dir, 'hh', 'user'), '--ignore-missing', archive, ...vms]);
    };
    const two = subset(join(t.dir, 'host2'), ['app-017', 'app-023']);
    assert.equal(two.status, 0, two.stderr);
    const s2 = summaryOf(two.stdout).stats!;
    assert.equal(s2.key_derivations, 2 + 2, 'header + qubes.xml + the two VMs\' chunks, nothing for the other 28');
    assert.deepEqual(readdirSync(join(t.dir, 'host2', 'appvms')).sort(), ['app-017', 'app-023']);
    const installedXml = readFileSync(join(t.dir, 'host2', 'qubes.xml'), 'utf8');
    assert.match(installedXml, /app-017/);
    assert.doesNotMatch(installedXml, /app-018/);

    const all = subset(join(t.dir, 'hostAll'), []);
    assert.equal(all.status, 0, all.stderr);
    // many small chunks in flight at once (small slots, keys derived before a slot is free): no
    // listener warning from node (review: "11 abort listeners added to [AbortSignal]")
    assert.doesNotMatch(all.stderr, /Warning/, all.stderr);
    const sa = summaryOf(all.stdout).stats!;
    assert.equal(sa.key_derivations, 2 + FILES);
    assert.equal(engines(sa), sa.key_derivations, JSON.stringify(sa.key_derivation_engines));
    // the images and the small files (firewall.xml, notes.txt) are written in-process: no tar
    assert.equal(sa.spawns.count, 0, `no tar per inner archive: ${sa.spawns.count} children`);
    assert.equal(readdirSync(join(t.dir, 'hostAll', 'appvms')).length, EXTRA + 4);
    // the ready VMs are registered in groups, not with one qubes.xml write each
    const writes = sa.stages.find((s) => s.stage === 'install: write host qubes.xml (fsync)');
    assert.ok(writes !== undefined && writes.count >= 1 && writes.count <= Math.ceil((EXTRA + 5) / 32) + 2, `qubes.xml writes: ${writes?.count}`);
    for (const n of ['app-001', 'app-025', 'fedora-40', 'sys-net']) assert.match(readFileSync(join(t.dir, 'hostAll', 'qubes.xml'), 'utf8'), new RegExp(`>${n}<`));
    assert.equal(run('cmp', [join(root, 'appvms/app-017/private.img'), join(t.dir, 'hostAll', 'appvms/app-017/private.img')]).status, 0);

    // text mode: the profile follows the final line on stderr
    const text = node(RESTORE_BIN, ['-q', '--stats', '--verify-only', '-y', '-p', pw, '--qubes-root', join(t.dir, 'host3'), '--dom0-home', join(t.dir, 'hh', 'user'), '--ignore-missing', archive, 'app-001']);
    assert.equal(text.status, 0, text.stderr);
    assert.match(text.stderr, /Stage profile \(wall [\d.]+ s\):/);
    assert.match(text.stderr, /key derivations: 3 \(scrypt in WebAssembly [0-3], node:crypto [0-3]\)\n/);
    assert.match(text.stderr, /workers: \d+ threads, [\d.]+ busy s in \d+ tasks, utilisation \d+ %/);
    // --json without --stats: the summary still carries the profile; nothing printed on stderr
    const plain = node(RESTORE_BIN, ['--json', '--verify-only', '-y', '-p', pw, '--qubes-root', join(t.dir, 'host4'), '--dom0-home', join(t.dir, 'hh', 'user'), '--ignore-missing', archive, 'app-002']);
    assert.equal(plain.status, 0, plain.stderr);
    assert.equal(summaryOf(plain.stdout).stats?.key_derivations, 3);
    assert.doesNotMatch(plain.stderr, /Stage profile/);
    // neither: nothing printed
    const quiet = node(RESTORE_BIN, ['-q', '--verify-only', '-y', '-p', pw, '--qubes-root', join(t.dir, 'host5'), '--dom0-home', join(t.dir, 'hh', 'user'), '--ignore-missing', archive, 'app-002']);
    assert.equal(quiet.status, 0, quiet.stderr);
    assert.doesNotMatch(quiet.stderr, /Stage profile/);
  } finally {
    t.cleanup();
  }
});
