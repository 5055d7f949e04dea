// qvm-backup-restore end to end with our own writer: round trips in formats 4, 3 and 2 on
// multi-chunk sparse images (byte-identical, holes kept), selective restore and missing
// dependencies, --rename-conflicting, --verify-only writing nothing, a corrupt chunk failing only
// its VM.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync, writeFileSync, mkdirSync, statSync, openSync, readSync, writeSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir, passFile, node, run, duKiB, haveCmd, BACKUP_BIN, RESTORE_BIN, sampleIn } from '../helpers/cli.js';

const MiB = 1024 * 1024;

function sample(dir: string, schema: 'r4' | 'r3' = 'r4') {
  return sampleIn(dir, { schema, bigImageBytes: 384 * MiB, bigDataBytes: 10 * MiB, smallImageBytes: 32 * MiB, smallDataBytes: 512 * 1024 });
}

function backup(dir: string, root: string, home: string, pw: string, args: string[]): string {
  const archive = join(dir, `b-${Math.random().toString(36).slice(2)}.bin`);
  const r = node(BACKUP_BIN, ['-q', '--qubes-root', root, '--dom0-home', home, '-p', pw, '-y', archive, ...args]);
  assert.equal(r.status, 0, `backup failed: ${r.stderr}`);
  return archive;
}

function restore(archive: string, host: string, hostHome: string, pw: string, args: string[] = []) {
  mkdirSync(hostHome, { recursive: true });
  return node(RESTORE_BIN, ['-q', '--qubes-root', host, '--dom0-home', hostHome, '-p', pw, '-y', archive, ...args]);
}

/** Every regular file and symlink under `dir` with size and mtime, for before/after comparisons. */
function listing(dir: string): string {
  const r = run('find', [dir, '-printf', '%p %y %s %T@ %l\\n']);
  return r.stdout.split('\n').sort().join('\n');
}

function sameFile(a: string, b: string): void {
  const r = run('cmp', [a, b]);
  assert.equal(r.status, 0, `${b} differs from ${a}: ${r.stdout}${r.stderr}`);
  assert.ok(duKiB(b) <= duKiB(a) + 64, `${b} lost its holes (${duKiB(b)} KiB vs ${duKiB(a)} KiB)`);
}

const formats: { format: string; schema: 'r4' | 'r3'; args: string[]; needs?: string }[] = [
  { format: '4', schema: 'r4', args: ['--scrypt-logn', '14', '--chunk-size', '2M'] },
  { format: '4', schema: 'r4', args: ['--scrypt-logn', '12', '--chunk-size', '2M', '-Z', 'xz'] },
  { format: '3', schema: 'r3', args: ['--chunk-size', '2M'] },
  { format: '2', schema: 'r3', args: ['--chunk-size', '2560K', '--no-compress'] },
  { format: '2', schema: 'r3', args: ['--chunk-size', '2560K', '--no-encrypt'] },
];

for (const f of formats) {
  test(`round trip format ${f.format} ${f.args.join(' ')}: byte-identical, holes kept`, { timeout: 300_000 }, () => {
    const t = tempDir();
    try {
      const { root, home } = sample(t.dir, f.schema);
      const pw = passFile(t.dir);
      const archive = backup(t.dir, root, home, pw, ['--format', f.format, ...f.args]);
      const host = join(t.dir, 'host');
      const r = restore(archive, host, join(t.dir, 'hh', 'user'), pw);
      assert.equal(r.status, 0, `restore failed: ${r.stderr}`);
      for (const rel of ['appvms/work/private.img', 'appvms/personal/private.img', 'appvms/sys-net/private.img', 'vm-templates/fedora-40/root.img', 'vm-templates/fedora-40/private.img']) sameFile(join(root, rel), join(host, rel));
      assert.equal(readFileSync(join(host, 'appvms/work/firewall.xml'), 'utf8'), readFileSync(join(root, 'appvms/work/firewall.xml'), 'utf8'));
      const xml = readFileSync(join(host, 'qubes.xml'), 'utf8');
      for (const vm of ['fedora-40', 'sys-net', 'work', 'personal', 'vault']) assert.match(xml, new RegExp(`<property name="name">${vm}</property>`));
      const homes = readdirSync(join(t.dir, 'hh', 'user')).filter((n) => n.startsWith('home-restore-'));
      assert.equal(homes.length, 1);
      assert.equal(readFileSync(join(t.dir, 'hh', 'user', homes[0]!, 'dom0-home/user/Documents/notes.txt'), 'utf8'), readFileSync(join(home, 'Documents/notes.txt'), 'utf8'));
      assert.deepEqual(readdirSync(host).filter((n) => n.startsWith('.restore-')), [], 'staging removed');
    } finally {
      t.cleanup();
    }
  });
}

test('selective restore, missing dependencies, rename-conflicting, verify-only, corrupt chunk', { timeout: 300_000 }, () => {
  const t = tempDir();
  try {
    const { root, home } = sample(t.dir);
    const pw = passFile(t.dir);
    const archive = backup(t.dir, root, home, pw, ['--scrypt-logn', '14', '--chunk-size', '1M']);
    const hh = join(t.dir, 'hh', 'user');

    // 1. only `work`: its template and netVM are in the backup but not selected, not on the host
    const h1 = join(t.dir, 'h1');
    let r = restore(archive, h1, hh, pw, ['work']);
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, /fedora-40/);
    assert.deepEqual(readdirSync(t.dir).includes('h1') ? readdirSync(h1).filter((n) => !n.startsWith('.')) : [], []);
    // --ignore-missing on an empty host: references kept (with a note), data restored
    r = restore(archive, h1, hh, pw, ['--ignore-missing', 'work']);
    assert.equal(r.status, 0, r.stderr);
    sameFile(join(root, 'appvms/work/private.img'), join(h1, 'appvms/work/private.img'));
    assert.deepEqual(readdirSync(join(h1, 'appvms')), ['work']);
    assert.equal(readdirSync(h1).includes('vm-templates'), false);

    // 2. exactly the named VMs
    const h2 = join(t.dir, 'h2');
    r = restore(archive, h2, hh, pw, ['fedora-40', 'sys-net', 'work', '--skip-dom0-home']);
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(readdirSync(join(h2, 'appvms')).sort(), ['sys-net', 'work']);
    assert.deepEqual(readdirSync(join(h2, 'vm-templates')), ['fedora-40']);

    // 3. conflicts: stop without options; --rename-conflicting renames and remaps references
    r = restore(archive, h2, hh, pw, ['fedora-40', 'sys-net', 'work', '--skip-dom0-home']);
    assert.equal(r.status, 2, r.stderr);
    r = restore(archive, h2, hh, pw, ['fedora-40', 'sys-net', 'work', '--skip-dom0-home', '--rename-conflicting']);
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(readdirSync(join(h2, 'appvms')).sort(), ['sys-net', 'sys-net1', 'work', 'work1']);
    const xml = readFileSync(join(h2, 'qubes.xml'), 'utf8');
    const work1 = xml.slice(xml.indexOf('<property name="name">work1</property>'));
    const work1Props = work1.slice(0, work1.indexOf('</properties>'));
    assert.match(work1Props, /<property name="template">fedora-401<\/property>/);
    assert.match(work1Props, /<property name="netvm">sys-net1<\/property>/);

    // 4. --verify-only changes nothing on disk
    const before = listing(t.dir);
    r = restore(archive, h2, hh, pw, ['--verify-only']);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(listing(t.dir), before);

    // 5. a corrupt chunk of one VM: that VM fails, the others restore, exit status 3 (partial)
    const bad = join(t.dir, 'bad.bin');
    writeFileSync(bad, readFileSync(archive));
    const list = run('tar', ['-i', '-tvR', '-f', bad]).stdout.split('\n');
    const line = list.find((l) => l.includes('vm4/private.img.000.enc'))!;
    const block = Number(/block (\d+):/.exec(line)![1]);
    const fd = openSync(bad, 'r+');
    const at = (block + 1) * 512 + 200; // inside the member data (after its headers)
    const b = Buffer.alloc(1);
    readSync(fd, b, 0, 1, at + 1024);
    b[0] = b[0]! ^ 0xff;
    writeSync(fd, b, 0, 1, at + 1024);
    closeSync(fd);
    const h3 = join(t.dir, 'h3');
    r = restore(bad, h3, hh, pw, ['--skip-dom0-home']);
    assert.equal(r.status, 3, r.stderr);
    assert.match(r.stderr, /personal/);
    assert.ok(statSync(join(h3, 'appvms/work/private.img')).size > 0);
    assert.equal(readdirSync(join(h3, 'appvms')).includes('personal'), false);
    r = restore(bad, h3, hh, pw, ['--verify-only']);
    assert.notEqual(r.status, 0);
  } finally {
    t.cleanup();
  }
});

test('wrong passphrase and missing location give one clear line and the documented codes', { skip: !haveCmd('tar') }, () => {
  const t = tempDir();
  try {
    const { root, home } = sample(t.dir);
    const pw = passFile(t.dir);
    const archive = backup(t.dir, root, home, pw, ['--scrypt-logn', '10', 'vault']);
    const wrong = join(t.dir, 'wrong.txt');
    writeFileSync(wrong, 'not it\n');
    let r = restore(archive, join(t.dir, 'h'), join(t.dir, 'hh', 'user'), wrong);
    assert.equal(r.status, 4);
    assert.match(r.stderr, /passphrase/);
    r = restore(join(t.dir, 'nope.bin'), join(t.dir, 'h'), join(t.dir, 'hh', 'user'), pw);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /not found/);
  } finally {
    t.cleanup();
  }
});

test('SIGINT during a restore removes the staging directory and exits 130', { timeout: 240_000 }, async () => {
  const { spawn } = await import('node:child_process');
  const t = tempDir();
  try {
    const { root, home } = sample(t.dir);
    const pw = passFile(t.dir);
    // slow key derivations keep the restore busy long enough to interrupt it
    const archive = backup(t.dir, root, home, pw, ['--scrypt-logn', '17', '--chunk-size', '1M']);
    const host = join(t.dir, 'host');
    mkdirSync(join(t.dir, 'hh', 'user'), { recursive: true });
    const child = spawn(process.execPath, [RESTORE_BIN, '-q', '-y', '-p', pw, '--qubes-root', host, '--dom0-home', join(t.dir, 'hh', 'user'), archive], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline && !(readdirSync(t.dir).includes('host') && readdirSync(host).some((n) => n.startsWith('.restore-')))) await new Promise((r) => setTimeout(r, 100));
    assert.ok(readdirSync(host).some((n) => n.startsWith('.restore-')), 'staging exists while restoring');
    child.kill('SIGINT');
    const code = await new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
    assert.equal(code, 130, stderr);
    // a root the run created and installed nothing into is removed with its lock file
    assert.deepEqual(existsSync(host) ? readdirSync(host).filter((n) => n.startsWith('.restore-')) : [], [], 'staging removed');
  } finally {
    t.cleanup();
  }
});

test('a restore into a qubes root that does not exist says a new collection is started; a plan that fails there leaves no directory behind, the parents it made included', { timeout: 120_000 }, () => {
  const t = tempDir();
  try {
    const { root, home } = sample(t.dir);
    const pw = passFile(t.dir);
    const archive = backup(t.dir, root, home, pw, ['--scrypt-logn', '10', 'work']);
    mkdirSync(join(t.dir, 'hh', 'user'), { recursive: true });
    const deep = join(t.dir, 'h4', 'a', 'b', 'root');
    const r = node(RESTORE_BIN, ['-y', '-p', pw, '--qubes-root', deep, '--dom0-home', join(t.dir, 'hh', 'user'), archive, 'nosuchvm']);
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, /h4\/a\/b\/root holds no qubes\.xml: a new collection is started there/);
    assert.equal(existsSync(join(t.dir, 'h4')), false, 'the directories the run made are gone');
    // an existing parent is left alone
    mkdirSync(join(t.dir, 'keep'));
    const r2 = node(RESTORE_BIN, ['-y', '-p', pw, '--qubes-root', join(t.dir, 'keep', 'root'), '--dom0-home', join(t.dir, 'hh', 'user'), archive, 'nosuchvm']);
    assert.equal(r2.status, 2, r2.stderr);
    assert.deepEqual(readdirSync(join(t.dir, 'keep')), []);
  } finally {
    t.cleanup();
  }
});
