// Run-level integrity of a restore (issue 7 review): a selected VM is either installed or reported
// failed — never silently left out with exit 0 (reference cycles, a lost host lock); a backup
// recording backup_timestamp waits for the host lock; a --source-command that leaves a process
// holding its stderr does not hang the run. Archives are built in code, valid and authenticated.
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, readlinkSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { parseQubesXml, validateHostCollection } from '../../src/main/qubes-xml/index.js';
import { buildV4Archive, tarOf, type InnerArchive } from '../helpers/archive-builder.js';
import { BACKUP_BIN, RESTORE_BIN, tempDir } from '../helpers/cli.js';
import { r4Xml, type VmSpec } from '../main/restore/sample-xml.js';

const PW = 'run integrity';

/** The backup's qubes.xml of most tests here: two AppVMs on the host's template, without network. */
const twoVmsXml = (): string =>
  r4Xml([
    { name: 'evil', klass: 'AppVM', qid: 9, template: 'tpl', netvm: null, backup: true, size: 4096 },
    { name: 'good', klass: 'AppVM', qid: 10, template: 'tpl', netvm: null, backup: true, size: 4096 },
  ]);

function setup() {
  const t = tempDir('qvmb-runint-');
  const root = path.join(t.dir, 'host');
  mkdirSync(path.join(root, 'vm-templates/tpl'), { recursive: true });
  writeFileSync(path.join(root, 'vm-templates/tpl/root.img'), 'template root');
  const hostXml = r4Xml([{ name: 'tpl', klass: 'TemplateVM', qid: 2 }]);
  writeFileSync(path.join(root, 'qubes.xml'), hostXml);
  const home = path.join(t.dir, 'home', 'user');
  mkdirSync(home, { recursive: true });
  const pw = path.join(t.dir, 'pw');
  writeFileSync(pw, `${PW}\n`);
  const image = (subdir: string, content: string): InnerArchive => {
    const d = path.join(t.dir, 'src', subdir);
    mkdirSync(path.join(d, subdir), { recursive: true });
    writeFileSync(path.join(d, subdir, 'private.img'), content);
    return { base: `${subdir}/private.img`, tar: tarOf(d, [`${subdir}/private.img`]) };
  };
  const archive = (xml: string): string => {
    const file = path.join(t.dir, `archive-${Math.random().toString(36).slice(2)}.bin`);
    writeFileSync(file, buildV4Archive({ passphrase: PW, qubesXml: xml, members: [image('vm9', 'nine'), image('vm10', 'ten')], work: t.dir }));
    return file;
  };
  const args = (location: string | null, extra: string[] = []): string[] => [RESTORE_BIN, '-y', '-p', pw, '--qubes-root', root, '--dom0-home', home, ...(location === null ? [] : [location]), ...extra];
  return { t, root, home, pw, hostXml, archive, args };
}

function run(argv: string[], timeoutMs: number): { child: ChildProcess; done: Promise<{ code: number | null; stderr: string; ms: number }> } {
  const start = Date.now();
  const child = spawn(process.execPath, argv, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const done = new Promise<{ code: number | null; stderr: string; ms: number }>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`still running after ${timeoutMs} ms: ${stderr}`));
    }, timeoutMs);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stderr, ms: Date.now() - start });
    });
  });
  return { child, done };
}

/** Poll `check` every 20 ms until it returns a value (or fail after `ms`). */
async function waitFor<T>(what: string, check: () => T | undefined | null | false, ms = 20_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = check();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const hostNames = (root: string): string[] => parseQubesXml(readFileSync(path.join(root, 'qubes.xml'))).domains.map((d) => d.name).sort();
const noStaging = (root: string): void => assert.deepEqual(readdirSync(root).filter((n) => n.startsWith('.restore-')), [], 'staging removed');

test('a netVM loop between restored VMs is refused (exit 2, nothing half-done); a default_dispvm loop is restored whole (set once both VMs are installed)', { timeout: 60_000 }, async () => {
  const netCycle: VmSpec[] = [
    { name: 'evil', klass: 'AppVM', qid: 9, template: 'tpl', netvm: 'good', providesNetwork: true, backup: true, size: 4096 },
    { name: 'good', klass: 'AppVM', qid: 10, template: 'tpl', netvm: 'evil', providesNetwork: true, backup: true, size: 4096 },
  ];
  const plain: VmSpec[] = netCycle.map((v) => ({ ...v, netvm: null, providesNetwork: false }));
  const dispCycle = r4Xml(plain)
    .replace('<property name="name">evil</property>', '<property name="name">evil</property><property name="template_for_dispvms">True</property><property name="default_dispvm">good</property>')
    .replace('<property name="name">good</property>', '<property name="name">good</property><property name="template_for_dispvms">True</property><property name="default_dispvm">evil</property>');
  {
    const s = setup();
    try {
      const r = await run(s.args(s.archive(dispCycle)), 30_000).done;
      assert.equal(r.code, 0, r.stderr);
      const doc = parseQubesXml(readFileSync(path.join(s.root, 'qubes.xml')));
      assert.deepEqual(validateHostCollection(doc), []);
      assert.equal(doc.domains.find((d) => d.name === 'evil')?.defaultDispvm, 'good');
      assert.equal(doc.domains.find((d) => d.name === 'good')?.defaultDispvm, 'evil');
      noStaging(s.root);
    } finally {
      s.t.cleanup();
    }
  }
  for (const [what, xml] of [['netvm', r4Xml(netCycle)]] as const) {
    const s = setup();
    try {
      const r = await run(s.args(s.archive(xml)), 30_000).done;
      assert.equal(r.code, 2, `${what}: ${r.stderr}`);
      assert.match(r.stderr, /evil/, what);
      assert.match(r.stderr, /good/, what);
      assert.doesNotMatch(r.stderr, /Restore finished/, what);
      // nothing half-done: neither registered nor moved into place
      assert.deepEqual(hostNames(s.root), ['dom0', 'tpl'], what);
      assert.equal(existsSync(path.join(s.root, 'appvms/evil')) || existsSync(path.join(s.root, 'appvms/good')), false, what);
      noStaging(s.root);
    } finally {
      s.t.cleanup();
    }
  }
});

test('the host lock is held by the restore process itself for the whole run: another taker is refused, no helper process holds it', { timeout: 60_000 }, async () => {
  const s = setup();
  try {
    const xml = twoVmsXml();
    const archive = s.archive(xml);
    const cut = readFileSync(archive).indexOf(Buffer.from('vm9/private.img.000.enc')); // head + qubes.xml only
    assert.ok(cut > 0);
    const at = path.join(s.t.dir, 'at');
    const go = path.join(s.t.dir, 'go');
    // the head, then (once told) the data: the lock is taken while the source waits
    const cmd = `head -c ${cut} '${archive}'; : > '${at}'; while [ ! -e '${go}' ]; do sleep 0.02; done; tail -c +${cut + 1} '${archive}'`;
    const r = run(s.args(null, ['--source-command', cmd]), 40_000);
    try {
      await waitFor('the source command to pause', () => existsSync(at));
      // the staging directory is created once the lock is held and the plan is made
      await waitFor('the staging directory', () => readdirSync(s.root).some((n) => n.startsWith('.restore-')));
      // only the restore process has the lock file open (flock(1) only locked it and exited)
      const lockFile = path.join(s.root, 'qubes.xml.lock');
      const holders = readdirSync('/proc').filter((n) => /^\d+$/.test(n)).filter((p) => {
        try {
          return readdirSync(`/proc/${p}/fd`).some((f) => readlinkSync(`/proc/${p}/fd/${f}`) === lockFile);
        } catch {
          return false;
        }
      });
      assert.deepEqual(holders.map(Number), [r.child.pid]);
      // and it is held: a non-blocking flock of the file is refused
      assert.equal(spawnSync('flock', ['--nonblock', lockFile, 'true']).status, 1);
    } finally {
      writeFileSync(go, '');
    }
    const res = await r.done;
    assert.equal(res.code, 0, res.stderr);
    assert.deepEqual(hostNames(s.root), ['dom0', 'evil', 'good', 'tpl']);
    noStaging(s.root);
  } finally {
    s.t.cleanup();
  }
});

test('a --source-command that leaves a process holding its stderr: the run ends promptly with its real result', { timeout: 60_000 }, async () => {
  const s = setup();
  const pidFile = path.join(s.t.dir, 'lingering.pid');
  try {
    const xml = twoVmsXml();
    const archive = s.archive(xml);
    // like ssh with ControlPersist: a background master keeps the first client's stderr open
    const cmd = `sleep 600 >/dev/null </dev/null & echo $! > '${pidFile}'; cat '${archive}'`;
    const r = await run(s.args(null, ['--source-command', cmd]), 45_000).done;
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.ms < 20_000, `took ${r.ms} ms`);
    assert.deepEqual(hostNames(s.root), ['dom0', 'evil', 'good', 'tpl']);
    noStaging(s.root);
  } finally {
    const pid = existsSync(pidFile) ? Number(readFileSync(pidFile, 'utf8').trim()) : 0;
    if (pid > 0) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    s.t.cleanup();
  }
});

test('qvm-backup records backup_timestamp only under the host lock (never over a restore that holds it)', { timeout: 120_000 }, async () => {
  const t = tempDir('qvmb-runint-');
  let holder: ChildProcess | undefined;
  try {
    const root = path.join(t.dir, 'host');
    mkdirSync(path.join(root, 'appvms/work'), { recursive: true });
    mkdirSync(path.join(root, 'vm-templates/tpl'), { recursive: true });
    writeFileSync(path.join(root, 'vm-templates/tpl/root.img'), 'template root');
    writeFileSync(path.join(root, 'appvms/work/private.img'), 'work private');
    // (work's volume-config, as every R4 qubes.xml has: a format 4 backup takes its images from it)
    const xml = r4Xml([
      { name: 'tpl', klass: 'TemplateVM', qid: 2 },
      { name: 'work', klass: 'AppVM', qid: 3, template: 'tpl' },
    ]).replace(/(<property name="name">work<\/property>[\s\S]*?<\/features>)(<\/domain>)/, '$1<volume-config><volume name="private" pool="varlibqubes" vid="appvms/work/private" size="1073741824" rw="True" save_on_stop="True" snap_on_start="False"/></volume-config>$2');
    assert.match(xml, /vid="appvms\/work\/private"/);
    writeFileSync(path.join(root, 'qubes.xml'), xml);
    const home = path.join(t.dir, 'home', 'user');
    mkdirSync(home, { recursive: true });
    const pw = path.join(t.dir, 'pw');
    writeFileSync(pw, `${PW}\n`);
    // another run (as a restore would) holds the lock
    holder = spawn('flock', ['--exclusive', path.join(root, 'qubes.xml.lock'), 'sh', '-c', 'echo held; exec cat >/dev/null'], { stdio: ['pipe', 'pipe', 'ignore'] });
    let out = '';
    holder.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    await waitFor('the lock holder', () => out.includes('held'));
    const b = run([BACKUP_BIN, '-y', '-p', pw, '--scrypt-logn', '10', '--qubes-root', root, '--dom0-home', home, path.join(t.dir, 'backup.bin'), 'work'], 90_000);
    let stderr = '';
    b.child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    let exited = false;
    void b.done.then(() => (exited = true), () => (exited = true));
    await waitFor('the backup to wait for the lock (or finish)', () => /qubes\.xml\.lock is held/.test(stderr) || exited, 60_000);
    assert.equal(exited, false, `the backup did not wait for the host lock: ${stderr}`);
    assert.equal(readFileSync(path.join(root, 'qubes.xml'), 'utf8'), xml, 'qubes.xml untouched while another run holds the lock');
    holder.stdin!.end(); // release
    const r = await b.done;
    assert.equal(r.code, 0, r.stderr);
    assert.match(parseQubesXml(readFileSync(path.join(root, 'qubes.xml'))).domains.find((d) => d.name === 'work')?.properties['backup_timestamp'] ?? '', /^\d+$/);
  } finally {
    holder?.kill('SIGKILL');
    t.cleanup();
  }
});

test('an inner archive whose names tar extracts but whose absolute paths exceed PATH_MAX: that VM fails, the staging directory is still removed', { timeout: 60_000 }, async () => {
  const s = setup();
  try {
    // vm9/./<42 components> (~4070 bytes): tar creates it relative to its -C directory; fs calls on
    // absolute paths under the staging directory fail with ENAMETOOLONG
    const src = path.join(s.t.dir, 'deep');
    mkdirSync(path.join(src, 'vm9'), { recursive: true });
    const dirs = Array.from({ length: 41 }, (_, i) => `${10 + i}${'a'.repeat(95)}`).concat(['z'.repeat(45)]);
    execFileSync('sh', ['-c', `cd -P vm9 && for c in ${dirs.join(' ')}; do mkdir "$c" && cd -P "$c" || exit 1; done; echo deep > f`], { cwd: src });
    const deep = execFileSync('tar', ['-c', '-f', '-', 'vm9/.'], { cwd: src, maxBuffer: 1 << 26 });
    execFileSync('rm', ['-rf', '--', src]); // fs.rmSync cannot remove it either
    const xml = twoVmsXml();
    const archive = path.join(s.t.dir, 'deep.bin');
    const img = (subdir: string, content: string): InnerArchive => {
      const d = path.join(s.t.dir, 'img', subdir);
      mkdirSync(path.join(d, subdir), { recursive: true });
      writeFileSync(path.join(d, subdir, 'private.img'), content);
      return { base: `${subdir}/private.img`, tar: tarOf(d, [`${subdir}/private.img`]) };
    };
    writeFileSync(archive, buildV4Archive({ passphrase: PW, qubesXml: xml, members: [img('vm9', 'nine'), { base: 'vm9/.', tar: deep }, img('vm10', 'ten')], work: s.t.dir }));
    const r = await run(s.args(archive), 40_000).done;
    assert.equal(r.code, 3, r.stderr);
    assert.match(r.stderr, /evil/);
    assert.doesNotMatch(r.stderr, /cannot remove the staging directory/);
    assert.deepEqual(hostNames(s.root), ['dom0', 'good', 'tpl']);
    noStaging(s.root);
  } finally {
    execFileSync('rm', ['-rf', '--', s.t.dir]);
  }
});

test('dom0 home: the home owner swapping home-restore-… for a symlink (inotify, in a loop under load) never makes the restore move the tree outside the home', { skip: process.getuid?.() !== 0 && 'needs root (a second user)', timeout: 120_000 }, async () => {
  const busy = Array.from({ length: 2 }, () => spawn(process.execPath, ['-e', 'for(;;){}'], { stdio: 'ignore' }));
  try {
    for (let round = 0; round < 10; round++) {
      const s = setup();
      let attacker: ChildProcess | undefined;
      try {
        chmodSync(s.t.dir, 0o755); // the user must reach their home (mkdtemp made it 0700)
        chownSync(s.home, 1000, 1000);
        const sentinel = path.join(s.t.dir, 'sentinel');
        mkdirSync(sentinel);
        chownSync(sentinel, 1000, 1000);
        const d = path.join(s.t.dir, 'homesrc');
        mkdirSync(path.join(d, 'dom0-home', 'user'), { recursive: true });
        writeFileSync(path.join(d, 'dom0-home', 'user', 'note'), 'restored');
        const xml = r4Xml([], { dom0Home: { user: 'user', size: 4096 } });
        const archive = path.join(s.t.dir, 'home.bin');
        writeFileSync(archive, buildV4Archive({ passphrase: PW, qubesXml: xml, members: [{ base: 'dom0-home/user', tar: tarOf(d, ['dom0-home/user']) }], work: s.t.dir }));
        // the user owning the home: as soon as a home-restore-… entry appears, move it away and
        // put a symlink to the sentinel in its place
        const script = `const fs = require('fs'), path = require('path');
          const home = ${JSON.stringify(s.home)}, sentinel = ${JSON.stringify(sentinel)};
          fs.watch(home, (ev, name) => {
            if (!name || !name.startsWith('home-restore-') || name.endsWith('.moved')) return;
            try { fs.renameSync(path.join(home, name), path.join(home, name + '.moved')); fs.symlinkSync(sentinel, path.join(home, name)); } catch {}
          });
          process.stdout.write('ready\\n');`;
        attacker = spawn(process.execPath, ['-e', script], { uid: 1000, gid: 1000, stdio: ['ignore', 'pipe', 'ignore'] });
        const a = attacker;
        await new Promise<void>((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error('the attacker did not start')), 20_000);
          a.stdout!.once('data', () => (clearTimeout(timer), resolve()));
          a.once('exit', (code) => (clearTimeout(timer), reject(new Error(`the attacker exited (${code})`))));
        });
        const r = await run(s.args(archive, ['dom0']), 60_000).done;
        assert.equal(r.code, 0, r.stderr);
        assert.deepEqual(readdirSync(sentinel), [], `round ${round}: the restored home was moved through the user's symlink`);
        const got = readdirSync(s.home).filter((n) => n.startsWith('home-restore-') && !lstatSync(path.join(s.home, n)).isSymbolicLink());
        assert.equal(got.length, 1, `round ${round}: ${readdirSync(s.home).join(', ')}`);
        assert.equal(readFileSync(path.join(s.home, got[0]!, 'dom0-home/user/note'), 'utf8'), 'restored');
        noStaging(s.root);
      } finally {
        attacker?.kill('SIGKILL');
        s.t.cleanup();
      }
    }
  } finally {
    for (const b of busy) b.kill('SIGKILL');
  }
});

test('names of refused entries reach the terminal without their control characters (no escape sequences from the archive)', { timeout: 60_000 }, async () => {
  const s = setup();
  try {
    const evil = 'x\x1b]0;owned\x07\x1b[2J\x1b[31m';
    const home = path.join(s.t.dir, 'esc-home');
    mkdirSync(path.join(home, 'dom0-home', 'user'), { recursive: true });
    writeFileSync(path.join(home, 'dom0-home', 'user', 'ok.txt'), 'fine');
    execFileSync('mkfifo', [path.join(home, 'dom0-home', 'user', evil)]);
    const vm = path.join(s.t.dir, 'esc-vm');
    mkdirSync(path.join(vm, 'vm9'), { recursive: true });
    execFileSync('mkfifo', [path.join(vm, 'vm9', evil)]);
    const img = (subdir: string): InnerArchive => {
      const d = path.join(s.t.dir, 'esc-img', subdir);
      mkdirSync(path.join(d, subdir), { recursive: true });
      writeFileSync(path.join(d, subdir, 'private.img'), subdir);
      return { base: `${subdir}/private.img`, tar: tarOf(d, [`${subdir}/private.img`]) };
    };
    const xml = r4Xml(
      [
        { name: 'evil', klass: 'AppVM', qid: 9, template: 'tpl', netvm: null, backup: true, size: 4096 },
        { name: 'good', klass: 'AppVM', qid: 10, template: 'tpl', netvm: null, backup: true, size: 4096 },
      ],
      { dom0Home: { user: 'user', size: 4096 } },
    );
    const members = [img('vm9'), { base: 'vm9/.', tar: tarOf(vm, ['vm9/.']) }, img('vm10'), { base: 'dom0-home/user', tar: tarOf(home, ['dom0-home/user']) }];
    const archive = path.join(s.t.dir, 'esc.bin');
    writeFileSync(archive, buildV4Archive({ passphrase: PW, qubesXml: xml, members, work: s.t.dir }));
    const r = await run(s.args(archive), 40_000).done;
    assert.equal(r.code, 3, r.stderr);
    assert.match(r.stderr, /dom0 home: .*x\\x1b\]0;owned\\x07.* dropped: a FIFO/);
    assert.match(r.stderr, /evil: .*x\\x1b\]0;owned.* FIFO/);
    assert.doesNotMatch(r.stderr, /[\x00-\x08\x0b-\x0c\x0e-\x1f\x7f]/, 'no raw control characters (the progress line uses none with -q off and no TTY)');
  } finally {
    s.t.cleanup();
  }
});

test('kill -9 of the restoring process: the lock is free at once; the next restore removes the staging directory it left and restores', { timeout: 60_000 }, async () => {
  const s = setup();
  try {
    const xml = twoVmsXml();
    const archive = s.archive(xml);
    const cut = readFileSync(archive).indexOf(Buffer.from('vm9/private.img.000.enc'));
    const at = path.join(s.t.dir, 'at');
    const go = path.join(s.t.dir, 'go');
    const cmd = `head -c ${cut} '${archive}'; : > '${at}'; while [ ! -e '${go}' ]; do sleep 0.02; done; tail -c +${cut + 1} '${archive}'`;
    const r = run(s.args(null, ['--source-command', cmd]), 40_000);
    try {
      await waitFor('the staging directory', () => existsSync(at) && readdirSync(s.root).some((n) => n.startsWith('.restore-')));
      r.child.kill('SIGKILL');
      await r.done;
    } finally {
      writeFileSync(go, '');
    }
    // the lock died with the process
    assert.equal(spawnSync('flock', ['--nonblock', path.join(s.root, 'qubes.xml.lock'), 'true']).status, 0);
    const stale = readdirSync(s.root).filter((n) => n.startsWith('.restore-'));
    assert.equal(stale.length, 1, 'kill -9 leaves the staging directory');
    const again = await run(s.args(archive), 40_000).done;
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stderr, new RegExp(stale[0]!.replace('.', '\\.')));
    assert.deepEqual(hostNames(s.root), ['dom0', 'evil', 'good', 'tpl']);
    noStaging(s.root);
  } finally {
    s.t.cleanup();
  }
});

test('the host lock is taken while the header is read: another run holding it makes a wrong passphrase fail at once (the wait given up, the lock not kept), and the right one wait, then restore', { timeout: 90_000 }, async () => {
  const s = setup();
  let holder: ChildProcess | undefined;
  try {
    const archive = s.archive(r4Xml([
      { name: 'tpl', klass: 'TemplateVM', qid: 2 },
      { name: 'nine', klass: 'AppVM', qid: 9, template: 'tpl', netvm: null, backup: true, size: 4096 },
      { name: 'ten', klass: 'AppVM', qid: 10, template: 'tpl', netvm: null, backup: true, size: 4096 },
    ]));
    holder = spawn('flock', ['--exclusive', path.join(s.root, 'qubes.xml.lock'), 'sh', '-c', 'echo held; exec cat >/dev/null'], { stdio: ['pipe', 'pipe', 'ignore'] });
    let out = '';
    holder.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    await waitFor('the lock holder', () => out.includes('held'));
    // a wrong passphrase: its own error and exit status, long before the lock's 300 s
    const wrong = path.join(s.t.dir, 'wrong-pw');
    writeFileSync(wrong, 'not it\n');
    const args = s.args(archive);
    args[args.indexOf(s.pw)] = wrong;
    const bad = await run(args, 40_000).done;
    assert.equal(bad.code, 4, bad.stderr);
    assert.match(bad.stderr, /passphrase/i);
    assert.doesNotMatch(bad.stderr, /qubes\.xml\.lock is held/, 'the lock wait beside the head is not said');
    assert.ok(bad.ms < 20_000, `took ${bad.ms} ms`);
    assert.equal(spawnSync('pgrep', ['-f', `flock --exclusive --wait`]).stdout.toString().trim(), '', 'no flock wait of ours left');
    // the right one waits for the holder, then restores
    const good = run(s.args(archive), 60_000);
    let stderr = '';
    good.child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    await waitFor('the restore to wait for the lock', () => /qubes\.xml\.lock is held/.test(stderr), 30_000);
    assert.deepEqual(hostNames(s.root), ['dom0', 'tpl'], 'nothing installed while another run holds the lock');
    holder.stdin!.end();
    const r = await good.done;
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(hostNames(s.root), ['dom0', 'nine', 'ten', 'tpl']);
    noStaging(s.root);
    // nothing holds the lock now
    assert.equal(spawnSync('flock', ['--nonblock', path.join(s.root, 'qubes.xml.lock'), 'true']).status, 0);
  } finally {
    holder?.kill('SIGKILL');
    s.t.cleanup();
  }
});

test('a VM directory on the disk that qubes.xml does not list, or a linked appvms, is refused in the plan (before any data); --skip-conflicting restores the rest', { timeout: 60_000 }, async () => {
  const s = setup();
  try {
    const xml = twoVmsXml();
    const archive = s.archive(xml);
    // a leftover directory of a VM the host no longer lists, holding the user's file
    mkdirSync(path.join(s.root, 'appvms/good'), { recursive: true });
    writeFileSync(path.join(s.root, 'appvms/good/precious'), 'mine');
    // (a source that never gives the data: the refusal comes from the plan, before it is read)
    const cut = readFileSync(archive).indexOf(Buffer.from('vm9/private.img.000.enc'));
    const stuck = `head -c ${cut} '${archive}'; sleep 30`;
    const refused = await run(s.args(null, ['--source-command', stuck]), 20_000).done;
    assert.equal(refused.code, 2, refused.stderr);
    assert.match(refused.stderr, /appvms\/good is already on the host, though its qubes\.xml lists no VM good/);
    assert.ok(refused.ms < 15_000, `refused in the plan, in ${refused.ms} ms`);
    noStaging(s.root);
    const skipped = await run(s.args(archive, ['--skip-conflicting']), 40_000).done;
    assert.equal(skipped.code, 0, skipped.stderr);
    assert.deepEqual(hostNames(s.root), ['dom0', 'evil', 'tpl']);
    assert.equal(readFileSync(path.join(s.root, 'appvms/good/precious'), 'utf8'), 'mine');
    // appvms as a link (to a directory elsewhere): nothing goes through it
    const s2 = setup();
    try {
      mkdirSync(path.join(s2.t.dir, 'elsewhere'));
      symlinkSync(path.join(s2.t.dir, 'elsewhere'), path.join(s2.root, 'appvms'));
      const linked = await run(s2.args(null, ['--source-command', stuck]), 20_000).done;
      assert.equal(linked.code, 2, linked.stderr);
      assert.match(linked.stderr, /appvms is not a directory \(a symbolic link\?\): no VM is installed through it/);
      assert.deepEqual(readdirSync(path.join(s2.t.dir, 'elsewhere')), []);
      noStaging(s2.root);
    } finally {
      s2.t.cleanup();
    }
  } finally {
    s.t.cleanup();
  }
});
