// Command-line behaviour: every usage error is one line `PROG: error: ...` and exit 2 before anything
// is written; one size parser for every size option; one chunk-size limit shared with the restore;
// --json never writes into the archive's stream; passphrase files read as Qubes reads them; quiet
// runs print nothing; the exit status tables of README and --help list what the commands do.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir, passFile, node, run, ROOT, BACKUP_BIN, RESTORE_BIN, sampleIn } from '../helpers/cli.js';

const MiB = 1024 * 1024;
const sh = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

function sample(dir: string) {
  return sampleIn(dir, { bigImageBytes: 32 * MiB, bigDataBytes: 2 * MiB, smallImageBytes: 4 * MiB, smallDataBytes: 64 * 1024 });
}

test('bad option values: one line "PROG: error: ..." and exit 2, nothing written', () => {
  const t = tempDir();
  try {
    const { root, home } = sample(t.dir);
    const pw = passFile(t.dir);
    const out = join(t.dir, 'out');
    mkdirSync(out);
    const base = ['--qubes-root', root, '--dom0-home', home, '-p', pw, '-y', '--scrypt-logn', '10'];
    const cases: [string, string[], RegExp][] = [];
    const sizes: [string, string, string][] = [['--chunk-size', '1x', 'qvm-backup'], ['--chunk-size', 'abc', 'qvm-backup'], ['--chunk-size', '-5', 'qvm-backup'], ['--chunk-size', '', 'qvm-backup'], ['--max-memory', 'lots', 'qvm-backup'], ['--max-memory', '0', 'qvm-backup'], ['--max-memory', '99999999999T', 'qvm-backup-restore'], ['--max-memory', '1.5Q', 'qvm-backup-restore']];
    for (const [opt, v, prog] of sizes) {
      const args = prog === 'qvm-backup' ? [...base, opt, v, out] : [opt, v, '-p', pw, join(t.dir, 'none.bin')];
      cases.push([prog === 'qvm-backup' ? BACKUP_BIN : RESTORE_BIN, args, new RegExp(`^${prog}: error: ${opt}: invalid size '${v.replace(/[.]/g, '\\.')}': expected a positive number of bytes`)]);
    }
    cases.push(
      // the restore's chunk slots hold at most Qubes' chunk size: larger chunks are refused at once
      [BACKUP_BIN, [...base, '--chunk-size', '128M', out], /^qvm-backup: error: --chunk-size 128 MiB: format 4 needs 64 KiB to 100 MiB/],
      [BACKUP_BIN, [...base, '--format', '2', '--no-compress', '--chunk-size', '100M', out], /^qvm-backup: error: --chunk-size 100 MiB: format 2 needs 70 KiB to 100000 KiB/],
      [BACKUP_BIN, [...base, '--chunk-size', '65537', out], /^qvm-backup: error: --chunk-size 65537 B: .* a multiple of 4096 bytes$/],
      [BACKUP_BIN, [...base, '--threads', 'x', out], /^qvm-backup: error: --threads: invalid value 'x': expected an integer from 1 to 256$/],
      [BACKUP_BIN, [...base, '--scrypt-logn', '', out], /^qvm-backup: error: --scrypt-logn: invalid value '': expected an integer from 10 to 22$/],
      [BACKUP_BIN, [...base, '--jsonn', out], /^qvm-backup: error: unknown option '--jsonn' \(Did you mean --json\?\)$/],
      [BACKUP_BIN, [...base, '--format', '5', out], /^qvm-backup: error: option '--format <n>' argument '5' is invalid/],
      [BACKUP_BIN, ['-y'], /^qvm-backup: error: missing required argument 'backup-location'$/],
      [RESTORE_BIN, ['--threads', '0', 'x'], /^qvm-backup-restore: error: --threads: invalid value '0'/],
      // stdin cannot carry both the passphrase and the archive
      [RESTORE_BIN, ['-p', '-', '-'], /^qvm-backup-restore: error: -p - and the archive '-' cannot both be read from stdin/],
    );
    for (const [bin, args, message] of cases) {
      const r = node(bin, args);
      const what = `${bin.split('/').pop()} ${args.slice(-3).join(' ')}`;
      assert.equal(r.status, 2, `${what}: ${r.stderr}`);
      assert.equal(r.stdout, '', what);
      assert.equal(r.stderr.split('\n').length, 2, `${what}: one line: ${r.stderr}`);
      assert.match(r.stderr.trimEnd(), message, what);
    }
    assert.deepEqual(readdirSync(out), []);
  } finally {
    t.cleanup();
  }
});

test('usage errors with --json: the same line on stderr and one exit_error on stdout, never into a stdout archive', () => {
  const t = tempDir();
  try {
    const pw = passFile(t.dir);
    const out = join(t.dir, 'out');
    mkdirSync(out);
    const cases: [string, string[], string | null][] = [
      // found by the option parser
      [BACKUP_BIN, ['--json', '--threads', 'x', out], 'backup'],
      [BACKUP_BIN, ['--json', '--jsonn', out], 'backup'],
      [RESTORE_BIN, ['--json', '--threads', '0', 'x'], 'restore'],
      [RESTORE_BIN, ['--json', '--verify-only', '--max-memory', 'lots', 'x'], 'verify'],
      [RESTORE_BIN, ['--json', '--list', '--nosuch', 'x'], 'list'],
      // found when the location is read
      [RESTORE_BIN, ['--json', '-p', '-', '-'], 'restore'],
      [RESTORE_BIN, ['--json', '--location-is-service', 'x'], 'restore'],
      // a lone '-' may make stdout the archive's stream: no JSON there
      [BACKUP_BIN, ['--json', '--threads', 'x', '-'], null],
      [BACKUP_BIN, ['--json', '-p', pw, '-y', '--qubes-root', join(t.dir, 'none'), '-'], null],
    ];
    for (const [bin, args, op] of cases) {
      const r = node(bin, args);
      const what = `${bin.split('/').pop()} ${args.join(' ')}`;
      assert.equal(r.status, 2, `${what}: ${r.stderr}`);
      assert.equal(r.stderr.split('\n').length, 2, `${what}: one line: ${r.stderr}`);
      if (op === null) {
        assert.equal(r.stdout, '', what);
        continue;
      }
      const lines = r.stdout.trimEnd().split('\n');
      assert.equal(lines.length, 1, `${what}: ${r.stdout}`);
      const m = JSON.parse(lines[0]!) as Record<string, unknown>;
      assert.deepEqual({ type: m['message_type'], op: m['operation'], code: m['code'], error_code: m['error_code'] }, { type: 'exit_error', op, code: 2, error_code: 'ERR_USAGE' }, what);
      assert.equal(`${bin === RESTORE_BIN ? 'qvm-backup-restore' : 'qvm-backup'}: error: ${String(m['message'])}`, r.stderr.trimEnd(), what);
    }
    assert.deepEqual(readdirSync(out), []);
  } finally {
    t.cleanup();
  }
});

test('--max-memory below the minimum: the warning shows what is given and used in sensible units', () => {
  const t = tempDir();
  try {
    const { root, home } = sample(t.dir);
    const pw = passFile(t.dir);
    const r = node(BACKUP_BIN, ['-q', '--qubes-root', root, '--dom0-home', home, '-p', pw, '-y', '--scrypt-logn', '10', '--chunk-size', '64K', '--max-memory', '1K', join(t.dir, 'b.bin'), 'vault']);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /^warning: --max-memory 1\.0 KiB is below the minimum for these settings; using \d+(\.\d)? MiB \(chunk size 64\.0 KiB, scrypt logN 10 needs 1\.0 MiB per derivation\)\n$/);
    // -v: the settings line after it says the budget used, not the one asked
    const v = node(BACKUP_BIN, ['-v', '--qubes-root', root, '--dom0-home', home, '-p', pw, '-y', '--scrypt-logn', '10', '--chunk-size', '64K', '--max-memory', '1K', join(t.dir, 'v.bin'), 'vault']);
    assert.equal(v.status, 0, v.stderr);
    const used = /using (\d+(?:\.\d)? MiB)/.exec(v.stderr)?.[1];
    assert.ok(used !== undefined, v.stderr);
    assert.match(v.stderr, new RegExp(`^settings: .*, max_memory=${used.replace('.', '\\.')}, `, 'm'));
  } finally {
    t.cleanup();
  }
});

test('--json never writes into the archive: refused with "-", fine with --dest-command and for restore from stdin', { timeout: 120_000 }, () => {
  const t = tempDir();
  try {
    const { root, home } = sample(t.dir);
    const pw = passFile(t.dir);
    const base = ['--json', '--qubes-root', root, '--dom0-home', home, '-p', pw, '-y', '--scrypt-logn', '10'];
    let r = node(BACKUP_BIN, [...base, '-', 'vault']);
    assert.equal(r.status, 2, r.stderr);
    assert.equal(r.stdout, '', 'nothing on stdout');
    assert.match(r.stderr, /^qvm-backup: error: --json prints to stdout, which carries the archive with '-'/);
    const archive = join(t.dir, 'b.bin');
    r = node(BACKUP_BIN, [...base, '--dest-command', `cat > ${sh(archive)}`, '-', 'vault']);
    assert.equal(r.status, 0, r.stderr);
    const types = r.stdout.trim().split('\n').map((l) => (JSON.parse(l) as { message_type: string }).message_type);
    assert.ok(types.includes('summary'), r.stdout);
    // restore from stdin: stdout carries only JSON lines
    const v = run('sh', ['-c', `${sh(process.execPath)} ${sh(RESTORE_BIN)} --json -y --verify-only -p ${sh(pw)} - < ${sh(archive)}`]);
    assert.equal(v.status, 0, v.stderr);
    const lines = v.stdout.trim().split('\n').map((l) => JSON.parse(l) as { message_type: string; ok?: boolean });
    assert.equal(lines.at(-1)?.message_type, 'summary');
    assert.equal(lines.at(-1)?.ok, true);
  } finally {
    t.cleanup();
  }
});

test('passphrase files are read like Qubes: first line, trailing whitespace stripped; the same file works for both commands', { timeout: 120_000 }, () => {
  const t = tempDir();
  try {
    const { root, home } = sample(t.dir);
    const file = (name: string, text: string) => {
      const p = join(t.dir, name);
      writeFileSync(p, text);
      return p;
    };
    const archive = join(t.dir, 'b.bin');
    const b = node(BACKUP_BIN, ['-q', '--qubes-root', root, '--dom0-home', home, '-y', '--scrypt-logn', '10', '-p', file('crlf.txt', '  my secret \t \r\nsecond line\n'), archive, 'vault']);
    assert.equal(b.status, 0, b.stderr);
    const verify = (args: string[], input?: string) => node(RESTORE_BIN, ['-q', '-y', '--verify-only', ...args, archive], input === undefined ? {} : { input });
    for (const text of ['  my secret', '  my secret\n', '  my secret\t\t\r\n', '  my secret  \rignored\n']) {
      const r = verify(['-p', file('p.txt', text)]);
      assert.equal(r.status, 0, `${JSON.stringify(text)}: ${r.stderr}`);
    }
    let r = verify(['-p', '-'], '  my secret \t\r\n');
    assert.equal(r.status, 0, `stdin: ${r.stderr}`);
    r = verify(['-p', file('p.txt', 'my secret\n')]);
    assert.equal(r.status, 4, 'leading whitespace is part of the passphrase (Qubes strips only the right)');
  } finally {
    t.cleanup();
  }
});

test('quiet runs print nothing: no Node warnings, no stray lines', { timeout: 120_000 }, () => {
  const t = tempDir();
  try {
    const { root, home } = sample(t.dir);
    const pw = passFile(t.dir);
    const archive = join(t.dir, 'b.bin');
    const host = join(t.dir, 'host');
    mkdirSync(join(t.dir, 'hh', 'user'), { recursive: true });
    for (const [bin, args] of [
      [BACKUP_BIN, ['-q', '--qubes-root', root, '--dom0-home', home, '-p', pw, '-y', '--scrypt-logn', '10', '--chunk-size', '256K', archive]],
      [RESTORE_BIN, ['-q', '-y', '--verify-only', '-p', pw, archive]],
      [RESTORE_BIN, ['-q', '-y', '-p', pw, '--qubes-root', host, '--dom0-home', join(t.dir, 'hh', 'user'), archive]],
    ] as const) {
      const r = node(bin, [...args]);
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stderr, '', `${bin}: stderr must be empty`);
      assert.equal(r.stdout, '');
    }
  } finally {
    t.cleanup();
  }
});

test('README and --help list the same exit statuses, including 129, 130, 141 and 143', () => {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('## Exit status'), readme.indexOf('\n## ', readme.indexOf('## Exit status') + 1));
  const fromReadme = [...section.matchAll(/^\| (\d+) \|/gm)].map((m) => Number(m[1]));
  const want = [0, 1, 2, 3, 4, 5, 6, 7, 8, 129, 130, 141, 143];
  assert.deepEqual(fromReadme, want);
  for (const bin of [BACKUP_BIN, RESTORE_BIN]) {
    const help = node(bin, ['--help']);
    assert.equal(help.status, 0);
    const table = help.stdout.slice(help.stdout.indexOf('Exit status:'));
    assert.deepEqual([...table.matchAll(/^ {2}(\d+) /gm)].map((m) => Number(m[1])), want, bin);
  }
});
