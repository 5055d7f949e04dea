// Confirmations as in Qubes (issue 10): on a terminal both commands ask once, "Do you want to
// proceed? [y/N]" (a verification too, with -p given); -y skips the question; without a terminal
// on stdin the run goes on without asking (scripts, cron), as documented in README.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { BACKUP_BIN, RESTORE_BIN, haveCmd, node, passFile, sampleIn, smallSampleArchive, tempDir } from '../helpers/cli.js';
import { alive, cmdline, descendants, waitFor } from '../helpers/processes.js';
import { forgeFirstChunkLogN } from '../main/restore/stream/stream-helpers.js';

const MiB = 1024 * 1024;
const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
const pty = haveCmd('script') ? false : 'util-linux script(1) is not installed';
const QUESTION = 'Do you want to proceed? [y/N]';

/** Run argv on a pseudo-terminal (script(1)); returns its output once it ended. */
async function onTerminal(argv: string[], answer: string | null, beforeAnswer?: (pid: number) => Promise<void>): Promise<{ code: number | null; out: string; answeredMs: number }> {
  const child: ChildProcess = spawn('script', ['-qec', `exec ${[process.execPath, ...argv].map(q).join(' ')}`, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  try {
    if (answer !== null) {
      await waitFor('the question', () => out.includes('[y/N]') || child.exitCode !== null);
      await beforeAnswer?.(child.pid!);
      child.stdin!.write(answer);
    }
    const answered = Date.now();
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`no exit within 60 s:\n${out}`)), 60_000)));
    try {
      const code = await Promise.race([exited, late]);
      return { code, out, answeredMs: Date.now() - answered };
    } finally {
      clearTimeout(timer);
    }
  } finally {
    for (const p of [...descendants(child.pid!), child.pid!]) if (alive(p)) process.kill(p, 'SIGKILL');
  }
}

const count = (s: string, part: string): number => s.split(part).length - 1;

test('on a terminal: backup, verification and restore each ask once "Do you want to proceed?"; -y asks nothing', { skip: pty, timeout: 240_000 }, async () => {
  const t = tempDir('qvmb-confirm-');
  try {
    const { root, home } = sampleIn(t.dir, { bigImageBytes: 4 * MiB, bigDataBytes: 256 * 1024, smallImageBytes: 1 * MiB, smallDataBytes: 16 * 1024 });
    const pw = passFile(t.dir);
    const archive = join(t.dir, 'b.bin');
    const b = await onTerminal([BACKUP_BIN, '--qubes-root', root, '--dom0-home', home, '-p', pw, '--scrypt-logn', '10', archive, 'vault'], 'y\n');
    assert.equal(b.code, 0, b.out);
    assert.equal(count(b.out, QUESTION), 1, b.out);
    assert.ok(existsSync(archive));

    const v = await onTerminal([RESTORE_BIN, '--verify-only', '-p', pw, archive], 'y\n');
    assert.equal(v.code, 0, v.out);
    assert.equal(count(v.out, '[y/N]'), 1, v.out);
    assert.equal(count(v.out, QUESTION), 1, v.out);
    assert.match(v.out, /Verification succeeded/);

    const host = join(t.dir, 'host');
    const hh = join(t.dir, 'hh', 'user');
    mkdirSync(hh, { recursive: true });
    const r = await onTerminal([RESTORE_BIN, '--ignore-missing', '-p', pw, '--qubes-root', host, '--dom0-home', hh, archive], 'y\n');
    assert.equal(r.code, 0, r.out);
    assert.equal(count(r.out, '[y/N]'), 1, r.out);
    assert.match(r.out, /Restore finished: vault/);

    const y = await onTerminal([RESTORE_BIN, '-y', '--verify-only', '-p', pw, archive], null);
    assert.equal(y.code, 0, y.out);
    assert.equal(count(y.out, '[y/N]'), 0, y.out);
  } finally {
    t.cleanup();
  }
});

test('stdin not a terminal and no -y: no question, the run goes on (as documented)', { timeout: 120_000 }, () => {
  const t = tempDir('qvmb-confirm-');
  try {
    const { root, home } = sampleIn(t.dir, { bigImageBytes: 4 * MiB, bigDataBytes: 256 * 1024, smallImageBytes: 1 * MiB, smallDataBytes: 16 * 1024 });
    const pw = passFile(t.dir);
    const archive = join(t.dir, 'b.bin');
    const b = node(BACKUP_BIN, ['--qubes-root', root, '--dom0-home', home, '-p', pw, '--scrypt-logn', '10', archive, 'vault'], { input: '' });
    assert.equal(b.status, 0, b.stderr);
    assert.ok(!b.stderr.includes('[y/N]'));
    const v = node(RESTORE_BIN, ['--verify-only', '-p', pw, archive], { input: '' });
    assert.equal(v.status, 0, v.stderr);
    assert.ok(!v.stderr.includes('[y/N]'));
  } finally {
    t.cleanup();
  }
});

/** The scrypt child of the restore below `pid` (first-chunk-key.ts), if one runs. */
const scryptChild = (pid: number): number | undefined => descendants(pid).find((p) => cmdline(p).includes('scryptSync'));

test('on a terminal, format 4: the first chunk\'s key is derived in a child while the question waits; the restore uses it (--stats), and "n" kills it at once', { skip: pty, timeout: 240_000 }, async () => {
  const t = tempDir('qvmb-confirm-');
  try {
    const { archive, pw } = smallSampleArchive(t.dir);
    const host = join(t.dir, 'host');
    const hh = join(t.dir, 'hh', 'user');
    mkdirSync(hh, { recursive: true });
    const r = await onTerminal([RESTORE_BIN, '--stats', '--ignore-missing', '-p', pw, '--qubes-root', host, '--dom0-home', hh, archive], 'y\n');
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /Restore finished: vault/);
    assert.match(r.out, /first chunk key \(a child process, while the plan is confirmed\)/, r.out);

    // the first data chunk asks for logN 21 (2 GiB, ~10 s; its header's checksum recomputed)
    const slow = join(t.dir, 'slow.bin');
    writeFileSync(slow, await forgeFirstChunkLogN(readFileSync(archive), 21));
    let child: number | undefined;
    // into a new qubes root (the first restore's host has no default_template for vault's template)
    const n = await onTerminal([RESTORE_BIN, '--ignore-missing', '-p', pw, '--qubes-root', join(t.dir, 'host2'), '--dom0-home', hh, slow], 'n\n', async (pid) => {
      await waitFor('the scrypt child deriving', () => (child = scryptChild(pid)) !== undefined, 30_000);
    });
    assert.equal(n.code, 0, n.out);
    assert.match(n.out, /cancelled by the user: nothing done/);
    assert.ok(n.answeredMs < 5000, `the answer "n" took ${n.answeredMs} ms to end the run`);
    assert.equal(alive(child!), false, 'the scrypt child outlived the run');
  } finally {
    t.cleanup();
  }
});
