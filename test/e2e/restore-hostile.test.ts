// Restore security (issue 7): archives that authenticate correctly but carry hostile content. Each
// test builds the archive in code, restores it with the CLI into a fresh host root next to a
// sentinel directory the attack aims at, and compares a snapshot of the whole temp dir before and
// after: nothing outside the restore targets changes, nothing hostile is installed.
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, symlinkSync, writeFileSync, linkSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { parseQubesXml, validateHostCollection } from '../../src/main/qubes-xml/index.js';
import { buildV4Archive, tarOf, type InnerArchive } from '../helpers/archive-builder.js';
import { RESTORE_BIN, node, tempDir } from '../helpers/cli.js';
import { paxSparse } from '../helpers/tar-craft.js';
import { changes, snapshot } from '../helpers/tree-snapshot.js';
import { r4Xml, type VmSpec } from '../main/restore/sample-xml.js';

const PW = 'hostile but authentic';
const isRoot = process.getuid?.() === 0;
const HOST_VMS: VmSpec[] = [
  { name: 'tpl', klass: 'TemplateVM', qid: 2 },
  { name: 'work', klass: 'AppVM', qid: 3, template: 'tpl' },
];

interface World {
  dir: string;
  root: string;
  home: string;
  sentinel: string;
  pwFile: string;
  src: (name: string) => string;
  cleanup(): void;
}

/** A host with a template and an AppVM, a dom0 home owned by uid 1000 (as root), and a sentinel. */
function world(): World {
  const t = tempDir('qvmb-hostile-');
  const root = path.join(t.dir, 'host');
  mkdirSync(path.join(root, 'vm-templates/tpl'), { recursive: true });
  mkdirSync(path.join(root, 'appvms/work'), { recursive: true });
  writeFileSync(path.join(root, 'vm-templates/tpl/root.img'), 'template root');
  writeFileSync(path.join(root, 'appvms/work/private.img'), 'work private');
  writeFileSync(path.join(root, 'qubes.xml'), r4Xml(HOST_VMS));
  const home = path.join(t.dir, 'home', 'user');
  mkdirSync(home, { recursive: true });
  if (isRoot) chownSync(home, 1000, 1000);
  const sentinel = path.join(t.dir, 'sentinel');
  mkdirSync(sentinel);
  writeFileSync(path.join(sentinel, 'target.txt'), 'must never change');
  const pwFile = path.join(t.dir, 'pw');
  writeFileSync(pwFile, `${PW}\n`);
  let n = 0;
  const src = (name: string): string => {
    const d = path.join(t.dir, 'src', `${n++}-${name}`);
    mkdirSync(d, { recursive: true });
    return d;
  };
  return { dir: t.dir, root, home, sentinel, pwFile, src, cleanup: t.cleanup };
}

/** The backup's qubes.xml: `evil` (vm9/) and `good` (vm10/) AppVMs on the host's template, and a dom0 home. */
function backupXml(extra: VmSpec[] = []): string {
  return r4Xml(
    [
      { name: 'evil', klass: 'AppVM', qid: 9, template: 'tpl', netvm: null, backup: true, size: 4096 },
      { name: 'good', klass: 'AppVM', qid: 10, template: 'tpl', netvm: null, backup: true, size: 4096 },
      ...extra,
    ],
    { dom0Home: { user: 'user', size: 4096 } },
  );
}

/** `vmN/private.img` holding `content`, as a legitimate inner archive. */
function image(w: World, subdir: string, content: string): InnerArchive {
  const d = w.src('img');
  mkdirSync(path.join(d, subdir));
  writeFileSync(path.join(d, subdir, 'private.img'), content);
  return { base: `${subdir}/private.img`, tar: tarOf(d, [`${subdir}/private.img`]) };
}

function restore(w: World, members: InnerArchive[], args: string[] = [], xml = backupXml(), gzip = false): { status: number | null; stderr: string } {
  const archive = path.join(w.dir, `archive-${Math.random().toString(36).slice(2)}.bin`);
  writeFileSync(archive, buildV4Archive({ passphrase: PW, qubesXml: xml, members, work: w.dir, gzip }));
  const r = node(RESTORE_BIN, ['-y', '-q', '-p', w.pwFile, '--qubes-root', w.root, '--dom0-home', w.home, archive, ...args]);
  return { status: r.status, stderr: r.stderr };
}

/** `--verify-only` of the same archive, its scratch directory in `<dir>/tmp` (TMPDIR): the status,
 *  stderr and what that directory holds afterwards (nothing: the scratch copy is removed). */
function verify(w: World, members: InnerArchive[], args: string[] = [], xml = backupXml()): { status: number | null; stderr: string; left: string[] } {
  const archive = path.join(w.dir, `archive-${Math.random().toString(36).slice(2)}.bin`);
  writeFileSync(archive, buildV4Archive({ passphrase: PW, qubesXml: xml, members, work: w.dir }));
  const tmp = path.join(w.dir, 'tmp');
  mkdirSync(tmp, { recursive: true });
  const r = node(RESTORE_BIN, ['--verify-only', '-y', '-q', '-p', w.pwFile, '--qubes-root', w.root, '--dom0-home', w.home, archive, ...args], { env: { ...process.env, TMPDIR: tmp } });
  return { status: r.status, stderr: r.stderr, left: readdirSync(tmp) };
}

/** What a restore may change: qubes.xml, its lock, the installed VMs' dirs, the new home-restore dir, archives. */
const allowedFor = (installed: string[]) => (rel: string): boolean =>
  rel === 'host/qubes.xml' ||
  rel === 'host/qubes.xml.lock' ||
  installed.some((vm) => rel === `host/appvms/${vm}` || rel.startsWith(`host/appvms/${vm}/`)) ||
  /^home\/user\/home-restore-[^/]+(\/|$)/.test(rel) ||
  /^archive-[^/]+\.bin$/.test(rel) ||
  rel.startsWith('src/') ||
  rel === 'src' ||
  rel === 'tmp';

/** The host's VM names; the host qubes.xml must still load as Qubes R4 would load it. */
function hostNames(w: World): string[] {
  const doc = parseQubesXml(readFileSync(path.join(w.root, 'qubes.xml')));
  assert.deepEqual(validateHostCollection(doc), [], 'the host qubes.xml loads as Qubes would');
  return doc.domains.map((d) => d.name).sort();
}

function noStaging(w: World): void {
  assert.deepEqual(readdirSync(w.root).filter((n) => n.startsWith('.restore-')), [], 'staging removed');
}

test('a symlink planted by one inner archive is never written through by another (VM directory)', () => {
  const w = world();
  try {
    const a = w.src('dir');
    mkdirSync(path.join(a, 'vm9'));
    symlinkSync(w.sentinel, path.join(a, 'vm9', 'x'));
    const b = w.src('through');
    mkdirSync(path.join(b, 'vm9', 'x'), { recursive: true });
    writeFileSync(path.join(b, 'vm9', 'x', 'pwned'), 'written through the link');
    const before = snapshot(w.dir);
    const r = restore(w, [image(w, 'vm9', 'evil data'), { base: 'vm9/.', tar: tarOf(a, ['vm9/.']) }, { base: 'vm9/x', tar: tarOf(b, ['vm9/x']) }, image(w, 'vm10', 'good data')]);
    assert.equal(r.status, 3, r.stderr);
    assert.match(r.stderr, /evil/);
    assert.equal(existsSync(path.join(w.sentinel, 'pwned')), false);
    assert.deepEqual(changes(before, snapshot(w.dir), allowedFor(['good'])), []);
    assert.deepEqual(hostNames(w), ['dom0', 'good', 'tpl', 'work']);
    assert.equal(readFileSync(path.join(w.root, 'appvms/good/private.img'), 'utf8'), 'good data');
    noStaging(w);
  } finally {
    w.cleanup();
  }
});

test('a symlink planted by one inner archive is never written through by another (dom0 home)', () => {
  const w = world();
  try {
    const a = w.src('homedir');
    mkdirSync(path.join(a, 'dom0-home'));
    symlinkSync(w.sentinel, path.join(a, 'dom0-home', 'user'));
    const b = w.src('home');
    mkdirSync(path.join(b, 'dom0-home', 'user'), { recursive: true });
    writeFileSync(path.join(b, 'dom0-home', 'user', 'pwned'), 'through the link');
    const before = snapshot(w.dir);
    const r = restore(w, [{ base: 'dom0-home/.', tar: tarOf(a, ['dom0-home/.']) }, { base: 'dom0-home/user', tar: tarOf(b, ['dom0-home/user']) }], ['dom0']);
    assert.notEqual(r.status, 0, r.stderr);
    assert.equal(existsSync(path.join(w.sentinel, 'pwned')), false);
    assert.deepEqual(changes(before, snapshot(w.dir), allowedFor([])), []);
    noStaging(w);
  } finally {
    w.cleanup();
  }
});

test('ownership is never handed out through a planted symlink + hard link', { skip: !isRoot && 'needs root (chown)' }, () => {
  const w = world();
  try {
    // inner archive A plants dom0-home/s -> sentinel; inner archive B holds a hard link
    // dom0-home/user/h -> dom0-home/s/target.txt (resolving through A's link in a shared staging dir)
    const a = w.src('plant');
    mkdirSync(path.join(a, 'dom0-home'));
    symlinkSync(w.sentinel, path.join(a, 'dom0-home', 's'));
    const b = w.src('link');
    mkdirSync(path.join(b, 'dom0-home', 's'), { recursive: true });
    mkdirSync(path.join(b, 'dom0-home', 'user'));
    writeFileSync(path.join(b, 'dom0-home', 's', 'target.txt'), 'x');
    writeFileSync(path.join(b, 'dom0-home', 'user', 'ok.txt'), 'fine');
    linkSync(path.join(b, 'dom0-home', 's', 'target.txt'), path.join(b, 'dom0-home', 'user', 'h'));
    const tarFile = path.join(w.dir, 'b.tar');
    writeFileSync(tarFile, tarOf(b, ['dom0-home/s/target.txt', 'dom0-home/user']));
    execFileSync('tar', ['--delete', '-f', tarFile, 'dom0-home/s/target.txt']);
    const before = snapshot(w.dir);
    const r = restore(w, [{ base: 'dom0-home/.', tar: tarOf(a, ['dom0-home/.']) }, { base: 'dom0-home/user', tar: readFileSync(tarFile) }], ['dom0']);
    assert.notEqual(r.status, 0, r.stderr);
    const st = lstatSync(path.join(w.sentinel, 'target.txt'));
    assert.equal(st.uid, 0);
    assert.equal(st.nlink, 1);
    assert.deepEqual(changes(before, snapshot(w.dir), (rel) => rel === 'b.tar' || allowedFor([])(rel)), []);
    noStaging(w);
  } finally {
    w.cleanup();
  }
});

test('dom0 home: device nodes, FIFOs and foreign entries are dropped with a warning; setuid/setgid/sticky stripped; the rest restored and owned by the user', { skip: !isRoot && 'needs root (mknod, chown)' }, () => {
  const w = world();
  try {
    const a = w.src('home');
    const u = path.join(a, 'dom0-home', 'user');
    mkdirSync(path.join(u, 'docs'), { recursive: true });
    writeFileSync(path.join(u, 'docs', 'note.txt'), 'hello');
    execFileSync('mknod', [path.join(u, 'mem'), 'c', '1', '1']); // a copy of /dev/mem
    execFileSync('mkfifo', [path.join(u, 'pipe')]);
    writeFileSync(path.join(u, 'suid'), '#!/bin/sh\n');
    chmodSync(path.join(u, 'suid'), 0o4755);
    mkdirSync(path.join(u, 'tmpdir'));
    chmodSync(path.join(u, 'tmpdir'), 0o1777);
    symlinkSync('docs/note.txt', path.join(u, 'link'));
    const before = snapshot(w.dir);
    const r = restore(w, [{ base: 'dom0-home/user', tar: tarOf(a, ['dom0-home/user']) }], ['dom0']);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /mem dropped: a character device node/);
    assert.match(r.stderr, /pipe dropped: a FIFO/);
    const [restoreDir] = readdirSync(w.home).filter((n) => n.startsWith('home-restore-'));
    const got = path.join(w.home, restoreDir!, 'dom0-home', 'user');
    assert.deepEqual(readdirSync(got).sort(), ['docs', 'link', 'suid', 'tmpdir']);
    assert.equal(readFileSync(path.join(got, 'docs/note.txt'), 'utf8'), 'hello');
    assert.equal(lstatSync(path.join(got, 'suid')).mode & 0o7777, 0o755);
    assert.equal(lstatSync(path.join(got, 'tmpdir')).mode & 0o7000, 0);
    assert.ok(lstatSync(path.join(got, 'link')).isSymbolicLink());
    for (const p of [got, path.join(got, 'docs/note.txt'), path.join(got, 'link'), path.join(w.home, restoreDir!)]) assert.equal(lstatSync(p).uid, 1000, p);
    assert.deepEqual(changes(before, snapshot(w.dir), allowedFor([])), []);
    noStaging(w);
  } finally {
    w.cleanup();
  }
});

test('VM directories: a device node, a FIFO, a symlinked or directory image each fail that VM only (exit 3), naming the entry', { skip: !isRoot && 'needs root (mknod)' }, () => {
  const cases: [string, (w: World) => InnerArchive[], RegExp][] = [
    ['device node in a directory archive', (w) => {
      const a = w.src('dev');
      mkdirSync(path.join(a, 'vm9'));
      execFileSync('mknod', [path.join(a, 'vm9', 'disk'), 'b', '7', '0']);
      return [image(w, 'vm9', 'evil'), { base: 'vm9/.', tar: tarOf(a, ['vm9/.']) }];
    }, /vm9\/disk.*block device node/],
    ['FIFO as a file member', (w) => {
      const a = w.src('fifo');
      mkdirSync(path.join(a, 'vm9'));
      execFileSync('mkfifo', [path.join(a, 'vm9', 'firewall.xml')]);
      return [image(w, 'vm9', 'evil'), { base: 'vm9/firewall.xml', tar: tarOf(a, ['vm9/firewall.xml']) }];
    }, /firewall\.xml.*FIFO/],
    ['private.img as a symlink to the sentinel', (w) => {
      const a = w.src('link');
      mkdirSync(path.join(a, 'vm9'));
      symlinkSync(path.join(w.sentinel, 'target.txt'), path.join(a, 'vm9', 'private.img'));
      return [{ base: 'vm9/private.img', tar: tarOf(a, ['vm9/private.img']) }];
    }, /private\.img.*(arrived as a symbolic link|symbolic link where a file)/],
    ['private.img as a directory', (w) => {
      const a = w.src('dir');
      mkdirSync(path.join(a, 'vm9', 'private.img'), { recursive: true });
      writeFileSync(path.join(a, 'vm9', 'private.img', 'x'), 'x');
      return [{ base: 'vm9/private.img', tar: tarOf(a, ['vm9/private.img']) }];
    }, /private\.img.*arrived as a directory/],
  ];
  for (const [what, members, message] of cases) {
    const w = world();
    try {
      const before = snapshot(w.dir);
      const r = restore(w, [...members(w), image(w, 'vm10', 'good data')], ['-x', 'dom0']);
      assert.equal(r.status, 3, `${what}: ${r.stderr}`);
      assert.match(r.stderr, message, what);
      assert.deepEqual(hostNames(w), ['dom0', 'good', 'tpl', 'work'], what);
      assert.equal(existsSync(path.join(w.root, 'appvms/evil')), false, what);
      assert.deepEqual(changes(before, snapshot(w.dir), allowedFor(['good'])), [], what);
      noStaging(w);
    } finally {
      w.cleanup();
    }
  }
});

test('--verify-only refuses what the restore refuses, with the same message (the failure\'s status, never "succeeded"), and leaves nothing behind', () => {
  // [what, its inner archives, the message, the verification's status: 5 refused, 7 GNU tar failed]
  const cases: [string, (w: World) => InnerArchive[], RegExp, number][] = [
    ['a hard link to a file outside its inner archive', (w) => {
      const a = w.src('hardlink');
      mkdirSync(path.join(a, 'vm9', 'apps'), { recursive: true });
      writeFileSync(path.join(a, 'vm9', 'private.img'), 'evil');
      linkSync(path.join(a, 'vm9', 'private.img'), path.join(a, 'vm9', 'apps', 'h'));
      // the directory archive alone: its link's target is in another inner archive
      const tar = execFileSync('tar', ['-c', '-C', a, '-f', '-', 'vm9/private.img', 'vm9/apps']);
      return [image(w, 'vm9', 'evil'), { base: 'vm9/apps', tar: tar }];
    }, /evil: .*(hard link|Cannot hard link)/, 7],
    ['a symbolic link as firewall.xml', (w) => {
      const a = w.src('fwlink');
      mkdirSync(path.join(a, 'vm9'));
      symlinkSync('/etc/passwd', path.join(a, 'vm9', 'firewall.xml'));
      return [image(w, 'vm9', 'evil'), { base: 'vm9/firewall.xml', tar: tarOf(a, ['vm9/firewall.xml']) }];
    }, /evil: .*firewall\.xml.*symbolic link where a file is expected/, 5],
    ['a firewall.xml of 2 MiB', (w) => [image(w, 'vm9', 'evil'), bulky(w, 'vm9', 'firewall.xml', 2 * MiB)], /evil: firewall\.xml is 2097152 bytes \(more than 1048576\)/, 5],
    ['an empty private.img', (w) => [image(w, 'vm9', '')], /evil: private\.img has an implausible size \(0 bytes\)/, 5],
    ['no private.img at all', (w) => {
      const a = w.src('noimg');
      mkdirSync(path.join(a, 'vm9'));
      writeFileSync(path.join(a, 'vm9', 'notes.txt'), 'notes');
      return [{ base: 'vm9/notes.txt', tar: tarOf(a, ['vm9/notes.txt']) }];
    }, /evil: private\.img is missing from the backup/, 5],
  ];
  for (const [what, members, message, status] of cases) {
    const w = world();
    try {
      const before = snapshot(w.dir);
      const all = (x: World): InnerArchive[] => [...members(x), image(x, 'vm10', 'good data')];
      const v = verify(w, all(w), ['-x', 'dom0']);
      assert.equal(v.status, status, `${what}: ${v.stderr}`);
      assert.match(v.stderr, message, what);
      assert.doesNotMatch(v.stderr, /Verification succeeded/, what);
      assert.deepEqual(v.left, [], `${what}: the scratch copy is removed`);
      assert.deepEqual(changes(before, snapshot(w.dir), allowedFor([])), [], `${what}: a verification changes nothing`);
      // the restore refuses the same VM for the same reason (and restores the other)
      const r = restore(w, all(w), ['-x', 'dom0']);
      assert.equal(r.status, 3, `${what}: ${r.stderr}`);
      assert.match(r.stderr, message, what);
      assert.deepEqual(hostNames(w), ['dom0', 'good', 'tpl', 'work'], what);
      noStaging(w);
    } finally {
      w.cleanup();
    }
  }
  // a VM whose template (restored in the same run) fails is not installed by a restore: not
  // verified either
  {
    const w = world();
    try {
      const xml = r4Xml([
        { name: 'btpl', klass: 'TemplateVM', qid: 12, backup: true, size: 4096 },
        { name: 'good', klass: 'AppVM', qid: 10, template: 'btpl', netvm: null, backup: true, size: 4096 },
      ]);
      const members = [image(w, 'vm12', ''), image(w, 'vm10', 'good data')];
      const v = verify(w, members, ['-x', 'dom0'], xml);
      assert.equal(v.status, 5, v.stderr);
      assert.match(v.stderr, /^ {2}btpl: /m);
      assert.match(v.stderr, /^ {2}good: not installable: btpl, which it uses, failed verification$/m);
      const r = restore(w, members, ['-x', 'dom0'], xml);
      assert.notEqual(r.status, 0, r.stderr);
      assert.match(r.stderr, /good: not installed: btpl, which it uses, failed to restore/);
    } finally {
      w.cleanup();
    }
  }
  // what the archive's own qubes.xml makes impossible blocks a verification's plan as a restore's
  const w = world();
  try {
    const withTemplate = r4Xml([
      { name: 'good', klass: 'AppVM', qid: 10, template: 'fake-tpl', netvm: null, backup: true, size: 4096 },
      { name: 'fake-tpl', klass: 'AppVM', qid: 11, template: 'tpl', netvm: null, backup: true, size: 4096 },
    ]);
    const members = [image(w, 'vm10', 'b'), image(w, 'vm11', 'c')];
    const v = verify(w, members, ['-x', 'dom0'], withTemplate);
    assert.equal(v.status, 2, v.stderr);
    assert.match(v.stderr, /good: template fake-tpl, .* is an AppVM, not a TemplateVM/);
    const r = restore(w, members, ['-x', 'dom0'], withTemplate);
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, /good: template fake-tpl, .* is an AppVM, not a TemplateVM/);
  } finally {
    w.cleanup();
  }
});

test('two restores into the same root at once: both VMs registered and installed, no update lost (loop under load)', { timeout: 180_000 }, async () => {
  const busy = Array.from({ length: 2 }, () => spawn(process.execPath, ['-e', 'for(;;){}'], { stdio: 'ignore' }));
  try {
    for (let round = 0; round < 3; round++) {
      const w = world();
      try {
        const archive = path.join(w.dir, 'archive-both.bin');
        writeFileSync(archive, buildV4Archive({ passphrase: PW, qubesXml: backupXml(), members: [image(w, 'vm9', 'nine'), image(w, 'vm10', 'ten')], work: w.dir }));
        const one = (vm: string) =>
          new Promise<{ code: number | null; stderr: string }>((resolve) => {
            const c = spawn(process.execPath, [RESTORE_BIN, '-y', '-q', '-p', w.pwFile, '--qubes-root', w.root, '--dom0-home', w.home, archive, vm], { stdio: ['ignore', 'ignore', 'pipe'] });
            let stderr = '';
            c.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
            c.on('exit', (code) => resolve({ code, stderr }));
          });
        const [a, b] = await Promise.all([one('evil'), one('good')]);
        assert.equal(a.code, 0, a.stderr);
        assert.equal(b.code, 0, b.stderr);
        assert.deepEqual(hostNames(w), ['dom0', 'evil', 'good', 'tpl', 'work'], `round ${round}`);
        assert.equal(readFileSync(path.join(w.root, 'appvms/evil/private.img'), 'utf8'), 'nine');
        assert.equal(readFileSync(path.join(w.root, 'appvms/good/private.img'), 'utf8'), 'ten');
        noStaging(w);
      } finally {
        w.cleanup();
      }
    }
  } finally {
    for (const b of busy) b.kill('SIGKILL');
  }
});

test('hostile host metadata: volumes, a second <properties>, qid 0 — the host qubes.xml gets only what we generate', () => {
  const w = world();
  try {
    const inject =
      '<volume-config><volume name="private" pool="evil" vid="../../../etc/shadow" source="appvms/work/private" rw="True" save_on_stop="True" size="1"/>' +
      '<volume name="../x" pool="varlibqubes" vid="appvms/work/private" save_on_stop="True"/></volume-config>' +
      '<properties><property name="qid">0</property><property name="name">work</property><property name="template">evil</property></properties>';
    const xml = backupXml().replace(/(<property name="name">evil<\/property>[\s\S]*?<\/features>)/, `$1${inject}`);
    assert.ok(xml.includes('../../../etc/shadow'));
    const before = snapshot(w.dir);
    const r = restore(w, [image(w, 'vm9', 'evil data'), image(w, 'vm10', 'good data')], ['-x', 'dom0'], xml);
    assert.equal(r.status, 0, r.stderr);
    const names = hostNames(w); // validates the host collection
    assert.deepEqual(names, ['dom0', 'evil', 'good', 'tpl', 'work']);
    const text = readFileSync(path.join(w.root, 'qubes.xml'), 'utf8');
    for (const bad of ['../../../etc/shadow', 'source="appvms/work/private"', 'name="../x"', 'pool="evil"']) assert.equal(text.includes(bad), false, bad);
    const evil = parseQubesXml(text).domains.find((d) => d.name === 'evil')!;
    assert.notEqual(evil.qid, 0);
    assert.deepEqual(evil.volumes.map((v) => v.vid).filter((v) => v?.startsWith('appvms/')).sort(), ['appvms/evil/private', 'appvms/evil/root', 'appvms/evil/volatile']);
    for (const v of evil.volumes) if (v.attrs['source'] !== undefined) assert.equal(v.attrs['source'], `vm-templates/tpl/${v.name}`);
    assert.equal(parseQubesXml(text).domains.find((d) => d.name === 'work')!.qid, 3);
    assert.deepEqual(changes(before, snapshot(w.dir), allowedFor(['evil', 'good'])), []);
  } finally {
    w.cleanup();
  }
});

test('a template/netVM reference loop is a plan error (exit 2) naming the VMs, before any data is read', () => {
  const w = world();
  try {
    const xml = r4Xml([
      { name: 'ring-a', klass: 'AppVM', qid: 9, template: 'tpl', netvm: 'ring-b', providesNetwork: true, backup: true, size: 4096 },
      { name: 'ring-b', klass: 'AppVM', qid: 10, template: 'tpl', netvm: 'ring-a', providesNetwork: true, backup: true, size: 4096 },
    ]);
    const before = snapshot(w.dir);
    const r = restore(w, [image(w, 'vm9', 'a'), image(w, 'vm10', 'b')], ['-x', 'dom0'], xml);
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, /ring-a/);
    assert.match(r.stderr, /cycle/);
    assert.deepEqual(changes(before, snapshot(w.dir), (rel) => rel === 'host/qubes.xml.lock' || allowedFor([])(rel)), []);
  } finally {
    w.cleanup();
  }
});

/** `<subdir>/<name>` (a file, or a directory holding one file `big`) of `bytes` bytes of 'x' (data,
 *  not a hole: 'x' compresses ~1000:1 under gzip), as its inner archive. */
function bulky(w: World, subdir: string, name: string, bytes: number, dir = false): InnerArchive {
  const d = w.src('bulky');
  mkdirSync(path.join(d, subdir, dir ? name : ''), { recursive: true });
  writeFileSync(path.join(d, subdir, name, dir ? 'big' : ''), Buffer.alloc(bytes, 'x'));
  return { base: `${subdir}/${name}`, tar: tarOf(d, [`${subdir}/${name}`]) };
}

const MiB = 1024 * 1024;

test('a VM whose data unpacks past the size its qubes.xml states fails (nothing of it installed); --ignore-size-limit restores it', () => {
  const w = world();
  try {
    // evil states 4096 bytes (limit: 4096 + 1024 + 64 MiB) and brings 72 MiB of image data
    const members = (): InnerArchive[] => [bulky(w, 'vm9', 'private.img', 72 * MiB), image(w, 'vm10', 'good data')];
    const before = snapshot(w.dir);
    const r = restore(w, members(), ['-x', 'dom0']);
    assert.equal(r.status, 3, r.stderr);
    assert.match(r.stderr, /evil[\s\S]*more data for VM evil than its qubes\.xml states \(4096 bytes[\s\S]*--ignore-size-limit/);
    assert.deepEqual(changes(before, snapshot(w.dir), allowedFor(['good'])), []);
    assert.deepEqual(hostNames(w), ['dom0', 'good', 'tpl', 'work']);
    noStaging(w);
    // a verification says the same (and writes nothing)
    const v = restore(w, members(), ['-x', 'dom0', '--verify-only']);
    assert.equal(v.status, 5, v.stderr); // a verification is never "partial": the failure's own status
    assert.match(v.stderr, /more data for VM evil/);
    // lifted: restored, byte for byte
    const ok = restore(w, members(), ['-x', 'dom0', '--ignore-size-limit', '--rename-conflicting']);
    assert.equal(ok.status, 0, ok.stderr);
    assert.deepEqual(readFileSync(path.join(w.root, 'appvms/evil/private.img')), Buffer.alloc(72 * MiB, 'x'));
    // a VM whose qubes.xml states no size has no limit
    const xml = backupXml().replace(/(<property name="name">evil<\/property>[\s\S]*?)<feature name="backup-size">4096<\/feature>/, '$1');
    assert.notEqual(xml, backupXml());
    const free = restore(w, members(), ['-x', 'dom0', '--rename-conflicting'], xml);
    assert.equal(free.status, 0, free.stderr);
    noStaging(w);
  } finally {
    w.cleanup();
  }
});

test('a sparse map of tiny runs far apart counts the disk blocks it takes, not its archive bytes', () => {
  const w = world();
  try {
    // 20 000 one-byte runs 8 KiB apart: ~10 MB of inner archive (each run padded to 512 bytes),
    // 82 MB of 4 KiB blocks on disk; evil states 4096 bytes (limit 64 MiB and 5 KiB)
    const runs = Array.from({ length: 20_000 }, (_, i) => ({ offset: i * 8192, length: 1 }));
    const sparse = (): InnerArchive => ({ base: 'vm9/private.img', tar: paxSparse(runs, 20_000 * 8192, () => Buffer.from('x'), undefined, 'vm9/private.img') });
    const before = snapshot(w.dir);
    const r = restore(w, [sparse(), image(w, 'vm10', 'good data')], ['-x', 'dom0']);
    assert.equal(r.status, 3, r.stderr);
    assert.match(r.stderr, /vm9\/private\.img: the archive holds more data for VM evil than its qubes\.xml states/);
    assert.deepEqual(changes(before, snapshot(w.dir), allowedFor(['good'])), []);
    noStaging(w);
    const ok = restore(w, [sparse(), image(w, 'vm10', 'good data')], ['-x', 'dom0', '--ignore-size-limit', '--rename-conflicting']);
    assert.equal(ok.status, 0, ok.stderr);
    const st = lstatSync(path.join(w.root, 'appvms/evil/private.img'));
    assert.equal(st.size, 20_000 * 8192);
    assert.ok(st.blocks * 512 >= 20_000 * 4096, `${st.blocks} blocks`);
  } finally {
    w.cleanup();
  }
});

test('a directory of many empty directories counts the blocks tar makes of them, not their archive bytes', () => {
  const w = world();
  try {
    // 18 000 empty directories: ~9 MB of tar headers, ~74 MB of 4 KiB directory blocks on disk
    const d = w.src('dirs');
    for (let i = 0; i < 18_000; i++) mkdirSync(path.join(d, 'vm9/apps', `d${i}`), { recursive: true });
    const member = (): InnerArchive => ({ base: 'vm9/apps', tar: tarOf(d, ['vm9/apps']) });
    const before = snapshot(w.dir);
    for (const gzip of [false, true]) {
      const r = restore(w, [member(), image(w, 'vm9', 'evil data'), image(w, 'vm10', 'good data')], ['-x', 'dom0', '--rename-conflicting'], backupXml(), gzip);
      assert.equal(r.status, 3, r.stderr);
      assert.match(r.stderr, /vm9\/apps( \([^)]*\))?: the archive holds more data for VM evil than its qubes\.xml states/);
      assert.equal(existsSync(path.join(w.root, 'appvms/evil')), false);
      noStaging(w);
    }
    assert.deepEqual(changes(before, snapshot(w.dir), allowedFor(['good', 'good1'])), []);
    const ok = restore(w, [member(), image(w, 'vm9', 'evil data'), image(w, 'vm10', 'good data')], ['-x', 'dom0', '--ignore-size-limit', '--rename-conflicting']);
    assert.equal(ok.status, 0, ok.stderr);
    assert.equal(readdirSync(path.join(w.root, 'appvms/evil/apps')).length, 18_000);
  } finally {
    w.cleanup();
  }
});

test('a decompression bomb stops at the VM size limit on every path: image, directory (tar), small file, dom0 home', () => {
  const w = world();
  try {
    const cases: { what: string; member: () => InnerArchive; args: string[]; gzip: boolean; who: RegExp }[] = [
      { what: 'image (in-process gunzip)', member: () => bulky(w, 'vm9', 'private.img', 128 * MiB), args: ['-x', 'dom0'], gzip: true, who: /VM evil/ },
      { what: 'directory (tar, gunzip)', member: () => bulky(w, 'vm9', 'apps', 96 * MiB, true), args: ['-x', 'dom0'], gzip: true, who: /VM evil/ },
      { what: 'directory (tar, uncompressed)', member: () => bulky(w, 'vm9', 'apps', 72 * MiB, true), args: ['-x', 'dom0'], gzip: false, who: /VM evil/ },
      { what: 'small file (held, gunzip)', member: () => bulky(w, 'vm9', 'firewall.xml', 96 * MiB), args: ['-x', 'dom0'], gzip: true, who: /VM evil/ },
      { what: 'dom0 home (tar, gunzip)', member: () => bulky(w, 'dom0-home', 'user', 96 * MiB, true), args: [], gzip: true, who: /the dom0 home/ },
    ];
    for (const c of cases) {
      const before = snapshot(w.dir);
      const r = restore(w, [c.member(), image(w, 'vm10', 'good data')], [...c.args, '--rename-conflicting'], backupXml(), c.gzip);
      assert.equal(r.status, 3, `${c.what}: ${r.stderr}`);
      assert.match(r.stderr, new RegExp(`more data for ${c.who.source} than its qubes\\.xml states`), c.what);
      assert.equal(existsSync(path.join(w.root, 'appvms/evil')), false, c.what);
      assert.deepEqual(changes(before, snapshot(w.dir), (rel) => allowedFor(['good', 'good1', 'good2', 'good3', 'good4'])(rel) && !rel.startsWith('home/')), [], c.what);
      noStaging(w);
    }
  } finally {
    w.cleanup();
  }
});
