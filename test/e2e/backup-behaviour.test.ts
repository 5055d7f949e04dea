// qvm-backup behaviour around the data path: wrong usage gives one clear line and a documented exit
// code before anything is written; peak memory stays under --max-memory plus a fixed overhead; no
// temporary files; --json output (signals: cli-signals.test.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, writeFileSync, mkdirSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir, passFile, node, run, BACKUP_BIN, RESTORE_BIN, sampleIn } from '../helpers/cli.js';

const MiB = 1024 * 1024;

function sample(dir: string) {
  return sampleIn(dir, { bigImageBytes: 256 * MiB, bigDataBytes: 24 * MiB, smallImageBytes: 16 * MiB, smallDataBytes: 256 * 1024 });
}

test('wrong usage: one clear line on stderr, documented exit code, nothing written', () => {
  const t = tempDir();
  try {
    const { root, home } = sample(t.dir);
    const pw = passFile(t.dir);
    const out = join(t.dir, 'out');
    mkdirSync(out);
    const base = ['--qubes-root', root, '--dom0-home', home, '-y'];
    const lastLine = (s: string) => s.trim().split('\n').pop() ?? '';
    // unknown VM
    let r = node(BACKUP_BIN, [...base, '-p', pw, out, 'work', 'no-such-vm']);
    assert.equal(r.status, 2);
    assert.match(lastLine(r.stderr), /^qvm-backup: error: unknown VM: no-such-vm$/);
    // destination directory missing / not writable
    r = node(BACKUP_BIN, [...base, '-p', pw, join(t.dir, 'missing', 'b.bin')]);
    assert.equal(r.status, 2);
    assert.match(lastLine(r.stderr), /does not exist/);
    if (process.getuid?.() !== 0) {
      chmodSync(out, 0o500);
      r = node(BACKUP_BIN, [...base, '-p', pw, out]);
      assert.notEqual(r.status, 0);
      chmodSync(out, 0o700);
    }
    // empty passphrase
    const empty = join(t.dir, 'empty.txt');
    writeFileSync(empty, '\n');
    r = node(BACKUP_BIN, [...base, '-p', empty, out]);
    assert.equal(r.status, 2);
    assert.match(lastLine(r.stderr), /empty passphrase/);
    // --no-encrypt with format 4
    r = node(BACKUP_BIN, [...base, '-p', pw, '--no-encrypt', out]);
    assert.equal(r.status, 2);
    assert.match(lastLine(r.stderr), /--no-encrypt/);
    // a filter that is not on the allow-list is never run
    r = node(BACKUP_BIN, [...base, '-p', pw, '-Z', 'rm', out]);
    assert.equal(r.status, 2);
    assert.match(lastLine(r.stderr), /not allowed/);
    // missing GNU tar: PATH without tar
    const bin = join(t.dir, 'bin');
    mkdirSync(bin);
    r = node(BACKUP_BIN, [...base, '-p', pw, '--scrypt-logn', '10', out], { env: { PATH: bin } });
    assert.equal(r.status, 7, r.stderr);
    assert.match(lastLine(r.stderr), /tar/);
    assert.deepEqual(readdirSync(out), [], 'nothing left in the destination');
  } finally {
    t.cleanup();
  }
});

test('peak memory stays under --max-memory plus a fixed overhead; no temp files; --json', { timeout: 120_000 }, () => {
  const t = tempDir();
  try {
    const { root, home } = sample(t.dir);
    const pw = passFile(t.dir);
    const tmp = join(t.dir, 'tmp');
    mkdirSync(tmp);
    const archive = join(t.dir, 'b.bin');
    const maxMemory = 64 * MiB;
    const r = node(BACKUP_BIN, ['--json', '--qubes-root', root, '--dom0-home', home, '-p', pw, '-y', '--scrypt-logn', '14', '--chunk-size', '8M', '--max-memory', '64M', archive], { env: { TMPDIR: tmp } });
    assert.equal(r.status, 0, r.stderr);
    const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    const summary = lines.find((l) => l['message_type'] === 'summary')!;
    assert.equal(summary['ok'], true);
    assert.ok(lines.some((l) => l['message_type'] === 'plan'));
    assert.ok(lines.some((l) => l['message_type'] === 'vm_done' && l['vm'] === 'work'));
    const rss = summary['max_rss_bytes'] as number;
    const overhead = 160 * MiB; // node, two worker threads, zlib state
    assert.ok(rss < maxMemory + overhead, `peak RSS ${Math.round(rss / MiB)} MiB > ${Math.round((maxMemory + overhead) / MiB)} MiB`);
    assert.deepEqual(readdirSync(tmp), [], 'no temporary files');
    assert.deepEqual(readdirSync(t.dir).filter((n) => n.includes('partial')), []);
    // v2 uses a FIFO in a private temp dir: removed afterwards too
    const r2 = node(BACKUP_BIN, ['-q', '--format', '2', '--no-compress', '--chunk-size', '2560K', '--qubes-root', root, '--dom0-home', home, '-p', pw, '-y', join(t.dir, 'b2.bin'), 'vault'], { env: { TMPDIR: tmp } });
    assert.equal(r2.status, 0, r2.stderr);
    assert.deepEqual(readdirSync(tmp), []);
  } finally {
    t.cleanup();
  }
});

test('max_rss_bytes is the run\'s own peak, not its parent\'s: a parent holding 768 MiB when it spawned the run', { timeout: 120_000 }, () => {
  // getrusage's maxrss survives exec on Linux: a run started by a large process (a bench script, a
  // backup daemon) reported that process's memory as its own
  const t = tempDir();
  try {
    const { root, home } = sample(t.dir);
    const pw = passFile(t.dir);
    const archive = join(t.dir, 'b.bin');
    const host = join(t.dir, 'host');
    const wrapper = join(t.dir, 'big-parent.mjs');
    writeFileSync(wrapper, [
      "import { spawnSync } from 'node:child_process';",
      'const held = Buffer.alloc(768 * 1024 * 1024, 1); // touched: resident',
      "const r = spawnSync(process.execPath, process.argv.slice(2), { stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 26 });",
      'process.stdout.write(r.stdout);',
      'process.exitCode = r.status ?? 1;',
      'if (held[12345] !== 1) process.exitCode = 9;',
    ].join('\n'));
    const peakOf = (stdout: string): number => {
      const summary = stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l['message_type'] === 'summary')!;
      assert.equal(summary['ok'], true);
      return summary['max_rss_bytes'] as number;
    };
    const b = node(wrapper, [BACKUP_BIN, '--json', '--qubes-root', root, '--dom0-home', home, '-p', pw, '-y', '--scrypt-logn', '14', archive]);
    assert.equal(b.status, 0, b.stderr);
    const r = node(wrapper, [RESTORE_BIN, '--json', '-y', '-p', pw, '--qubes-root', host, '--dom0-home', home, '--ignore-missing', archive]);
    assert.equal(r.status, 0, r.stderr);
    for (const [what, peak] of [['backup', peakOf(b.stdout)], ['restore', peakOf(r.stdout)]] as const) {
      assert.ok(peak > 16 * MiB, `${what}: a peak of ${peak} bytes is not node's`);
      assert.ok(peak < 512 * MiB, `${what}: peak RSS ${Math.round(peak / MiB)} MiB: the parent's 768 MiB counted as the run's`);
    }
  } finally {
    t.cleanup();
  }
});

test('stdout and --dest-command destinations; stdin and --source-command sources', { timeout: 120_000 }, () => {
  const t = tempDir();
  try {
    const { root, home } = sample(t.dir);
    const pw = passFile(t.dir);
    const base = ['-q', '--qubes-root', root, '--dom0-home', home, '-p', pw, '-y', '--scrypt-logn', '10'];
    const viaStdout = join(t.dir, 'stdout.bin');
    let r = run('sh', ['-c', `"${process.execPath}" "${BACKUP_BIN}" ${base.map((a) => `'${a}'`).join(' ')} - vault personal > '${viaStdout}'`]);
    assert.equal(r.status, 0, r.stderr);
    const viaCmd = join(t.dir, 'cmd.bin');
    r = node(BACKUP_BIN, [...base, '--dest-command', `cat > '${viaCmd}'`, 'ignored-location', 'vault', 'personal']);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stderr, '', 'a quiet command: nothing said');
    // what a command that succeeded wrote on its stderr is not lost (a warning, also with -q)
    const chatty = node(BACKUP_BIN, [...base, '--dest-command', `echo 'Warning: Permanently added host' >&2; cat > /dev/null`, 'x', 'vault']);
    assert.equal(chatty.status, 0, chatty.stderr);
    assert.match(chatty.stderr, /^warning: the command .* said on stderr: Warning: Permanently added host$/m);
    const failing = node(BACKUP_BIN, [...base, '--dest-command', 'cat > /dev/null; exit 3', 'x', 'vault']);
    assert.notEqual(failing.status, 0, 'a failing destination command fails the backup');
    for (const archive of [viaStdout, viaCmd]) {
      const list = run('tar', ['-i', '-tf', archive]).stdout.split('\n').filter(Boolean);
      assert.ok(list.includes('vm5/private.img.000.enc') && list.includes('vm4/private.img.000.enc'), list.join(' '));
      const v1 = run('sh', ['-c', `"${process.execPath}" "${RESTORE_BIN}" -q -y --verify-only -p '${pw}' - < '${archive}'`]);
      assert.equal(v1.status, 0, `verify from stdin: ${v1.stderr}`);
      // the passphrase comes from a file here, so stdin is free for the archive; and a command as source
      const host = join(t.dir, `host-${archive.endsWith('stdout.bin') ? 'a' : 'b'}`);
      const v2 = node(RESTORE_BIN, ['-q', '-y', '--qubes-root', host, '--dom0-home', join(t.dir, 'hh', 'user'), '-p', pw, '--source-command', `cat '${archive}'`, '--ignore-missing', 'vault', 'personal']);
      assert.equal(v2.status, 0, `restore from a command: ${v2.stderr}`);
      assert.equal(run('cmp', [join(root, 'appvms/vault/private.img'), join(host, 'appvms/vault/private.img')]).status, 0);
    }
  } finally {
    t.cleanup();
  }
});

test('many threads and small chunks: a quiet backup and restore print nothing at all on stderr', { timeout: 300_000 }, () => {
  // every chunk in flight waits on the run's stop signal (a slot, a key permit, a worker task); at
  // 16 threads that is more than node's default of 10 listeners, whose warning reached stderr
  const t = tempDir();
  try {
    const { root, home } = sample(t.dir);
    const pw = passFile(t.dir);
    for (let i = 0; i < 3; i++) {
      const out = join(t.dir, `many-${i}.bin`);
      let r = node(BACKUP_BIN, ['-q', '-y', '--qubes-root', root, '--dom0-home', home, '-p', pw, '--threads', '16', '--chunk-size', '1M', '--scrypt-logn', '14', '--no-compress', '-x', 'dom0', out]);
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stderr, '', `backup #${i}`);
      const host = join(t.dir, `host-${i}`);
      r = node(RESTORE_BIN, ['-q', '-y', '-p', pw, '--threads', '16', '--qubes-root', join(host, 'q'), '--skip-dom0-home', '--ignore-missing', out]);
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stderr, '', `restore #${i}`);
    }
  } finally {
    t.cleanup();
  }
});

test('format 2: a qubes.xml larger than one tar volume is refused before the question, with the --chunk-size that fits', { timeout: 120_000 }, () => {
  const t = tempDir();
  try {
    const { root, home } = sampleIn(t.dir, { bigImageBytes: 1 * MiB, bigDataBytes: 64 * 1024, smallImageBytes: 1 * MiB, smallDataBytes: 4096, manyAppVms: { count: 120, imageBytes: 65536, dataBytes: 4096 } });
    const pw = passFile(t.dir);
    const out = join(t.dir, 'out');
    mkdirSync(out);
    const base = ['--qubes-root', root, '--dom0-home', home, '-p', pw, '--format', '2', '--no-compress', '-x', 'dom0'];
    let r = node(BACKUP_BIN, [...base, '--chunk-size', '70K', out]);
    assert.equal(r.status, 2, r.stderr);
    const m = /^qvm-backup: error: --chunk-size 70 KiB: qubes\.xml \(\d+ bytes as its tar volume\) must fit in one format 2 volume; give at least --chunk-size (\d+)K$/m.exec(r.stderr);
    assert.ok(m, r.stderr);
    assert.doesNotMatch(r.stderr, /Total size/, 'refused before the plan is shown for the question');
    assert.deepEqual(readdirSync(out), []);
    r = node(BACKUP_BIN, [...base, '-q', '-y', '--chunk-size', `${m[1]}K`, join(out, 'b.bin')]);
    assert.equal(r.status, 0, r.stderr);
    r = node(RESTORE_BIN, ['-q', '-p', pw, '--verify-only', join(out, 'b.bin')]);
    assert.equal(r.status, 0, r.stderr);
  } finally {
    t.cleanup();
  }
});
