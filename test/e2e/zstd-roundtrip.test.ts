// `-Z zstd` end to end on whatever Node runs the tests: in worker threads where node:zlib has zstd
// (Node >= 22.15), by the zstd program where it does not (Node 20; reading the images' inner
// archives made in-process, tar -I for directories) — the summary says
// which ran; the restore decodes in-process or by the program in the same way. CI runs the suite on
// both. Byte-identical images, holes kept; level ranges per filter checked before anything is written.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir, passFile, node, run, duKiB, haveCmd, BACKUP_BIN, RESTORE_BIN, sampleIn } from '../helpers/cli.js';

const MiB = 1024 * 1024;
const [major = 0, minor = 0] = process.versions.node.split('.').map(Number);
const IN_PROCESS = major > 22 || (major === 22 && minor >= 15);
const noZstd = !IN_PROCESS && !haveCmd('zstd') ? 'neither zlib zstd nor the zstd program' : false;

function sameFile(a: string, b: string): void {
  const r = run('cmp', [a, b]);
  assert.equal(r.status, 0, `${b} differs from ${a}: ${r.stdout}${r.stderr}`);
  assert.ok(duKiB(b) <= duKiB(a) + 64, `${b} lost its holes (${duKiB(b)} KiB vs ${duKiB(a)} KiB)`);
}

/** The `summary` JSON line of a --json run. */
function summaryOf(stdout: string): Record<string, unknown> {
  const line = stdout.split('\n').find((l) => l.includes('"message_type":"summary"'));
  assert.ok(line, `no summary line in ${stdout.slice(-500)}`);
  return JSON.parse(line) as Record<string, unknown>;
}

function restore(archive: string, host: string, hh: string, pw: string, args: string[] = []) {
  mkdirSync(hh, { recursive: true });
  return node(RESTORE_BIN, ['-q', '-y', '-p', pw, '--qubes-root', host, '--dom0-home', hh, archive, ...args]);
}

test(`-Z zstd round trip (${IN_PROCESS ? 'worker threads, node:zlib' : 'zstd program'}): byte-identical, holes kept, summary names the path`, { timeout: 300_000, skip: noZstd }, () => {
  const t = tempDir();
  try {
    const { root, home } = sampleIn(t.dir, { bigImageBytes: 384 * MiB, bigDataBytes: 24 * MiB, smallImageBytes: 32 * MiB, smallDataBytes: 512 * 1024 });
    const pw = passFile(t.dir);
    const archive = join(t.dir, 'zstd.bin');
    const r = node(BACKUP_BIN, ['--json', '--qubes-root', root, '--dom0-home', home, '-p', pw, '-y', '--scrypt-logn', '14', '--chunk-size', '2M', '--threads', '2', '-Z', 'zstd', archive]);
    assert.equal(r.status, 0, `backup failed: ${r.stderr}`);
    const s = summaryOf(r.stdout);
    const expected = IN_PROCESS ? { filter: 'zstd', level: 3, engine: 'node-zlib-workers', threads: 2 } : { filter: 'zstd', level: 3, engine: 'program', command: 'zstd -3 -T2' };
    assert.deepEqual(s['compression'], expected);
    assert.match(String(s['message']), IN_PROCESS ? /compressed with zstd -3 in 2 worker threads with node:zlib$/ : /compressed by the zstd program: zstd -3 -T2 \(Node\.js v[\d.]+ has no zstd in node:zlib\)$/);
    // the program reads the images' inner archives from us, not from tar -I (512-byte reads)
    const stages = (s['stats'] as { stages: { stage: string; count: number }[] }).stages;
    const programRuns = stages.find((x) => x.stage === 'compression program (start to exit)')?.count ?? 0;
    if (IN_PROCESS) assert.equal(programRuns, 0);
    else assert.ok(programRuns >= 4, `the four images through the program, made in-process: ${JSON.stringify(stages)}`);
    assert.match(run('tar', ['-xOf', archive, 'backup-header']).stdout, /^compression-filter=zstd$/m);
    const host = join(t.dir, 'host');
    const hh = join(t.dir, 'hh', 'user');
    const x = restore(archive, host, hh, pw);
    assert.equal(x.status, 0, `restore failed: ${x.stderr}`);
    for (const rel of ['appvms/work/private.img', 'appvms/personal/private.img', 'vm-templates/fedora-40/root.img', 'vm-templates/fedora-40/private.img']) sameFile(join(root, rel), join(host, rel));
    assert.equal(readFileSync(join(host, 'appvms/work/firewall.xml'), 'utf8'), readFileSync(join(root, 'appvms/work/firewall.xml'), 'utf8'));
    const homes = readdirSync(hh).filter((n) => n.startsWith('home-restore-'));
    assert.equal(readFileSync(join(hh, homes[0]!, 'dom0-home/user/Documents/notes.txt'), 'utf8'), readFileSync(join(home, 'Documents/notes.txt'), 'utf8'));
  } finally {
    t.cleanup();
  }
});

test('-Z zstdmt --compress-level 7: the header keeps zstdmt, the level is used, the archive restores', { timeout: 300_000, skip: noZstd || (haveCmd('zstdmt') ? false : 'zstdmt not installed') }, () => {
  const t = tempDir();
  try {
    const { root, home } = sampleIn(t.dir, { bigImageBytes: 64 * MiB, bigDataBytes: 4 * MiB, smallImageBytes: 16 * MiB, smallDataBytes: 256 * 1024 });
    const pw = passFile(t.dir);
    const archive = join(t.dir, 'zstdmt.bin');
    const r = node(BACKUP_BIN, ['--json', '--qubes-root', root, '--dom0-home', home, '-p', pw, '-y', '--scrypt-logn', '12', '--threads', '1', '-Z', 'zstdmt', '--compress-level', '7', archive, 'work']);
    assert.equal(r.status, 0, `backup failed: ${r.stderr}`);
    const c = summaryOf(r.stdout)['compression'] as Record<string, unknown>;
    assert.equal(c['filter'], 'zstdmt');
    assert.equal(c['level'], 7);
    if (!IN_PROCESS) assert.equal(c['command'], 'zstdmt -7 -T1');
    assert.match(run('tar', ['-xOf', archive, 'backup-header']).stdout, /^compression-filter=zstdmt$/m);
    const host = join(t.dir, 'host');
    const x = restore(archive, host, join(t.dir, 'hh', 'user'), pw, ['--ignore-missing', 'work']);
    assert.equal(x.status, 0, `restore failed: ${x.stderr}`);
    sameFile(join(root, 'appvms/work/private.img'), join(host, 'appvms/work/private.img'));
  } finally {
    t.cleanup();
  }
});

test('--compress-level outside the filter\'s range is a usage error before anything is written', { timeout: 60_000 }, () => {
  const t = tempDir();
  try {
    const { root, home } = sampleIn(t.dir, { bigImageBytes: 8 * MiB, bigDataBytes: 1 * MiB, smallImageBytes: 4 * MiB, smallDataBytes: 64 * 1024 });
    const pw = passFile(t.dir);
    const out = join(t.dir, 'out');
    mkdirSync(out);
    for (const [args, why] of [
      [['--compress-level', '10'], /--compress-level 10: gzip takes 1 to 9/],
      [['-Z', 'zstd', '--compress-level', '20'], /--compress-level: invalid value '20': expected an integer from 1 to 19/],
      [['-Z', 'xz', '--compress-level', '3'], /applies to gzip \(1-9\) and zstd \(1-19\) only, not to xz/],
      [['--no-compress', '--compress-level', '3'], /no effect with --no-compress/],
    ] as const) {
      const r = node(BACKUP_BIN, ['--qubes-root', root, '--dom0-home', home, '-p', pw, '-y', '--scrypt-logn', '10', ...args, out]);
      assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, why);
    }
    assert.deepEqual(readdirSync(out), []);
  } finally {
    t.cleanup();
  }
});
