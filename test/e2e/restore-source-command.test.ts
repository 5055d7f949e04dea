// --source-command (issue 8): the format has no end marker, so the command's exit status is the only
// sign of a short stream — a failing command fails the run before anything is installed; a command
// that goes on writing after the archive turned out bad is killed, and the run ends promptly.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, readdirSync, writeFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { buildV4Archive, tarOf, type InnerArchive } from '../helpers/archive-builder.js';
import { RESTORE_BIN, tempDir } from '../helpers/cli.js';
import { r4Xml } from '../main/restore/sample-xml.js';

const PW = 'source command';

function setup() {
  const t = tempDir('qvmb-src-');
  const root = path.join(t.dir, 'host');
  mkdirSync(path.join(root, 'vm-templates/tpl'), { recursive: true });
  writeFileSync(path.join(root, 'vm-templates/tpl/root.img'), 'root');
  const hostXml = r4Xml([{ name: 'tpl', klass: 'TemplateVM', qid: 2 }]);
  writeFileSync(path.join(root, 'qubes.xml'), hostXml);
  const home = path.join(t.dir, 'home', 'user');
  mkdirSync(home, { recursive: true });
  const pw = path.join(t.dir, 'pw');
  writeFileSync(pw, `${PW}\n`);
  const file = (subdir: string, name: string, content: string): InnerArchive => {
    const d = path.join(t.dir, 'src', `${subdir}-${name}`);
    mkdirSync(path.join(d, subdir), { recursive: true });
    writeFileSync(path.join(d, subdir, name), content);
    return { base: `${subdir}/${name}`, tar: tarOf(d, [`${subdir}/${name}`]) };
  };
  const xml = r4Xml([
    { name: 'alpha', klass: 'AppVM', qid: 9, template: 'tpl', netvm: null, backup: true, size: 4096 },
    { name: 'beta', klass: 'AppVM', qid: 10, template: 'tpl', netvm: null, backup: true, size: 4096 },
  ]);
  const members = [file('vm9', 'private.img', 'alpha data'), file('vm10', 'private.img', 'beta data'), file('vm10', 'firewall.xml', '<firewall/>')];
  const archive = path.join(t.dir, 'archive.bin');
  writeFileSync(archive, buildV4Archive({ passphrase: PW, qubesXml: xml, members, work: t.dir }));
  // where the last member (beta's firewall.xml) starts: same sizes without it, minus the end blocks
  const cut = buildV4Archive({ passphrase: PW, qubesXml: xml, members: members.slice(0, 2), work: t.dir }).length - 1024;
  return { t, root, home, pw, archive, cut, hostXml };
}

function run(args: string[], timeoutMs: number): Promise<{ code: number | null; stderr: string; ms: number }> {
  const start = Date.now();
  return new Promise((resolve, reject) => {
    const c = spawn(process.execPath, [RESTORE_BIN, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    c.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      c.kill('SIGKILL');
      reject(new Error(`restore still running after ${timeoutMs} ms: ${stderr}`));
    }, timeoutMs);
    c.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stderr, ms: Date.now() - start });
    });
  });
}

test('a --source-command that fails after a stream cut at a member boundary fails the run: exit 5, its status and stderr, nothing installed', { timeout: 60_000 }, async () => {
  const s = setup();
  try {
    const cmd = `head -c ${s.cut} '${s.archive}'; echo 'ssh: connection reset' >&2; exit 255`;
    const r = await run(['-y', '-q', '-p', s.pw, '--qubes-root', s.root, '--dom0-home', s.home, '--source-command', cmd], 30_000);
    assert.equal(r.code, 5, r.stderr);
    assert.match(r.stderr, /exited with status 255/);
    assert.match(r.stderr, /connection reset/);
    assert.equal(readFileSync(path.join(s.root, 'qubes.xml'), 'utf8'), s.hostXml);
    assert.equal(existsSync(path.join(s.root, 'appvms')), false);
    assert.deepEqual(readdirSync(s.root).filter((n) => n.startsWith('.restore-')), []);
    // cut inside a member (the run stops reading there), its output closed first and its failure
    // reported a moment later: still the run's failure, and the complete alpha is not installed
    const late = await run(['-y', '-q', '-p', s.pw, '--qubes-root', s.root, '--dom0-home', s.home, '--source-command', `head -c ${s.cut - 700} '${s.archive}'; exec >&-; sleep 4; exit 7`], 30_000);
    assert.equal(late.code, 5, late.stderr);
    assert.match(late.stderr, /exited with status 7/);
    assert.equal(existsSync(path.join(s.root, 'appvms')), false);
    // the same cut stream from a command that succeeds restores both VMs (beta without its firewall)
    const ok = await run(['-y', '-q', '-p', s.pw, '--qubes-root', s.root, '--dom0-home', s.home, '--source-command', `head -c ${s.cut} '${s.archive}'`], 30_000);
    assert.equal(ok.code, 0, ok.stderr);
    assert.deepEqual(readdirSync(path.join(s.root, 'appvms')).sort(), ['alpha', 'beta']);
  } finally {
    s.t.cleanup();
  }
});

test('a --source-command that fails before or inside the archive\'s head is the cause (exit 5, its status and stderr), not "not a Qubes backup" or "truncated"', { timeout: 60_000 }, async () => {
  const s = setup();
  try {
    for (const [cmd, status] of [[`echo 'ssh: connect to host b: Connection refused' >&2; exit 255`, 255], [`head -c 3000 '${s.archive}'; echo 'ssh: connection reset' >&2; exit 3`, 3]] as const) {
      for (const mode of [[], ['--verify-only']]) {
        const r = await run(['-y', '-q', ...mode, '-p', s.pw, '--qubes-root', s.root, '--dom0-home', s.home, '--source-command', cmd], 30_000);
        assert.equal(r.code, 5, r.stderr);
        assert.match(r.stderr.trim(), new RegExp(`^qvm-backup-restore: error: --source-command exited with status ${status}: .*its stderr ends with: ssh: conn`));
      }
    }
    // one that succeeds with something else is still "not a Qubes backup"; so is one that closed
    // its output and lives on (its exit is awaited a second, not 30)
    const other = await run(['-y', '-q', '-p', s.pw, '--source-command', 'echo hello'], 30_000);
    assert.equal(other.code, 2, other.stderr);
    assert.match(other.stderr, /not a Qubes backup/);
    const lingering = await run(['-y', '-q', '-p', s.pw, '--source-command', 'echo hello; exec >&-; sleep 40'], 20_000);
    assert.equal(lingering.code, 2, lingering.stderr);
    assert.match(lingering.stderr, /not a Qubes backup: text starting "hello"/);
    assert.equal(existsSync(path.join(s.root, 'appvms')), false);
  } finally {
    s.t.cleanup();
  }
});

test('a --source-command that keeps writing after the archive turned out bad is killed; the run ends promptly', { timeout: 60_000 }, async () => {
  const s = setup();
  try {
    // a complete archive minus its end blocks, then endless garbage: the reader stops at a bad header
    const cmd = `head -c ${readFileSync(s.archive).length - 1024} '${s.archive}'; exec cat /dev/urandom`;
    const r = await run(['-y', '-q', '-p', s.pw, '--qubes-root', s.root, '--dom0-home', s.home, '--source-command', cmd], 30_000);
    assert.notEqual(r.code, 0, r.stderr);
    // alpha was complete before the garbage; beta's last file might have had more chunks: it fails
    assert.equal(r.code, 3, r.stderr);
    assert.deepEqual(readdirSync(path.join(s.root, 'appvms')), ['alpha']);
    assert.ok(r.ms < 20_000, `took ${r.ms} ms`);
    assert.match(r.stderr, /corrupt|checksum|truncated/i);
    assert.deepEqual(readdirSync(s.root).filter((n) => n.startsWith('.restore-')), []);
  } finally {
    s.t.cleanup();
  }
});

test('nothing a --source-command started outlives the run: a cut stream, and a SIGTERM while it waits', { timeout: 60_000 }, async () => {
  const s = setup();
  const left = (tag: string): string[] =>
    readdirSync('/proc')
      .filter((p) => /^\d+$/.test(p))
      .filter((p) => {
        try {
          // the sleep itself, not the shell or the restore whose command lines hold its text
          const argv = readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0');
          return /(^|\/)sleep$/.test(argv[0] ?? '') && `sleep ${argv[1]}` === tag;
        } catch {
          return false;
        }
      });
  try {
    // garbage in the middle of a member (the run stops reading at once), then the shell waits for a
    // child of its own that holds the output open
    const tag = `${4000 + (process.pid % 1000)}.25`;
    const r = await run(['-y', '-q', '-p', s.pw, '--qubes-root', s.root, '--dom0-home', s.home, '--source-command', `head -c ${s.cut - 700} '${s.archive}'; head -c 100000 /dev/urandom; sleep ${tag}`], 30_000);
    assert.equal(r.code, 3, r.stderr);
    assert.deepEqual(left(`sleep ${tag}`), [], 'the sleep the shell started is gone');
    // stopped while the command has not written anything yet
    const tag2 = `${5000 + (process.pid % 1000)}.75`;
    const c = spawn(process.execPath, [RESTORE_BIN, '-y', '-q', '-p', s.pw, '--qubes-root', s.root, '--dom0-home', s.home, '--rename-conflicting', '--source-command', `sleep ${tag2}; cat '${s.archive}'`], { stdio: ['ignore', 'ignore', 'pipe'] });
    for (let i = 0; i < 200 && left(`sleep ${tag2}`).length === 0; i++) await new Promise((res) => setTimeout(res, 50));
    assert.notDeepEqual(left(`sleep ${tag2}`), [], 'the command runs');
    c.kill('SIGTERM');
    const code = await new Promise<number | null>((res) => c.on('exit', res));
    assert.equal(code, 143);
    assert.deepEqual(left(`sleep ${tag2}`), [], 'the sleep the shell started is gone');
  } finally {
    s.t.cleanup();
  }
});
