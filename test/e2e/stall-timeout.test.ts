// --stall-timeout: a run that stops moving (a destination that stopped reading, a command that does
// not exit, a source that stopped giving bytes) ends with exit 1 and ERR_STALLED instead of waiting
// for ever; a slow run that moves is not stopped; a SIGTERM ends a run blocked on such a destination
// at once. Nothing is left behind: no partial archive, no staging, no process of the command.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, mkdirSync, copyFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir, passFile, BACKUP_BIN, RESTORE_BIN, sampleIn } from '../helpers/cli.js';

const MiB = 1024 * 1024;

function run(bin: string, args: string[], o: { killAfterMs?: number; stdout?: 'pipe' } = {}): Promise<{ code: number | null; stdout: string; stderr: string; ms: number }> {
  const start = Date.now();
  return new Promise((resolve, reject) => {
    const c = spawn(process.execPath, [bin, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    c.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    c.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const killer = o.killAfterMs !== undefined ? setTimeout(() => c.kill('SIGTERM'), o.killAfterMs) : undefined;
    const limit = setTimeout(() => {
      c.kill('SIGKILL');
      reject(new Error(`still running after 25 s: ${stderr}`));
    }, 25_000);
    c.on('exit', (code) => {
      clearTimeout(limit);
      if (killer) clearTimeout(killer);
      resolve({ code, stdout, stderr, ms: Date.now() - start });
    });
  });
}

/** the `sleep` processes with exactly this argument (the command's own child) */
function sleeping(arg: string): string[] {
  return readdirSync('/proc')
    .filter((p) => /^\d+$/.test(p))
    .filter((p) => {
      try {
        const argv = readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0');
        return /(^|\/)sleep$/.test(argv[0] ?? '') && argv[1] === arg;
      } catch {
        return false;
      }
    });
}

test('a backup whose destination stops reading, or whose command never exits, is stopped by --stall-timeout; SIGTERM ends it at once', { timeout: 120_000 }, async () => {
  const t = tempDir('qvmb-stall-');
  try {
    const { root, home } = sampleIn(t.dir, { bigImageBytes: 16 * MiB, bigDataBytes: 6 * MiB, smallImageBytes: 1 * MiB, smallDataBytes: 64 * 1024 });
    const pw = passFile(t.dir);
    const base = ['-y', '--scrypt-logn', '10', '--qubes-root', root, '--dom0-home', home, '-p', pw];
    const tag = `${3000 + (process.pid % 1000)}.5`;
    // never reads: the first write waits for ever
    const r = await run(BACKUP_BIN, [...base, '--json', '--stall-timeout', '2', '--dest-command', `sleep ${tag}`, 'x']);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /no progress for [\d.]+ s \(--stall-timeout 2\): stopped/);
    const last = JSON.parse(r.stdout.trimEnd().split('\n').at(-1)!) as Record<string, unknown>;
    assert.deepEqual([last['message_type'], last['error_code'], last['code']], ['exit_error', 'ERR_STALLED', 1]);
    assert.ok(r.stdout.includes('"message_type":"warning"'), 'said once before it was stopped');
    assert.ok(r.ms < 15_000, `${r.ms} ms`);
    assert.deepEqual(sleeping(tag), []);
    // reads everything, then never exits: the commit waits for ever
    const c = await run(BACKUP_BIN, [...base, '-q', '--stall-timeout', '2', '--dest-command', `cat >/dev/null; sleep ${tag}`, 'x']);
    assert.equal(c.code, 1, c.stderr);
    assert.match(c.stderr, /no progress for [\d.]+ s \(--stall-timeout 2\)/);
    assert.deepEqual(sleeping(tag), []);
    // without the option: SIGTERM while the write waits ends the run at once (it waited for the
    // command's own end before)
    const s = await run(BACKUP_BIN, [...base, '-q', '--dest-command', `sleep ${tag}`, 'x'], { killAfterMs: 2500 });
    assert.equal(s.code, 143, s.stderr);
    assert.ok(s.ms < 12_000, `${s.ms} ms`);
    assert.deepEqual(sleeping(tag), []);
    // a slow destination that keeps reading is not a stall: 128 KiB every 0.2 s (~650 KB/s); the
    // image's one chunk (~6 MB) takes longer than the timeout to go, each 1 MiB of it less
    const out = join(t.dir, 'slow.bin');
    const slow = await run(BACKUP_BIN, [...base, '-q', '--stall-timeout', '3', '--dest-command', `while [ "$(dd bs=128k count=1 iflag=fullblock status=none | tee -a '${out}' | wc -c)" -gt 0 ]; do sleep 0.2; done`, 'x']);
    assert.equal(slow.code, 0, slow.stderr);
    assert.ok(readFileSync(out).length > 1 * MiB);
    const ok = await run(RESTORE_BIN, ['-y', '-q', '--verify-only', '-p', pw, out]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.deepEqual(readdirSync(t.dir).filter((n) => n.includes('partial')), []);
  } finally {
    t.cleanup();
  }
});

test('a restore whose source stops giving bytes is stopped by --stall-timeout: nothing installed, the command gone', { timeout: 120_000 }, async () => {
  const t = tempDir('qvmb-stall-r-');
  try {
    const { root, home } = sampleIn(t.dir, { bigImageBytes: 16 * MiB, bigDataBytes: 2 * MiB, smallImageBytes: 1 * MiB, smallDataBytes: 64 * 1024 });
    const pw = passFile(t.dir);
    const archive = join(t.dir, 'a.bin');
    const b = await run(BACKUP_BIN, ['-y', '-q', '--scrypt-logn', '10', '--qubes-root', root, '--dom0-home', home, '-p', pw, archive]);
    assert.equal(b.code, 0, b.stderr);
    const host = join(t.dir, 'host');
    mkdirSync(host);
    copyFileSync(join(root, 'qubes.xml'), join(host, 'qubes.xml'));
    const before = readFileSync(join(host, 'qubes.xml'), 'utf8');
    const tag = `${4000 + (process.pid % 1000)}.5`;
    const half = Math.floor(readFileSync(archive).length / 2);
    const r = await run(RESTORE_BIN, ['-y', '--rename-conflicting', '--skip-dom0-home', '--qubes-root', host, '-p', pw, '--stall-timeout', '2', '--source-command', `head -c ${half} '${archive}'; sleep ${tag}`]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /no progress for [\d.]+ s \(--stall-timeout 2\): stopped/);
    assert.match(r.stderr, /Restore stopped/);
    assert.ok(r.ms < 15_000, `${r.ms} ms`);
    assert.equal(readFileSync(join(host, 'qubes.xml'), 'utf8'), before);
    assert.equal(existsSync(join(host, 'appvms')), false);
    assert.deepEqual(readdirSync(host).filter((n) => n.startsWith('.restore-')), []);
    assert.deepEqual(sleeping(tag), []);
  } finally {
    t.cleanup();
  }
});

/** A small archive (the sample's `vault`), its passphrase file and an empty host root. */
async function smallArchiveAndHost(dir: string): Promise<{ pw: string; archive: string; host: string }> {
  const { root, home } = sampleIn(dir, { bigImageBytes: MiB, bigDataBytes: 64 * 1024, smallImageBytes: MiB, smallDataBytes: 16 * 1024 });
  const pw = passFile(dir);
  const archive = join(dir, 'b.bin');
  const b = await run(BACKUP_BIN, ['-q', '-y', '--qubes-root', root, '--dom0-home', home, '-p', pw, '--scrypt-logn', '10', archive, 'vault']);
  assert.equal(b.code, 0, b.stderr);
  const host = join(dir, 'host');
  mkdirSync(host);
  return { pw, archive, host };
}

test('a wait for the host lock another run holds is no stall: --stall-timeout 2 waits for it, then restores', { timeout: 120_000 }, async () => {
  const t = tempDir();
  try {
    const { pw, archive, host } = await smallArchiveAndHost(t.dir);
    // another run holds the lock for 6 s (flock(1), as our own lock is taken)
    const holder = spawn('flock', [join(host, 'qubes.xml.lock'), 'sleep', '6'], { stdio: 'ignore' });
    await new Promise((r) => setTimeout(r, 500));
    const r = await run(RESTORE_BIN, ['-y', '--stall-timeout', '2', '--ignore-missing', '-p', pw, '--qubes-root', host, '--dom0-home', join(t.dir, 'hh', 'user'), archive]);
    holder.kill();
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch(r.stderr, /no progress/);
    assert.match(r.stderr, /qubes\.xml\.lock/, 'the wait was said');
  } finally {
    t.cleanup();
  }
});

test('a source that stalls in the header while another run holds the host lock is still a stall (the lock is waited for beside the header)', { timeout: 120_000 }, async () => {
  const t = tempDir('qvmb-stall-lh-');
  let holder: ReturnType<typeof spawn> | undefined;
  try {
    const { pw, archive, host } = await smallArchiveAndHost(t.dir);
    holder = spawn('flock', [join(host, 'qubes.xml.lock'), 'sleep', '60'], { stdio: 'ignore' });
    await new Promise((r) => setTimeout(r, 500));
    const tag = `${5000 + (process.pid % 1000)}.5`;
    const r = await run(RESTORE_BIN, ['-y', '--ignore-missing', '-p', pw, '--qubes-root', host, '--dom0-home', join(t.dir, 'hh', 'user'), '--stall-timeout', '2', '--source-command', `head -c 1500 '${archive}'; sleep ${tag}`]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /no progress for [\d.]+ s \(--stall-timeout 2\): stopped/);
    assert.ok(r.ms < 20_000, `${r.ms} ms`);
    assert.deepEqual(sleeping(tag), []);
  } finally {
    holder?.kill();
    t.cleanup();
  }
});
