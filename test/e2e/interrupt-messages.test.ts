// What an interrupted run says: true facts in the user's words (what was removed, what stays
// installed), never the internal cancellation that the stop caused on the way ("waiting for a free
// slot was cancelled", "scryptDecrypt cancelled"), and no per-VM FAILED lines for VMs that did not fail.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir, passFile, node, BACKUP_BIN, RESTORE_BIN, sampleIn } from '../helpers/cli.js';
import { waitFor } from '../helpers/processes.js';
import { interruptedMessage } from '../../src/main/restore/run-restore.js';

const MiB = 1024 * 1024;

function start(args: string[]) {
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, output: () => out, exited };
}

async function exitWithin(p: Promise<number | null>, ms: number, out: () => string): Promise<number | null> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`no exit within ${ms} ms:\n${out()}`)), ms)));
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}

test('the interruption message states what was removed and what stays installed', () => {
  assert.equal(interruptedMessage(false, undefined, []), 'restore interrupted before any data was written: nothing installed');
  assert.equal(interruptedMessage(false, 'staging directory removed', []), 'restore interrupted: staging directory removed, nothing installed');
  assert.equal(interruptedMessage(false, 'staging directory removed', ['fedora-40', 'work']), 'restore interrupted: staging directory removed, fedora-40, work installed before the signal (kept), nothing after it');
  assert.equal(interruptedMessage(true, undefined, []), 'verification interrupted: nothing was written');
});

test('SIGINT during the data pass of a restore: one clear line, no internal words, staging gone', { timeout: 240_000 }, async () => {
  const t = tempDir();
  try {
    const { root, home } = sampleIn(t.dir, { bigImageBytes: 64 * MiB, bigDataBytes: 12 * MiB, smallImageBytes: 8 * MiB, smallDataBytes: 256 * 1024 });
    const pw = passFile(t.dir);
    const archive = join(t.dir, 'b.bin');
    const b = node(BACKUP_BIN, ['-q', '--qubes-root', root, '--dom0-home', home, '-p', pw, '-y', '--scrypt-logn', '16', '--chunk-size', '1M', archive]);
    assert.equal(b.status, 0, b.stderr);
    for (let round = 0; round < 2; round++) {
      const host = join(t.dir, `host${round}`);
      const hh = join(t.dir, `hh${round}`, 'user');
      mkdirSync(hh, { recursive: true });
      const r = start([RESTORE_BIN, '--qubes-root', host, '--dom0-home', hh, '-p', pw, '-y', '--threads', '2', archive]);
      // the data pass has begun once the staging directory exists
      await waitFor('the staging directory', () => existsSync(host) && readdirSync(host).some((n) => n.startsWith('.restore-')) || r.child.exitCode !== null);
      r.child.kill('SIGINT');
      assert.equal(await exitWithin(r.exited, 30_000, r.output), 130, r.output());
      const out = r.output();
      assert.match(out, /qvm-backup-restore: error: restore interrupted: staging directory removed, (nothing installed|.+ installed before the signal \(kept\), nothing after it) \(SIGINT\)\n/);
      assert.doesNotMatch(out, /cancelled|FAILED|scrypt/i, out);
      assert.match(out, /^Restore interrupted \(/m);
      const left = existsSync(host) ? readdirSync(host).filter((n) => n.startsWith('.restore-')) : [];
      assert.deepEqual(left, [], 'staging removed');
      if (/nothing installed/.test(out)) assert.ok(!existsSync(join(host, 'qubes.xml')) || !/<property name="name">work</.test(readFileSync(join(host, 'qubes.xml'), 'utf8')));
    }
  } finally {
    t.cleanup();
  }
});

test('SIGTERM during a backup into a directory: "partial archive removed"', { timeout: 120_000 }, async () => {
  const t = tempDir();
  try {
    const { root, home } = sampleIn(t.dir, { bigImageBytes: 64 * MiB, bigDataBytes: 12 * MiB, smallImageBytes: 8 * MiB, smallDataBytes: 256 * 1024 });
    const pw = passFile(t.dir);
    const out = join(t.dir, 'out');
    mkdirSync(out);
    const r = start([BACKUP_BIN, '-q', '--qubes-root', root, '--dom0-home', home, '-p', pw, '-y', '--scrypt-logn', '16', '--chunk-size', '1M', out]);
    await waitFor('the partial file', () => readdirSync(out).some((n) => n.includes('.partial-')) || r.child.exitCode !== null);
    r.child.kill('SIGTERM');
    assert.equal(await exitWithin(r.exited, 30_000, r.output), 143, r.output());
    assert.match(r.output(), /qvm-backup: error: backup interrupted: partial archive removed, nothing left in the backup location \(SIGTERM\)\n/);
    assert.deepEqual(readdirSync(out), []);
  } finally {
    t.cleanup();
  }
});
