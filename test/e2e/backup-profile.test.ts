// --save-profile / --profile (issue 10): a run's settings saved in Qubes' profile format (mode
// 0600, the passphrase included) and used again without any other option; command-line options
// override the profile's values; a profile with an unknown key is refused naming it.
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, statSync, writeFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { BACKUP_BIN, RESTORE_BIN, node, passFile, sampleIn, tempDir } from '../helpers/cli.js';
import { parseProfile } from '../../src/main/cli/backup-profile.js';

const MiB = 1024 * 1024;

/** The VM names a --verify-only run of `archive` reports as complete. */
function verified(archive: string, pw: string, dir: string): string[] {
  const hh = join(dir, 'vh', 'user');
  mkdirSync(hh, { recursive: true });
  const r = node(RESTORE_BIN, ['--json', '-y', '-p', pw, '--qubes-root', join(dir, 'vhost'), '--dom0-home', hh, '--verify-only', archive]);
  assert.equal(r.status, 0, r.stderr);
  const summary = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>).find((m) => m['message_type'] === 'summary')!;
  return (summary['verified'] as { name: string }[]).map((v) => v.name).sort();
}

test('--save-profile writes the settings (mode 0600); --profile alone repeats the backup; the command line overrides it', { timeout: 300_000 }, () => {
  const t = tempDir('qvmb-profile-');
  try {
    const { root, home } = sampleIn(t.dir, { bigImageBytes: 8 * MiB, bigDataBytes: 1 * MiB, smallImageBytes: 2 * MiB, smallDataBytes: 64 * 1024 });
    const pw = passFile(t.dir, 'profile passphrase');
    const pdir = join(t.dir, 'profiles');
    mkdirSync(pdir);
    const out = join(t.dir, 'out');
    mkdirSync(out);
    const common = ['-q', '-y', '--qubes-root', root, '--dom0-home', home, '--scrypt-logn', '12', '--profile-dir', pdir];

    let r = node(BACKUP_BIN, [...common, '-p', pw, '--save-profile', 'daily', '-x', 'dom0', out, 'work', 'vault']);
    assert.equal(r.status, 0, r.stderr);
    const conf = join(pdir, 'daily.conf');
    assert.equal(statSync(conf).mode & 0o777, 0o600);
    assert.deepEqual(parseProfile(readFileSync(conf, 'utf8'), conf), { include: ['work', 'vault'], exclude: ['dom0'], destinationVm: 'dom0', destinationPath: out, passphraseText: 'profile passphrase', compression: true });
    assert.equal(readdirSync(out).length, 1);

    // 2. the profile alone: same VMs, same place, passphrase from the profile (no -p, no terminal)
    r = node(BACKUP_BIN, [...common, '--profile', 'daily'], { input: '' });
    assert.equal(r.status, 0, r.stderr);
    const made = readdirSync(out).sort();
    assert.equal(made.length, 2);
    assert.deepEqual(verified(join(out, made[1]!), pw, t.dir), ['vault', 'work']);

    // 3. command line over the profile: another location, other VMs, no compression
    const file = join(t.dir, 'one.bin');
    r = node(BACKUP_BIN, [...common, '--profile', join(pdir, 'daily.conf'), '--no-compress', file, 'work']);
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(verified(file, pw, t.dir), ['work']);

    // 3b. -x adds to the profile's exclusions (the profile's dom0 stays out beside the -x'd work)
    const two = join(t.dir, 'two.bin');
    r = node(BACKUP_BIN, [...common, '--profile', 'daily', '-x', 'work', '--save-profile', 'weekly', two, 'work', 'vault', 'dom0']);
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(verified(two, pw, t.dir), ['vault']);
    assert.deepEqual(parseProfile(readFileSync(join(pdir, 'weekly.conf'), 'utf8'), 'weekly').exclude, ['dom0', 'work']);

    // 4. refused profiles name the problem (exit 2); a missing profile says where it looked
    writeFileSync(join(pdir, 'typo.conf'), `${readFileSync(conf, 'utf8')}destination: x\n`);
    r = node(BACKUP_BIN, [...common, '--profile', 'typo']);
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, /backup profile .*typo\.conf: unknown key "destination"/);
    r = node(BACKUP_BIN, [...common, '--profile', 'nope']);
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, /profiles\/nope\.conf: no such file/);
    r = node(BACKUP_BIN, [...common.filter((a) => a !== '--profile-dir' && a !== pdir)]);
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, /missing required argument 'backup-location'$/m);
    assert.equal(readdirSync(out).length, 2, 'nothing written by the refused runs');
  } finally {
    t.cleanup();
  }
});
