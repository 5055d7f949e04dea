// Tests of the install step in a temp qubes root: staging dir, moving VM dirs into the file-pool
// layout and adding them to qubes.xml, refusals (existing dir, unsafe names/trees), dom0 home, and
// the atomic qubes.xml write.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { execFileSync } from 'node:child_process';
import { emptyR4Host, findDomain, parseQubesXml, type QubesXml } from '../../../src/main/qubes-xml/index.js';
import { homeRestoreDirName, installDom0Home } from '../../../src/main/restore/install/dom0-home.js';
import { loadHostQubesXml, saveHostQubesXml } from '../../../src/main/restore/install/host-qubes-xml.js';
import { installVm } from '../../../src/main/restore/install/install-vm.js';
import { createScratch, createStaging } from '../../../src/main/restore/install/staging.js';
import { flushEntries, flushTree, prepareTree, SYNCFS_FROM_ENTRIES } from '../../../src/main/restore/install/safe-tree.js';
import { planRestore, type RestorePlan, type RestoreSelection, type VmPlan } from '../../../src/main/restore/plan/restore-plan.js';
import { r3BackupXml, r4Xml, type VmSpec } from './sample-xml.js';

const SEL: RestoreSelection = {
  vms: [], exclude: [], skipDom0Home: false, ignoreUsernameMismatch: false, renameConflicting: false,
  skipConflicting: false, skipBroken: false, ignoreMissing: false, verifyOnly: false,
};
const BACKUP_VMS: VmSpec[] = [
  { name: 'work', klass: 'AppVM', qid: 3, template: 'tpl', netvm: 'net', backup: true, size: 3000 },
  { name: 'mail', klass: 'AppVM', qid: 4, template: 'tpl', backup: true, size: 4000 },
  { name: 'net', klass: 'AppVM', qid: 5, template: 'tpl', netvm: null, providesNetwork: true, backup: true, size: 5000 },
  { name: 'tpl', klass: 'TemplateVM', qid: 6, backup: true, size: 6000 },
];

let tmp: string;
let root: string;
beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'qvmb-'));
  root = path.join(tmp, 'qubes');
});
afterEach(() => fs.rmSync(tmp, { recursive: true, force: true }));

const vmOf = (plan: RestorePlan, name: string): VmPlan => plan.vms.find((v) => v.backupName === name)!;
const renamesOf = (plan: RestorePlan): Map<string, string> =>
  new Map(plan.vms.filter((v) => v.action === 'restore').map((v) => [v.backupName, v.newName]));

/** Fake extracted files of a VM under the staging dir; returns the staged dir. */
function stage(stagingDir: string, vm: VmPlan, files: Record<string, string>): string {
  const dir = path.join(stagingDir, vm.subdir.slice(0, -1));
  for (const [name, data] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    fs.writeFileSync(path.join(dir, name), data);
  }
  return dir;
}

async function rejectsCode(p: Promise<unknown>, code: string, re?: RegExp): Promise<void> {
  await assert.rejects(p, (e: { code?: string; message?: string }) => {
    assert.equal(e.code, code, e.message);
    if (re) assert.match(e.message ?? '', re);
    return true;
  });
}

describe('createStaging', () => {
  it('makes a private dir under the qubes root and removes it idempotently', async () => {
    const s = await createStaging(root);
    assert.equal(path.dirname(s.dir), root);
    assert.match(path.basename(s.dir), /^\.restore-/);
    assert.equal(fs.statSync(s.dir).mode & 0o777, 0o700);
    fs.mkdirSync(path.join(s.dir, 'vm3'));
    fs.writeFileSync(path.join(s.dir, 'vm3', 'private.img'), 'x');
    await s.remove();
    await s.remove();
    assert.equal(fs.existsSync(s.dir), false);
    const other = await createStaging(root);
    assert.notEqual(other.dir, s.dir);
    await other.remove();
    assert.deepEqual(fs.readdirSync(root), []);
  });
});

describe('createScratch (a verification\'s)', () => {
  it('is .qvm-verify-<pid>-XXXXXX (0700) in an existing directory, never creating it; removes what killed verifications of this user left', async () => {
    const parent = path.join(tmp, 'scratch-parent');
    await rejectsCode(createScratch(parent, 'TMPDIR'), 'ERR_IO');
    assert.equal(fs.existsSync(parent), false, 'a missing TMPDIR is not created');
    fs.mkdirSync(parent);
    // a dead process's scratch (a pid above the kernel's maximum is never alive), a live one's, and
    // a symbolic link named like one: only the first goes
    const dead = path.join(parent, '.qvm-verify-4194999-abcdef');
    fs.mkdirSync(path.join(dead, 'vm3'), { recursive: true });
    fs.writeFileSync(path.join(dead, 'vm3', 'private.img'), 'decrypted');
    const live = path.join(parent, `.qvm-verify-${process.ppid}-ghijkl`);
    fs.mkdirSync(live);
    // a dead PID's directory changed a minute ago (a verification in another PID namespace): kept
    const recent = path.join(parent, '.qvm-verify-4194997-recent');
    fs.mkdirSync(recent);
    const hourAgo = new Date(Date.now() - 2 * 60 * 60 * 1000);
    fs.utimesSync(dead, hourAgo, hourAgo);
    fs.mkdirSync(path.join(tmp, 'kept'));
    fs.symlinkSync(path.join(tmp, 'kept'), path.join(parent, '.qvm-verify-4194998-link'));
    const s = await createScratch(parent, 'TMPDIR');
    assert.equal(path.dirname(s.dir), parent);
    assert.match(path.basename(s.dir), new RegExp(`^\\.qvm-verify-${process.pid}-`));
    assert.equal(fs.statSync(s.dir).mode & 0o777, 0o700);
    assert.equal(fs.existsSync(dead), false, 'a dead verification\'s scratch is removed');
    assert.ok(fs.existsSync(live), 'a live one\'s is kept');
    assert.ok(fs.existsSync(path.join(tmp, 'kept')), 'a link is never followed');
    await s.remove();
    assert.deepEqual(fs.readdirSync(parent).sort(), ['.qvm-verify-4194997-recent', '.qvm-verify-4194998-link', path.basename(live)].sort());
  });
});

describe('installVm', () => {
  it('moves the files into the file-pool layout and adds the domains with new qids', async () => {
    const backup = parseQubesXml(r4Xml(BACKUP_VMS));
    const host = emptyR4Host();
    const plan = planRestore(backup, host, 'u', SEL);
    assert.deepEqual(plan.blocking, []);
    const staging = await createStaging(root);
    const renames = renamesOf(plan);
    for (const vm of plan.vms) {
      const files: Record<string, string> = vm.domain.klass === 'TemplateVM' ? { 'root.img': 'R', 'private.img': 'P' } : { 'private.img': `data of ${vm.backupName}` };
      const stagedDir = stage(staging.dir, vm, files);
      const d = await installVm({ vm, stagedDir, qubesRoot: root, host, renames });
      assert.equal(d.name, vm.newName);
      assert.equal(fs.existsSync(stagedDir), false);
    }
    assert.equal(fs.readFileSync(path.join(root, 'vm-templates/tpl/root.img'), 'utf8'), 'R');
    assert.equal(fs.readFileSync(path.join(root, 'appvms/work/private.img'), 'utf8'), 'data of work');
    const qids = host.domains.map((d) => d.qid);
    assert.equal(new Set(qids).size, qids.length);
    assert.deepEqual(host.domains.map((d) => d.name).sort(), ['dom0', 'mail', 'net', 'tpl', 'work']);
    const work = findDomain(host, 'work')!;
    assert.ok(work.qid >= 1 && work.qid <= 254);
    assert.equal(work.template, 'tpl');
    assert.equal(work.netvm, 'net');
    assert.deepEqual(work.volumes.filter((v) => v.saveOnStop).map((v) => v.vid), ['appvms/work/private']);
    assert.deepEqual(findDomain(host, 'tpl')!.volumes.filter((v) => v.saveOnStop).map((v) => v.vid).sort(), ['vm-templates/tpl/private', 'vm-templates/tpl/root']);

    await saveHostQubesXml(root, host);
    const again = await loadHostQubesXml(root);
    assert.deepEqual(again?.domains.map((d) => d.name).sort(), ['dom0', 'mail', 'net', 'tpl', 'work']);
    assert.equal(findDomain(again!, 'work')?.backup, undefined); // backup-* features dropped
    await staging.remove();
    assert.deepEqual(fs.readdirSync(root).sort(), ['appvms', 'qubes.xml', 'vm-templates']);
  });

  it('installs renamed VMs under their new names with references remapped', async () => {
    const backup = parseQubesXml(r4Xml(BACKUP_VMS));
    const host = parseQubesXml(r4Xml([{ name: 'tpl', klass: 'TemplateVM', qid: 2 }, { name: 'work', klass: 'AppVM', qid: 3, template: 'tpl' }]));
    const plan = planRestore(backup, host, 'u', { ...SEL, renameConflicting: true });
    const staging = await createStaging(root);
    for (const vm of plan.vms) {
      const files: Record<string, string> = vm.domain.klass === 'TemplateVM' ? { 'root.img': 'R', 'private.img': vm.newName } : { 'private.img': vm.newName };
      await installVm({ vm, stagedDir: stage(staging.dir, vm, files), qubesRoot: root, host, renames: renamesOf(plan) });
    }
    assert.equal(fs.readFileSync(path.join(root, 'appvms/work1/private.img'), 'utf8'), 'work1');
    assert.ok(fs.existsSync(path.join(root, 'vm-templates/tpl1/private.img')));
    const w = findDomain(host, 'work1')!;
    assert.equal(w.template, 'tpl1');
    assert.equal(w.netvm, 'net');
    assert.deepEqual(w.volumes.filter((v) => v.saveOnStop).map((v) => v.vid), ['appvms/work1/private']);
    assert.equal(findDomain(host, 'work')!.qid, 3); // the host's own VM is untouched
    await staging.remove();
  });

  it('uses the host default or keeps a missing reference, as planned (--ignore-missing)', async () => {
    const backup = parseQubesXml(r4Xml(BACKUP_VMS));
    // (the second: a new qubes root, planned without a host qubes.xml, installed into a fresh one)
    for (const [hostDoc, want, planned] of [
      [parseQubesXml(r4Xml([{ name: 'deb', klass: 'TemplateVM', qid: 2 }], { globals: { default_template: 'deb' } })), 'deb', true],
      [emptyR4Host(), 'tpl', false],
    ] as [QubesXml, string, boolean][]) {
      const plan = planRestore(backup, planned ? hostDoc : null, 'u', { ...SEL, vms: ['mail'], ignoreMissing: true });
      assert.deepEqual(plan.blocking, []);
      const vm = vmOf(plan, 'mail');
      const staging = await createStaging(root);
      await installVm({ vm, stagedDir: stage(staging.dir, vm, { 'private.img': 'm' }), qubesRoot: root, host: hostDoc, renames: renamesOf(plan) });
      assert.equal(findDomain(hostDoc, 'mail')?.template, want);
      await staging.remove();
      fs.rmSync(path.join(root, 'appvms'), { recursive: true });
    }
  });

  it('a netVM left to the host default stays unset, even when hostDefaults are given', async () => {
    const backup = parseQubesXml(r4Xml(BACKUP_VMS));
    const host = parseQubesXml(r4Xml(
      [{ name: 'tpl', klass: 'TemplateVM', qid: 2 }, { name: 'sys-fw', klass: 'AppVM', qid: 3, template: 'tpl', providesNetwork: true }],
      { globals: { default_netvm: 'sys-fw' } },
    ));
    const plan = planRestore(backup, host, 'u', { ...SEL, vms: ['work'], ignoreMissing: true });
    const vm = vmOf(plan, 'work');
    assert.equal(vm.netvm, undefined);
    const staging = await createStaging(root);
    const d = await installVm({ vm, stagedDir: stage(staging.dir, vm, { 'private.img': 'w' }), qubesRoot: root, host, renames: renamesOf(plan), hostDefaults: { template: 'tpl', netvm: 'sys-fw' } });
    assert.equal(d.netvm, undefined);
    assert.equal(d.template, 'tpl');
    await staging.remove();
  });

  it('installs an R2/R3 VM (real-dir subdir) with synthesised file-pool volumes', async () => {
    const backup = parseQubesXml(r3BackupXml());
    const host = parseQubesXml(r4Xml([{ name: 'debian-12', klass: 'TemplateVM', qid: 2 }], { globals: { default_template: 'debian-12' } }));
    const plan = planRestore(backup, host, 'user', { ...SEL, vms: ['work'], ignoreMissing: true });
    const vm = vmOf(plan, 'work');
    const staging = await createStaging(root);
    const stagedDir = stage(staging.dir, vm, { 'private.img': 'w', 'firewall.xml': '<x/>' });
    assert.equal(stagedDir, path.join(staging.dir, 'appvms', 'work'));
    const d = await installVm({ vm, stagedDir, qubesRoot: root, host, renames: renamesOf(plan) });
    assert.equal(d.template, 'debian-12');
    assert.deepEqual(d.volumes.filter((v) => v.saveOnStop).map((v) => v.vid), ['appvms/work/private']);
    assert.ok(fs.existsSync(path.join(root, 'appvms/work/firewall.xml')));
    await staging.remove();
  });

  it('refuses to overwrite an existing VM dir and leaves everything as it was', async () => {
    const backup = parseQubesXml(r4Xml(BACKUP_VMS));
    const host = parseQubesXml(r4Xml([{ name: 'tpl', klass: 'TemplateVM', qid: 2 }]));
    const plan = planRestore(backup, host, 'u', { ...SEL, vms: ['mail'] });
    const vm = vmOf(plan, 'mail');
    const staging = await createStaging(root);
    const stagedDir = stage(staging.dir, vm, { 'private.img': 'new' });
    fs.mkdirSync(path.join(root, 'appvms', 'mail'), { recursive: true });
    fs.writeFileSync(path.join(root, 'appvms', 'mail', 'private.img'), 'old');
    await rejectsCode(installVm({ vm, stagedDir, qubesRoot: root, host, renames: renamesOf(plan) }), 'ERR_PLAN', /already exists; refusing/);
    assert.equal(fs.readFileSync(path.join(root, 'appvms/mail/private.img'), 'utf8'), 'old');
    assert.equal(fs.readFileSync(path.join(stagedDir, 'private.img'), 'utf8'), 'new');
    assert.equal(findDomain(host, 'mail'), undefined);
    // an empty dir counts too (rename() would silently replace it)
    fs.rmSync(path.join(root, 'appvms', 'mail'), { recursive: true });
    fs.mkdirSync(path.join(root, 'appvms', 'mail'));
    await rejectsCode(installVm({ vm, stagedDir, qubesRoot: root, host, renames: renamesOf(plan) }), 'ERR_PLAN');
    await staging.remove();
  });

  it('rejects path-escaping names and staged dirs outside the qubes root', async () => {
    const backup = parseQubesXml(r4Xml(BACKUP_VMS));
    const host = parseQubesXml(r4Xml([{ name: 'tpl', klass: 'TemplateVM', qid: 2 }]));
    const plan = planRestore(backup, host, 'u', { ...SEL, vms: ['mail'] });
    const vm = vmOf(plan, 'mail');
    const staging = await createStaging(root);
    const stagedDir = stage(staging.dir, vm, { 'private.img': 'x' });
    for (const bad of ['../x', '../../etc', 'a/b', '.', '']) {
      await rejectsCode(installVm({ vm: { ...vm, newName: bad }, stagedDir, qubesRoot: root, host, renames: renamesOf(plan) }), 'ERR_UNSAFE_NAME');
    }
    const outside = path.join(tmp, 'outside');
    fs.mkdirSync(outside);
    await rejectsCode(installVm({ vm, stagedDir: outside, qubesRoot: root, host, renames: renamesOf(plan) }), 'ERR_UNSAFE_NAME', /not under/);
    fs.symlinkSync(outside, path.join(staging.dir, 'appvms'));
    fs.mkdirSync(path.join(outside, 'mail'));
    await rejectsCode(installVm({ vm, stagedDir: path.join(staging.dir, 'appvms', 'mail'), qubesRoot: root, host, renames: renamesOf(plan) }), 'ERR_UNSAFE_NAME', /resolves outside/);
    assert.deepEqual(fs.readdirSync(tmp).sort(), ['outside', 'qubes']);
    assert.equal(fs.existsSync(path.join(root, 'appvms')), false);
    // and the planner never plans such a name from a backup's qubes.xml
    const evil = parseQubesXml(r4Xml([{ name: 'ok', klass: 'AppVM', qid: 3, backup: true }]).replace('<property name="name">ok</property>', '<property name="name">../x</property>'));
    const evilPlan = planRestore(evil, host, 'u', SEL);
    assert.equal(evilPlan.vms[0]?.action, 'skip');
    assert.match(evilPlan.blocking.join('\n'), /invalid or duplicate VM name/);
    await staging.remove();
  });

  it('drops symlinks, refuses hard links and special files in the extracted tree', async () => {
    const backup = parseQubesXml(r4Xml(BACKUP_VMS));
    const host = parseQubesXml(r4Xml([{ name: 'tpl', klass: 'TemplateVM', qid: 2 }]));
    const plan = planRestore(backup, host, 'u', { ...SEL, vms: ['mail'] });
    const vm = vmOf(plan, 'mail');
    const staging = await createStaging(root);
    const stagedDir = stage(staging.dir, vm, { 'private.img': 'x' });
    const args = { vm, stagedDir, qubesRoot: root, host, renames: renamesOf(plan) };

    fs.linkSync(path.join(stagedDir, 'private.img'), path.join(staging.dir, 'elsewhere'));
    await rejectsCode(installVm(args), 'ERR_UNSAFE_NAME', /hard link/);
    fs.unlinkSync(path.join(staging.dir, 'elsewhere'));

    execFileSync('mkfifo', [path.join(stagedDir, 'fifo')]);
    await rejectsCode(installVm(args), 'ERR_UNSAFE_NAME', /not a regular file/);
    fs.unlinkSync(path.join(stagedDir, 'fifo'));

    fs.symlinkSync('/etc/passwd', path.join(stagedDir, 'icon.png'));
    await installVm(args);
    assert.deepEqual(fs.readdirSync(path.join(root, 'appvms/mail')), ['private.img']);
    await staging.remove();
  });

  it('fails when a VM has no extracted files, even one whose backup size is 0 (never a registered VM without its images)', async () => {
    const vms: VmSpec[] = [
      { name: 'a', klass: 'StandaloneVM', qid: 3, backup: true, size: 10 },
      { name: 'b', klass: 'StandaloneVM', qid: 4, backup: true, size: 0 },
    ];
    const host = emptyR4Host();
    const plan = planRestore(parseQubesXml(r4Xml(vms)), host, 'u', SEL);
    const staging = await createStaging(root);
    const args = (name: string) => ({ vm: vmOf(plan, name), stagedDir: path.join(staging.dir, vmOf(plan, name).subdir), qubesRoot: root, host, renames: renamesOf(plan) });
    await rejectsCode(installVm(args('a')), 'ERR_CORRUPT');
    await rejectsCode(installVm(args('b')), 'ERR_CORRUPT', /no files were extracted/);
    assert.equal(fs.existsSync(path.join(root, 'appvms')), false);
    assert.equal(findDomain(host, 'b'), undefined);
    await staging.remove();
  });
});

describe('installDom0Home', () => {
  it('names the directory home-restore-%Y-%m-%d-%H%M%S in local time', () => {
    assert.equal(homeRestoreDirName(new Date(2024, 0, 2, 3, 4, 5)), 'home-restore-2024-01-02-030405');
    assert.equal(homeRestoreDirName(new Date(1999, 11, 31, 23, 59, 58)), 'home-restore-1999-12-31-235958');
  });

  it('moves the home to <home>/home-restore-…/dom0-home/<user>/ and never reuses a directory: a second restore in the same second gets -1, then -2', async () => {
    const home = path.join(tmp, 'home');
    fs.mkdirSync(path.join(home, 'Documents'), { recursive: true });
    fs.writeFileSync(path.join(home, 'Documents', 'live.txt'), 'live');
    const staged = path.join(tmp, 'staging', 'dom0-home');
    fs.mkdirSync(path.join(staged, 'alice', 'Documents'), { recursive: true });
    fs.writeFileSync(path.join(staged, 'alice', 'Documents', 'live.txt'), 'backup');
    fs.symlinkSync('Documents', path.join(staged, 'alice', 'docs'));
    const now = new Date(2024, 5, 7, 8, 9, 10);
    const out = await installDom0Home(staged, home, now);
    assert.equal(out, path.join(home, 'home-restore-2024-06-07-080910'));
    assert.equal(fs.readFileSync(path.join(out, 'dom0-home/alice/Documents/live.txt'), 'utf8'), 'backup');
    assert.equal(fs.readlinkSync(path.join(out, 'dom0-home/alice/docs')), 'Documents');
    assert.equal(fs.readFileSync(path.join(home, 'Documents', 'live.txt'), 'utf8'), 'live');
    assert.equal(fs.existsSync(staged), false);

    for (const n of [1, 2]) {
      fs.mkdirSync(path.join(staged, 'alice'), { recursive: true });
      fs.writeFileSync(path.join(staged, 'alice', 'again.txt'), `restore ${n}`);
      const next = await installDom0Home(staged, home, now);
      assert.equal(next, path.join(home, `home-restore-2024-06-07-080910-${n}`));
      assert.equal(fs.readFileSync(path.join(next, 'dom0-home/alice/again.txt'), 'utf8'), `restore ${n}`);
    }
    assert.equal(fs.readFileSync(path.join(out, 'dom0-home/alice/Documents/live.txt'), 'utf8'), 'backup', 'the first one is untouched');
    // a symbolic link where the next name would be is never followed, nor replaced: skipped
    fs.symlinkSync(path.join(tmp, 'elsewhere'), path.join(home, 'home-restore-2024-06-07-080910-3'));
    fs.mkdirSync(path.join(staged, 'alice'), { recursive: true });
    assert.equal(await installDom0Home(staged, home, now), path.join(home, 'home-restore-2024-06-07-080910-4'));
    assert.equal(fs.existsSync(path.join(tmp, 'elsewhere')), false);
    // a staged home that is not there fails (ERR_IO) and creates nothing
    await rejectsCode(installDom0Home(staged, home, now), 'ERR_IO');
    assert.equal(fs.existsSync(path.join(home, 'home-restore-2024-06-07-080910-5')), false);
  });

  it('a stop while the home is being flushed hands nothing over: no home-restore directory, the tree left in the staging', async () => {
    const home = path.join(tmp, 'home');
    fs.mkdirSync(home, { recursive: true });
    const staged = path.join(tmp, 'staging', 'dom0-home');
    fs.mkdirSync(path.join(staged, 'alice'), { recursive: true });
    for (let i = 0; i < SYNCFS_FROM_ENTRIES; i++) fs.writeFileSync(path.join(staged, 'alice', `f${i}`), 'x');
    const ac = new AbortController();
    ac.abort(new Error('stopped by SIGINT'));
    await assert.rejects(installDom0Home(staged, home, new Date(2024, 5, 7, 8, 9, 10), ac.signal), /stopped by SIGINT/);
    assert.deepEqual(fs.readdirSync(home), [], 'nothing handed over');
  });

  it('copies across filesystems (EXDEV) with cp -a and removes the staged copy', async (t) => {
    const shm = '/dev/shm';
    if (!fs.existsSync(shm) || fs.statSync(shm).dev === fs.statSync(tmp).dev) return t.skip('no second filesystem at /dev/shm');
    const other = fs.mkdtempSync(path.join(shm, 'qvmb-'));
    try {
      const staged = path.join(other, 'dom0-home');
      fs.mkdirSync(path.join(staged, 'alice'), { recursive: true });
      fs.writeFileSync(path.join(staged, 'alice', 'f'), 'hello');
      fs.chmodSync(path.join(staged, 'alice', 'f'), 0o640);
      const home = path.join(tmp, 'home');
      fs.mkdirSync(home);
      const out = await installDom0Home(staged, home, new Date(2024, 0, 1, 0, 0, 0));
      const f = path.join(out, 'dom0-home', 'alice', 'f');
      assert.equal(fs.readFileSync(f, 'utf8'), 'hello');
      assert.equal(fs.statSync(f).mode & 0o777, 0o640);
      assert.equal(fs.existsSync(staged), false);
      // two at once in the same second: each claims its own name before copying (cp would merge
      // into a directory the other one made)
      const twins = ['g', 'h'].map((name) => {
        const d = path.join(other, `twin-${name}`, 'dom0-home');
        fs.mkdirSync(path.join(d, 'alice'), { recursive: true });
        fs.writeFileSync(path.join(d, 'alice', name), name);
        return d;
      });
      const outs = await Promise.all(twins.map((d) => installDom0Home(d, home, new Date(2024, 0, 1, 0, 0, 0))));
      assert.deepEqual(outs.map((o) => path.basename(o)).sort(), ['home-restore-2024-01-01-000000-1', 'home-restore-2024-01-01-000000-2']);
      for (const o of outs) assert.equal(fs.readdirSync(path.join(o, 'dom0-home', 'alice')).length, 1, `${o}: one restore's files only`);
    } finally {
      fs.rmSync(other, { recursive: true, force: true });
    }
  });
});

describe('host qubes.xml', () => {
  it('loads null when missing, writes atomically (0644, no temp files) and round-trips', async () => {
    assert.equal(await loadHostQubesXml(root), null);
    await saveHostQubesXml(root, null);
    const file = path.join(root, 'qubes.xml');
    assert.equal(fs.statSync(file).mode & 0o777, 0o644);
    const empty = await loadHostQubesXml(root);
    assert.deepEqual(empty?.domains.map((d) => d.name), ['dom0']);
    const doc = parseQubesXml(r4Xml([{ name: 'tpl', klass: 'TemplateVM', qid: 2 }]));
    await saveHostQubesXml(root, doc);
    assert.deepEqual(fs.readdirSync(root), ['qubes.xml']);
    assert.deepEqual((await loadHostQubesXml(root))?.domains.map((d) => d.name), ['dom0', 'tpl']);
  });

  it('keeps the mode of the file it replaces; names its temp file while it exists; leaves none when the write fails', async () => {
    await saveHostQubesXml(root, null);
    const file = path.join(root, 'qubes.xml');
    fs.chmodSync(file, 0o600);
    const seen: string[] = [];
    await saveHostQubesXml(root, null, async (tmp) => {
      assert.ok(fs.statSync(tmp).isFile());
      seen.push(tmp);
    });
    assert.equal(fs.statSync(file).mode & 0o777, 0o600, 'a 0600 qubes.xml stays 0600');
    assert.equal(seen.length, 1);
    assert.match(path.basename(seen[0]!), /^qubes\.xml\.\d+$/);
    assert.equal(path.dirname(seen[0]!), fs.realpathSync(root));
    await rejectsCode(
      saveHostQubesXml(root, null, async () => {
        throw new Error('journal full');
      }),
      'ERR_IO',
    );
    assert.deepEqual(fs.readdirSync(root), ['qubes.xml']);
  });

  it('refuses a qubes.xml that is a link, a directory or a FIFO: not read, not written through', async () => {
    fs.mkdirSync(root, { recursive: true });
    const file = path.join(root, 'qubes.xml');
    const target = path.join(root, 'elsewhere.xml');
    fs.writeFileSync(target, r4Xml([{ name: 'tpl', klass: 'TemplateVM', qid: 2 }]));
    fs.symlinkSync(target, file);
    await rejectsCode(loadHostQubesXml(root), 'ERR_IO');
    await rejectsCode(saveHostQubesXml(root, null), 'ERR_IO');
    assert.ok(fs.lstatSync(file).isSymbolicLink());
    assert.match(fs.readFileSync(target, 'utf8'), /tpl/, 'the link\'s target is untouched');
    fs.rmSync(file);
    execFileSync('mkfifo', [file]);
    // (a FIFO without a writer: neither waits)
    await rejectsCode(loadHostQubesXml(root), 'ERR_IO');
    await rejectsCode(saveHostQubesXml(root, null), 'ERR_IO');
    fs.rmSync(file);
    fs.mkdirSync(path.join(file, 'keep'), { recursive: true });
    await rejectsCode(saveHostQubesXml(root, null), 'ERR_IO');
    assert.deepEqual(fs.readdirSync(root).sort(), ['elsewhere.xml', 'qubes.xml']);
    assert.deepEqual(fs.readdirSync(file), ['keep']);
  });
});

it('restored dom0 home belongs to the owner of the live home when run as root', { skip: process.getuid?.() !== 0 }, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qvmb-chown-'));
  try {
    const home = path.join(dir, 'user');
    fs.mkdirSync(path.join(dir, 'staged', 'user'), { recursive: true });
    fs.writeFileSync(path.join(dir, 'staged', 'user', 'f.txt'), 'x');
    fs.mkdirSync(home);
    fs.chownSync(home, 1234, 1235);
    const out = await installDom0Home(path.join(dir, 'staged'), home, new Date(2026, 0, 2, 3, 4, 5));
    const st = fs.statSync(path.join(out, 'dom0-home', 'user', 'f.txt'));
    assert.equal(st.uid, 1234);
    assert.equal(st.gid, 1235);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

describe('flushing a staged tree before it is moved into place', () => {
  /** A `sync` first in PATH that logs its arguments and exits with `status`. */
  const fakeSync = (status: number): { log: string; restore: () => void } => {
    const bin = path.join(tmp, 'bin');
    fs.mkdirSync(bin, { recursive: true });
    const log = path.join(tmp, 'sync.log');
    fs.writeFileSync(path.join(bin, 'sync'), `#!/bin/sh\necho "$@" >> '${log}'\nexit ${status}\n`, { mode: 0o755 });
    const saved = process.env['PATH'];
    process.env['PATH'] = `${bin}:${saved ?? ''}`;
    return { log, restore: () => (process.env['PATH'] = saved) };
  };
  const tree = (files: number): string => {
    const dir = path.join(tmp, 'tree');
    fs.mkdirSync(path.join(dir, 'sub'), { recursive: true });
    for (let i = 0; i < files; i++) fs.writeFileSync(path.join(dir, i % 2 ? 'sub' : '', `f${i}`), 'x');
    return dir;
  };
  const logged = (log: string): string[] => (fs.existsSync(log) ? fs.readFileSync(log, 'utf8').trim().split('\n') : []);

  it('a large tree is first written back by one syncfs of its file system (sync -f), a small one not', async () => {
    const s = fakeSync(0);
    try {
      const big = tree(SYNCFS_FROM_ENTRIES);
      const r = await prepareTree(big, 'vm');
      assert.equal(r.files, SYNCFS_FROM_ENTRIES);
      assert.deepEqual(logged(s.log), [`-f -- ${big}`]);
      fs.rmSync(big, { recursive: true });
      await prepareTree(tree(SYNCFS_FROM_ENTRIES - 3), 'vm'); // 61 files + 2 directories: 63 entries
      assert.deepEqual(logged(s.log), [`-f -- ${big}`], 'no sync for a small tree');
    } finally {
      s.restore();
    }
  });

  it('the syncfs is never trusted: every entry is fsynced after it, and one that cannot be fails the flush (a sync that fails costs nothing more)', async () => {
    const s = fakeSync(1);
    try {
      const dir = tree(SYNCFS_FROM_ENTRIES * 2);
      await prepareTree(dir, 'vm');
      assert.equal(logged(s.log).length, 1, 'tried');
      const entries = fs.readdirSync(dir).map((n) => path.join(dir, n));
      // a sync that succeeds changes nothing: the entry that cannot be fsynced still fails
      s.restore();
      const ok = fakeSync(0);
      try {
        await assert.rejects(flushEntries(dir, [...entries, path.join(dir, 'missing')]), { code: 'ENOENT' });
        execFileSync('mkfifo', [path.join(dir, 'fifo')]);
        await assert.rejects(flushEntries(dir, [path.join(dir, 'fifo')]), 'a FIFO is refused, never waited on');
      } finally {
        ok.restore();
      }
    } finally {
      s.restore();
    }
  });

  it('a dom0 home tree is flushed at any depth, its links neither followed nor fsynced', async () => {
    const dir = path.join(tmp, 'home');
    let d = dir;
    for (let i = 0; i < 200; i++) d = path.join(d, 'd');
    fs.mkdirSync(d, { recursive: true });
    fs.writeFileSync(path.join(d, 'deep'), 'x');
    fs.symlinkSync('/nonexistent', path.join(dir, 'dangling'));
    execFileSync('mkfifo', [path.join(tmp, 'fifo')]);
    fs.symlinkSync(path.join(tmp, 'fifo'), path.join(dir, 'to-fifo'));
    await flushTree(dir); // a followed link would fail (dangling) or be refused (FIFO)
    const ac = new AbortController();
    ac.abort(new Error('stopped'));
    await assert.rejects(flushTree(dir, ac.signal), /stopped/);
  });
});
