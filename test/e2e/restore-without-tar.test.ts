// GNU tar is checked before the passphrase is asked and before any data is used (a missing or non-GNU
// tar: exit 7 at once, nothing asked, nothing created; with a passphrase file, while the header is
// read), once per run; the process-starting module (execa) is loaded only when a process is about
// to start, so a restore whose files are all VM images
// (written in-process) starts none through it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { tempDir, passFile, node, sampleIn, BACKUP_BIN, RESTORE_BIN } from '../helpers/cli.js';
import type { StatsReport } from '../../src/main/stats/report-types.js';

const MiB = 1024 * 1024;

test('restore: a non-GNU tar stops the run before the passphrase (exit 7, checked once); restores of images and small files start no process', { timeout: 180_000 }, () => {
  const t = tempDir();
  try {
    const { root, home } = sampleIn(t.dir, { bigImageBytes: 32 * MiB, bigDataBytes: 4 * MiB, smallImageBytes: 4 * MiB, smallDataBytes: 256 * 1024 });
    // `vault` keeps only its image
    rmSync(join(root, 'appvms/vault/whitelisted-appmenus.list'));
    const pw = passFile(t.dir);
    const archive = join(t.dir, 'a.bin');
    const b = node(BACKUP_BIN, ['-q', '-y', '-p', pw, '--qubes-root', root, '--dom0-home', home, '-x', 'dom0', '--scrypt-logn', '10', '--chunk-size', '4M', archive, 'vault', 'work']);
    assert.equal(b.status, 0, b.stderr);
    const hh = join(t.dir, 'hh', 'user');
    mkdirSync(hh, { recursive: true });

    // the first `tar` in PATH answers --version like bsdtar (slowly: a header read alongside ends
    // first), and logs each call
    const bin = join(t.dir, 'bin');
    mkdirSync(bin);
    const calls = join(t.dir, 'version-calls');
    writeFileSync(join(bin, 'tar'), `#!/bin/sh\necho "$*" >> '${calls}'\nsleep 0.5\necho 'bsdtar 3.6.2 - libarchive 3.6.2'\n`);
    chmodSync(join(bin, 'tar'), 0o755);
    const asked = join(t.dir, 'asked');
    const host1 = join(t.dir, 'host1');
    const bad = node(RESTORE_BIN, ['-y', '--passphrase-command', `touch '${asked}'; cat '${pw}'`, '--qubes-root', host1, '--dom0-home', hh, archive], { env: { ...process.env, PATH: `${bin}:${process.env['PATH'] ?? ''}` } });
    assert.equal(bad.status, 7, bad.stderr);
    assert.match(bad.stderr, /is not GNU tar \(it says "bsdtar 3\.6\.2.*"\); GNU tar is required/);
    assert.doesNotMatch(bad.stderr, /^\s+at /m, 'no stack trace');
    assert.equal(existsSync(asked), false, 'the passphrase was not asked');
    assert.equal(existsSync(host1), false, 'nothing was created');
    assert.deepEqual(readFileSync(calls, 'utf8').trim().split('\n'), ['--version'], 'tar was asked once');
    // a passphrase file asks no one: the check runs while the header is read, and its failure is
    // still the one reported, before a wrong passphrase's (exit 4) and with nothing created
    const wrong = join(t.dir, 'wrong-pass');
    writeFileSync(wrong, 'not the passphrase\n');
    for (const p of [pw, wrong]) {
      const quiet = node(RESTORE_BIN, ['-y', '-p', p, '--qubes-root', host1, '--dom0-home', hh, archive], { env: { ...process.env, PATH: `${bin}:${process.env['PATH'] ?? ''}` } });
      assert.equal(quiet.status, 7, quiet.stderr);
      assert.match(quiet.stderr, /is not GNU tar \(it says "bsdtar 3\.6\.2.*"\); GNU tar is required/);
      assert.doesNotMatch(quiet.stderr, /passphrase|authentic/i, 'only the tar failure is said');
      assert.equal(existsSync(host1), false, 'nothing was created');
    }
    // nor, in --json, a phase of reading the header
    const json = node(RESTORE_BIN, ['--json', '-y', '-p', pw, '--qubes-root', host1, '--dom0-home', hh, archive], { env: { ...process.env, PATH: `${bin}:${process.env['PATH'] ?? ''}` } });
    assert.equal(json.status, 7, json.stderr);
    assert.doesNotMatch(json.stdout, /reading the backup header/);
    assert.match(json.stdout, /"exit_error"/);
    // a passphrase "file" that is a FIFO (or /dev/tty) waits for someone: the tar check comes first,
    // as with a prompt (no writer here: the run must not wait for one)
    const fifo = join(t.dir, 'pass.fifo');
    assert.equal(spawnSync('mkfifo', [fifo]).status, 0);
    const viaFifo = spawnSync(process.execPath, [RESTORE_BIN, '-y', '-p', fifo, '--qubes-root', host1, '--dom0-home', hh, archive], { encoding: 'utf8', env: { ...process.env, PATH: `${bin}:${process.env['PATH'] ?? ''}` }, timeout: 30_000 });
    assert.equal(viaFifo.status, 7, `${viaFifo.signal ?? ''} ${viaFifo.stderr}`);

    // with GNU tar: the images-only VM restores without starting a process through execa
    const host2 = join(t.dir, 'host2');
    const ok = node(RESTORE_BIN, ['--json', '-y', '-p', pw, '--qubes-root', host2, '--dom0-home', hh, '--ignore-missing', archive, 'vault']);
    assert.equal(ok.status, 0, ok.stderr);
    assert.ok(readFileSync(join(host2, 'appvms/vault/private.img')).equals(readFileSync(join(root, 'appvms/vault/private.img'))), 'image restored as it was');
    const summary = JSON.parse(ok.stdout.split('\n').filter((l) => l.includes('"summary"')).pop() ?? '{}') as { stats?: StatsReport };
    assert.equal(summary.stats?.spawns.count, 0, 'no process was started through execa');
    // and one that has small files too (firewall.xml, notes.txt, written in-process: no tar either)
    const host3 = join(t.dir, 'host3');
    const both = node(RESTORE_BIN, ['--json', '-y', '-p', pw, '--qubes-root', host3, '--dom0-home', hh, '--ignore-missing', archive]);
    assert.equal(both.status, 0, both.stderr);
    assert.equal(readFileSync(join(host3, 'appvms/work/firewall.xml'), 'utf8'), readFileSync(join(root, 'appvms/work/firewall.xml'), 'utf8'));
    assert.equal(readFileSync(join(host3, 'appvms/work/notes.txt'), 'utf8'), readFileSync(join(root, 'appvms/work/notes.txt'), 'utf8'));
    const summary3 = JSON.parse(both.stdout.split('\n').filter((l) => l.includes('"summary"')).pop() ?? '{}') as { stats?: StatsReport };
    assert.equal(summary3.stats?.spawns.count, 0, 'no process for the small files');
    // with every inner archive by GNU tar (QVMB_IMAGE_EXTRACTION=tar): the same files
    const host4 = join(t.dir, 'host4');
    const byTar = node(RESTORE_BIN, ['--json', '-y', '-p', pw, '--qubes-root', host4, '--dom0-home', hh, '--ignore-missing', archive], { env: { ...process.env, QVMB_IMAGE_EXTRACTION: 'tar' } });
    assert.equal(byTar.status, 0, byTar.stderr);
    for (const f of ['appvms/work/firewall.xml', 'appvms/work/notes.txt', 'appvms/work/private.img', 'appvms/vault/private.img']) assert.ok(readFileSync(join(host4, f)).equals(readFileSync(join(host3, f))), f);
    const summary4 = JSON.parse(byTar.stdout.split('\n').filter((l) => l.includes('"summary"')).pop() ?? '{}') as { stats?: StatsReport };
    assert.ok((summary4.stats?.spawns.count ?? 0) >= 4, `a tar per inner archive: ${summary4.stats?.spawns.count}`);
  } finally {
    t.cleanup();
  }
});
