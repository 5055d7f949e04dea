// The installer: plan order and dependencies, merge into the qubes.xml on disk (a change made by
// someone else between two installs survives), nothing installed after an abort or without the lock,
// and a failed qubes.xml write leaves no VM directory behind.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { emptyR4Host, parseQubesXml, serializeQubesXml, validateHostCollection } from '../../../src/main/qubes-xml/index.js';
import type { HostLock } from '../../../src/main/io/host-lock.js';
import { Installer } from '../../../src/main/restore/install/installer.js';
import { createStaging } from '../../../src/main/restore/install/staging.js';
import { planRestore, type RestoreSelection, type VmPlan } from '../../../src/main/restore/plan/restore-plan.js';
import { noopProgress, type ProgressReporter } from '../../../src/main/progress/progress.js';
import { r4Xml, type VmSpec } from './sample-xml.js';
import { RunStats } from '../../../src/main/stats/run-stats.js';

const SEL: RestoreSelection = {
  vms: [], exclude: [], skipDom0Home: false, ignoreUsernameMismatch: false, renameConflicting: false,
  skipConflicting: false, skipBroken: false, ignoreMissing: false, verifyOnly: false,
};
const VMS: VmSpec[] = [
  { name: 'tpl', klass: 'TemplateVM', qid: 2, backup: true },
  { name: 'a', klass: 'AppVM', qid: 3, template: 'tpl', netvm: null, backup: true },
  { name: 'b', klass: 'AppVM', qid: 4, template: 'tpl', netvm: null, backup: true },
  { name: 'c', klass: 'AppVM', qid: 5, template: 'tpl', netvm: null, backup: true },
];

let root: string;
beforeEach(() => {
  root = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'qvmb-inst-')), 'qubes');
  fs.mkdirSync(root);
  fs.writeFileSync(path.join(root, 'qubes.xml'), serializeQubesXml(emptyR4Host()));
});
afterEach(() => fs.rmSync(path.dirname(root), { recursive: true, force: true }));

const heldLock = (held = () => true): HostLock => ({ path: path.join(root, 'qubes.xml.lock'), held, createdRoot: false, release: async () => {}, removeWithRoot: async () => {} });
const names = (): string[] => parseQubesXml(fs.readFileSync(path.join(root, 'qubes.xml'))).domains.map((d) => d.name).sort();

async function setup(): Promise<{ plan: VmPlan[]; stagingDir: string }> {
  const plan = planRestore(parseQubesXml(r4Xml(VMS)), emptyR4Host(), 'u', SEL).vms.filter((v) => v.action === 'restore');
  const staging = await createStaging(root);
  for (const v of plan) {
    const dir = path.join(staging.dir, v.subdir);
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'private.img'), v.backupName);
    if (v.domain.klass === 'TemplateVM') fs.writeFileSync(path.join(dir, 'root.img'), 'root');
  }
  return { plan, stagingDir: staging.dir };
}

describe('Installer', () => {
  it('a stop during the group\'s directory fsyncs (after the last move) installs nothing: the files go back, qubes.xml is not written', async () => {
    const { plan, stagingDir } = await setup();
    const ac = new AbortController();
    const stats = new RunStats({ enabled: true, measureEventLoop: false });
    const time = stats.time.bind(stats);
    let moves = 0;
    let abortedAtWrite: boolean | undefined;
    stats.time = ((stage: string, fn: () => unknown) => {
      if (stage === 'install: write host qubes.xml (fsync)') abortedAtWrite = ac.signal.aborted;
      const r = time(stage, fn);
      // the signal comes right after the last move, while the parents are fsynced
      if (stage === 'install: check + move files' && ++moves === plan.length) void (r as Promise<unknown>).then(() => setImmediate(() => ac.abort(new Error('SIGINT'))));
      return r;
    }) as RunStats['time'];
    const before = fs.readFileSync(path.join(root, 'qubes.xml'), 'utf8');
    const inst = new Installer({ root, plan, stagingDir, progress: noopProgress, signal: ac.signal, lock: heldLock(), stats });
    for (const v of plan) inst.done(v.backupName);
    await inst.settle();
    assert.equal(ac.signal.aborted, true);
    assert.equal(abortedAtWrite, undefined, 'no qubes.xml write after the signal');
    assert.deepEqual([...inst.installed], []);
    assert.equal(fs.readFileSync(path.join(root, 'qubes.xml'), 'utf8'), before);
    for (const d of ['appvms', 'vm-templates']) assert.deepEqual(fs.existsSync(path.join(root, d)) ? fs.readdirSync(path.join(root, d)) : [], [], `${d}: nothing left`);
  });

  it('a forgotten check still running ends before the next of the same VM starts (they would walk one directory); after a stop nothing more is checked', async () => {
    const { plan, stagingDir } = await setup();
    const a = path.join(stagingDir, plan.find((v) => v.backupName === 'a')!.subdir);
    for (let i = 0; i < 2000; i++) fs.symlinkSync('/etc/passwd', path.join(a, `l${i}`));
    const failures: string[] = [];
    const progress: ProgressReporter = { ...noopProgress, vmDone: (_n, ok, m) => void (ok ? undefined : failures.push(m ?? '')) };
    const inst = new Installer({ root, plan, stagingDir, progress, signal: new AbortController().signal, lock: heldLock() });
    inst.prepare('a');
    await new Promise((r) => setImmediate(r));
    inst.forget('a'); // a later member of `a` (onVmReopened), then said extracted again
    inst.prepare('a');
    for (const v of plan) inst.done(v.backupName);
    await inst.settle();
    assert.deepEqual(failures, []);
    assert.deepEqual(names(), ['a', 'b', 'c', 'dom0', 'tpl']);
    assert.deepEqual(fs.readdirSync(path.join(root, 'appvms', 'a')), ['private.img'], 'every link dropped');
    // stopped: prepare() starts nothing
    const ac = new AbortController();
    ac.abort(new Error('SIGINT'));
    const stats = new RunStats({ enabled: true, measureEventLoop: false });
    const stopped = new Installer({ root, plan, stagingDir, progress: noopProgress, signal: ac.signal, lock: heldLock(), stats });
    for (const v of plan) stopped.prepare(v.backupName);
    await stopped.quiesce();
    assert.equal(stats.report().stages.find((x) => x.stage === 'install: check + fsync staged files'), undefined);
  });

  it('checks prepared while the archive is read are used; one forgotten (more files of the VM came) is run again on what is there then', async () => {
    const { plan, stagingDir } = await setup();
    const stats = new RunStats({ enabled: true, measureEventLoop: false });
    const inst = new Installer({ root, plan, stagingDir, progress: noopProgress, signal: new AbortController().signal, lock: heldLock(), stats });
    for (const v of plan) inst.prepare(v.backupName);
    inst.prepare('not-in-the-plan'); // nothing
    await inst.quiesce();
    // a (hostile) later member of `a` and `b` adds a link to each after their checks: `a`'s check is
    // forgotten (what restoreData's onVmReopened does), `b`'s not (a test of the test)
    const staged = (vm: string): string => path.join(stagingDir, plan.find((v) => v.backupName === vm)!.subdir);
    for (const vm of ['a', 'b']) fs.symlinkSync('/etc/passwd', path.join(staged(vm), 'icon.png'));
    inst.forget('a');
    for (const v of plan) inst.done(v.backupName);
    await inst.settle();
    assert.deepEqual(names(), ['a', 'b', 'c', 'dom0', 'tpl']);
    assert.equal(fs.existsSync(path.join(root, 'appvms', 'a', 'icon.png')), false, 'the check ran again: the link was dropped');
    assert.equal(fs.lstatSync(path.join(root, 'appvms', 'b', 'icon.png')).isSymbolicLink(), true, 'a check kept is not run again');
    const checks = stats.report().stages.find((x) => x.stage === 'install: check + fsync staged files');
    assert.equal(checks?.count, plan.length + 1, 'one check per VM, and `a` twice');
  });

  it('installs in dependency order and merges into the qubes.xml on disk, keeping changes made meanwhile', async () => {
    const { plan, stagingDir } = await setup();
    const ac = new AbortController();
    const order: string[] = [];
    const progress: ProgressReporter = {
      ...noopProgress,
      vmDone(name) {
        order.push(name);
        // someone else (a lock-respecting tool) adds a VM between two installs
        if (name !== 'tpl') return;
        const file = path.join(root, 'qubes.xml');
        const other = '<domain id="domain-77" class="TemplateVM"><properties><property name="qid">77</property><property name="name">other</property><property name="label">label-1</property></properties></domain>';
        fs.writeFileSync(file, fs.readFileSync(file, 'utf8').replace('</domains>', `${other}</domains>`));
      },
    };
    const inst = new Installer({ root, plan, stagingDir, progress, signal: ac.signal, lock: heldLock() });
    for (const n of ['c', 'b', 'a']) inst.done(n); // before their template: they wait for it
    inst.done('tpl');
    await inst.settle();
    assert.deepEqual(order, ['tpl', 'a', 'b', 'c']);
    assert.deepEqual([...inst.installed], ['tpl', 'a', 'b', 'c']);
    assert.deepEqual(names(), ['a', 'b', 'c', 'dom0', 'other', 'tpl']);
  });

  it('a default_dispvm between two VMs of the run (fw -> dvm, dvm netvm fw) is set once both are installed, never dangling', async () => {
    const vms: VmSpec[] = [
      { name: 'tpl', klass: 'TemplateVM', qid: 2, backup: true },
      { name: 'dvm', klass: 'AppVM', qid: 3, template: 'tpl', dispvmTemplate: true, netvm: 'fw', backup: true },
      { name: 'fw', klass: 'AppVM', qid: 4, template: 'tpl', providesNetwork: true, netvm: null, defaultDispvm: 'dvm', backup: true },
    ];
    const p = planRestore(parseQubesXml(r4Xml(vms)), emptyR4Host(), 'u', SEL);
    assert.deepEqual(p.blocking, []);
    const plan = p.vms.filter((v) => v.action === 'restore');
    const staging = await createStaging(root);
    for (const v of plan) {
      const dir = path.join(staging.dir, v.subdir);
      fs.mkdirSync(dir, { recursive: true });
      fs.writeFileSync(path.join(dir, 'private.img'), v.backupName);
      if (v.domain.klass === 'TemplateVM') fs.writeFileSync(path.join(dir, 'root.img'), 'root');
    }
    const seen: string[] = [];
    const progress: ProgressReporter = {
      ...noopProgress,
      vmDone() {
        // after every single install the host collection must load as Qubes would
        seen.push(...validateHostCollection(parseQubesXml(fs.readFileSync(path.join(root, 'qubes.xml')))));
      },
    };
    const inst = new Installer({ root, plan, stagingDir: staging.dir, progress, signal: new AbortController().signal, lock: heldLock() });
    for (const v of plan) inst.done(v.backupName);
    await inst.settle();
    assert.deepEqual(seen, []);
    const doc = parseQubesXml(fs.readFileSync(path.join(root, 'qubes.xml')));
    assert.equal(doc.domains.find((d) => d.name === 'fw')?.defaultDispvm, 'dvm');
    assert.equal(doc.domains.find((d) => d.name === 'dvm')?.netvm, 'fw');
    assert.deepEqual(validateHostCollection(doc), []);
  });

  it('installs nothing after an abort, and nothing once the lock is lost', async () => {
    for (const stop of ['abort', 'lock'] as const) {
      const { plan, stagingDir } = await setup();
      const ac = new AbortController();
      let held = true;
      const progress: ProgressReporter = {
        ...noopProgress,
        vmDone(name) {
          if (name !== 'a') return;
          // b and c become ready after the first group (tpl, a) was written, then the run stops
          inst.done('b');
          inst.done('c');
          if (stop === 'abort') ac.abort(new Error('SIGINT'));
          else held = false;
        },
      };
      const inst = new Installer({ root, plan, stagingDir, progress, signal: ac.signal, lock: heldLock(() => held) });
      inst.done('tpl');
      inst.done('a');
      await inst.settle();
      assert.deepEqual([...inst.installed], ['tpl', 'a'], stop);
      assert.deepEqual(fs.readdirSync(path.join(root, 'appvms')), ['a'], stop);
      assert.deepEqual(names(), ['a', 'dom0', 'tpl'], stop);
      fs.rmSync(root, { recursive: true });
      fs.mkdirSync(root);
      fs.writeFileSync(path.join(root, 'qubes.xml'), serializeQubesXml(emptyR4Host()));
    }
  });

  it('registers the VMs ready at one time with one qubes.xml write per group, dependencies in the same group', async () => {
    const { plan, stagingDir } = await setup();
    const stats = new RunStats({ enabled: true, clock: () => 0, measureEventLoop: false });
    const inst = new Installer({ root, plan, stagingDir, progress: noopProgress, signal: new AbortController().signal, lock: heldLock(), stats });
    for (const v of plan) inst.done(v.backupName);
    await inst.settle();
    assert.deepEqual([...inst.installed], ['tpl', 'a', 'b', 'c']);
    assert.deepEqual(names(), ['a', 'b', 'c', 'dom0', 'tpl']);
    const writes = stats.report().stages.find((s) => s.stage === 'install: write host qubes.xml (fsync)');
    assert.equal(writes?.count, 1, 'one write for the four VMs (was one per VM)');
  });

  it('a failed qubes.xml write moves the files of the whole group back', async () => {
    const { plan, stagingDir } = await setup();
    // the lock is there when the group starts and gone when qubes.xml is to be written
    let calls = 0;
    const inst2 = new Installer({ root, plan, stagingDir, progress: noopProgress, signal: new AbortController().signal, lock: heldLock(() => ++calls === 1) });
    for (const v of plan) inst2.done(v.backupName);
    await inst2.settle();
    assert.deepEqual([...inst2.installed], []);
    assert.deepEqual(inst2.failures.map((f) => f.name).sort(), ['a', 'b', 'c', 'tpl']);
    assert.deepEqual(names(), ['dom0']);
    for (const d of ['vm-templates', 'appvms']) assert.deepEqual(fs.existsSync(path.join(root, d)) ? fs.readdirSync(path.join(root, d)) : [], [], d);
    for (const v of plan) assert.ok(fs.existsSync(path.join(stagingDir, v.subdir, 'private.img')), `${v.backupName}: files back in staging`);
  });

  it('a failed qubes.xml write moves the VM directory back: never a directory that qubes.xml does not list', async () => {
    const { plan, stagingDir } = await setup();
    // the lock is there when the install starts and gone when qubes.xml is to be written
    let calls = 0;
    const inst = new Installer({ root, plan: plan.filter((v) => v.backupName === 'tpl'), stagingDir, progress: noopProgress, signal: new AbortController().signal, lock: heldLock(() => ++calls === 1) });
    inst.done('tpl');
    await inst.settle();
    assert.deepEqual([...inst.installed], []);
    assert.equal(inst.failures.length, 1);
    assert.match(inst.failures[0]!.error, /lock .* was lost; not writing qubes\.xml/);
    assert.deepEqual(names(), ['dom0']);
    assert.deepEqual(fs.existsSync(path.join(root, 'vm-templates')) ? fs.readdirSync(path.join(root, 'vm-templates')) : [], []);
    assert.ok(fs.existsSync(path.join(stagingDir, 'vm2', 'root.img')), 'the files are back in staging');
  });
});
