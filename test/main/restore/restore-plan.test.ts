// Tests of the restore planner: selection, conflicts and renames, missing templates/netVMs,
// dom0 home, install order, and agreement with what Qubes' own restore planned for the fixtures.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseQubesXml, type QubesXml } from '../../../src/main/qubes-xml/index.js';
import { findFreeName } from '../../../src/main/restore/plan/conflict-rename.js';
import { formatRestoreTable, planRestore, type RestoreSelection, type VmPlan } from '../../../src/main/restore/plan/restore-plan.js';
import { fixtureQubesXml, haveScrypt } from '../qubes-xml/fixture-xml.js';
import { oracleFixtures, oracleRestoreInfo, r3BackupXml, r4Xml, type VmSpec } from './sample-xml.js';

const SEL: RestoreSelection = {
  vms: [], exclude: [], skipDom0Home: false, ignoreUsernameMismatch: false, renameConflicting: false,
  skipConflicting: false, skipBroken: false, ignoreMissing: false, verifyOnly: false,
};
const sel = (o: Partial<RestoreSelection> = {}): RestoreSelection => ({ ...SEL, ...o });

/** Backup: template tpl, netvm net (on tpl), appvm work (tpl, net), appvm mail (tpl, default netvm), dispvm template dvm. */
const BACKUP_VMS: VmSpec[] = [
  { name: 'work', klass: 'AppVM', qid: 3, template: 'tpl', netvm: 'net', backup: true, size: 3000 },
  { name: 'mail', klass: 'AppVM', qid: 4, template: 'tpl', backup: true, size: 4000 },
  { name: 'net', klass: 'AppVM', qid: 5, template: 'tpl', netvm: null, providesNetwork: true, backup: true, size: 5000 },
  { name: 'tpl', klass: 'TemplateVM', qid: 6, backup: true, size: 6000 },
  { name: 'fedora-41', klass: 'TemplateVM', qid: 1 },
];
const backup = (): QubesXml => parseQubesXml(r4Xml(BACKUP_VMS, { dom0Home: { user: 'alice', size: 700 } }));

function host(vms: VmSpec[], globals: Record<string, string> = {}): QubesXml {
  return parseQubesXml(r4Xml(vms, { globals }));
}
const byName = (vms: VmPlan[], name: string): VmPlan => {
  const p = vms.find((v) => v.backupName === name);
  assert.ok(p, `no plan for ${name}`);
  return p;
};

describe('planRestore', () => {
  it('restores everything onto an empty host, templates then netVMs then the rest', () => {
    const plan = planRestore(backup(), null, 'alice', sel());
    assert.deepEqual(plan.blocking, []);
    assert.deepEqual(plan.vms.map((v) => v.backupName), ['tpl', 'net', 'work', 'mail']);
    assert.ok(plan.vms.every((v) => v.action === 'restore' && v.problems.length === 0 && v.newName === v.backupName));
    assert.equal(byName(plan.vms, 'work').subdir, 'vm3/');
    assert.equal(byName(plan.vms, 'work').template, 'tpl');
    assert.equal(byName(plan.vms, 'work').netvm, 'net');
    assert.equal(byName(plan.vms, 'mail').netvm, undefined);
    assert.equal(byName(plan.vms, 'net').netvm, null);
    assert.deepEqual(plan.dom0, { subdir: 'dom0-home/', user: 'alice', sizeBytes: 700, declaredBytes: 700, action: 'restore', problems: [] });
    assert.equal(plan.totalBytes, 3000 + 4000 + 5000 + 6000 + 700);
    assert.deepEqual(plan.unknownNames, []);
  });

  it('puts a VM after the restored VMs it depends on, even within a rank', () => {
    const vms: VmSpec[] = [
      { name: 'proxy', klass: 'AppVM', qid: 7, template: 'tpl', netvm: 'net', providesNetwork: true, backup: true },
      { name: 'net', klass: 'AppVM', qid: 8, template: 'tpl', netvm: null, providesNetwork: true, backup: true },
      { name: 'disp', klass: 'DispVM', qid: 9, template: 'dvm', backup: true },
      { name: 'dvm', klass: 'AppVM', qid: 10, template: 'tpl', dispvmTemplate: true, backup: true },
      { name: 'tpl', klass: 'TemplateVM', qid: 11, backup: true },
    ];
    const plan = planRestore(parseQubesXml(r4Xml(vms)), null, 'u', sel());
    assert.deepEqual(plan.blocking, []);
    assert.deepEqual(plan.vms.map((v) => v.backupName), ['tpl', 'net', 'proxy', 'dvm', 'disp']);
  });

  it('a label the host does not have is said in the notes (the VM is restored red)', () => {
    const b = backup();
    b.domains.find((d) => d.name === 'mail')!.label = 'pink';
    const p = planRestore(b, null, 'alice', sel());
    assert.deepEqual(byName(p.vms, 'mail').warnings, ['label "pink" is not one of the host\'s labels: restored as red']);
    assert.deepEqual(byName(p.vms, 'work').warnings, []);
  });

  it('blocks on a name conflict; --rename-conflicting renames and remaps references; --skip-conflicting skips', () => {
    const h = host([{ name: 'tpl', klass: 'TemplateVM', qid: 2 }, { name: 'work', klass: 'AppVM', qid: 3, template: 'tpl' }]);
    const blocked = planRestore(backup(), h, 'alice', sel());
    assert.deepEqual(byName(blocked.vms, 'work').problems, ['already-exists']);
    assert.deepEqual(byName(blocked.vms, 'tpl').problems, ['already-exists']);
    assert.equal(blocked.blocking.length, 2);
    assert.match(blocked.blocking.join('\n'), /work: a VM with this name already exists.*--rename-conflicting/);
    // net and mail use the host's tpl (a TemplateVM there): no other problem
    assert.deepEqual(byName(blocked.vms, 'net').problems, []);

    const renamed = planRestore(backup(), h, 'alice', sel({ renameConflicting: true }));
    assert.deepEqual(renamed.blocking, []);
    assert.equal(byName(renamed.vms, 'work').newName, 'work1');
    assert.equal(byName(renamed.vms, 'tpl').newName, 'tpl1');
    assert.equal(byName(renamed.vms, 'work').template, 'tpl1');
    assert.equal(byName(renamed.vms, 'net').template, 'tpl1');
    assert.equal(byName(renamed.vms, 'work').netvm, 'net');
    assert.match(formatRestoreTable(renamed), /work → work1 .*restore, renamed to work1/);

    // a renamed VM that --skip-broken then skips (its netVM is missing) keeps its own name
    const h2 = host([{ name: 'tpl', klass: 'TemplateVM', qid: 2 }, { name: 'work', klass: 'AppVM', qid: 3, template: 'tpl' }]);
    const broken = planRestore(backup(), h2, 'alice', sel({ vms: ['work'], renameConflicting: true, skipBroken: true }));
    assert.equal(byName(broken.vms, 'work').action, 'skip');
    assert.equal(byName(broken.vms, 'work').newName, 'work');
    assert.doesNotMatch(formatRestoreTable(broken), /work1/);

    const skipped = planRestore(backup(), h, 'alice', sel({ skipConflicting: true }));
    assert.deepEqual(skipped.blocking, []);
    assert.equal(byName(skipped.vms, 'work').action, 'skip');
    assert.equal(byName(skipped.vms, 'tpl').action, 'skip');
    assert.equal(byName(skipped.vms, 'net').template, 'tpl'); // the host's
    assert.equal(skipped.totalBytes, 4000 + 5000 + 700);
  });

  it('a VM directory on the host\'s disk that its qubes.xml does not list is a conflict, said with its path; renames avoid it', () => {
    const occupied = new Map([['work', '/q/appvms/work'], ['work1', '/q/vm-templates/work1']]);
    const blocked = planRestore(backup(), null, 'alice', sel({ occupied }));
    assert.deepEqual(byName(blocked.vms, 'work').problems, ['already-exists']);
    assert.deepEqual(byName(blocked.vms, 'net').problems, []);
    assert.match(blocked.blocking.join('\n'), /work: \/q\/appvms\/work is already on the host, though its qubes.xml lists no VM work \(use --rename-conflicting/);
    const renamed = planRestore(backup(), null, 'alice', sel({ occupied, renameConflicting: true }));
    assert.deepEqual(renamed.blocking, []);
    assert.equal(byName(renamed.vms, 'work').newName, 'work2', 'work1 is taken on the disk too');
    const skipped = planRestore(backup(), null, 'alice', sel({ occupied, skipConflicting: true }));
    assert.deepEqual(skipped.blocking, []);
    assert.equal(byName(skipped.vms, 'work').action, 'skip');
    // a verification installs nothing: no conflict
    assert.deepEqual(byName(planRestore(backup(), null, 'alice', sel({ occupied, verifyOnly: true })).vms, 'work').problems, []);
  });

  it('renames avoid host VMs, backup VMs and each other, and stay ≤ 31 characters', () => {
    const long = 'a'.repeat(31);
    const vms: VmSpec[] = [
      { name: 'web', klass: 'StandaloneVM', qid: 3, backup: true },
      { name: 'web-1', klass: 'StandaloneVM', qid: 4, backup: true },
      { name: 'web1', klass: 'StandaloneVM', qid: 7, backup: true },
      { name: long, klass: 'StandaloneVM', qid: 5, backup: true },
    ];
    const h = host([
      { name: 'web', klass: 'AppVM', qid: 3 }, { name: 'web-1', klass: 'AppVM', qid: 4 }, { name: 'web2', klass: 'AppVM', qid: 5 },
      { name: long, klass: 'AppVM', qid: 6 },
    ]);
    const plan = planRestore(parseQubesXml(r4Xml(vms)), h, 'u', sel({ renameConflicting: true }));
    assert.deepEqual(plan.blocking, []);
    const names = plan.vms.map((v) => v.newName).sort();
    // as Qubes: the name cut to 29 characters if free, else a number appended (web1 is the
    // backup's own, web2 the host's)
    assert.deepEqual(names, [`${'a'.repeat(29)}`, 'web-11', 'web1', 'web3']);
    assert.ok(names.every((n) => n.length <= 31));
    assert.equal(findFreeName('x', () => true), null);
    assert.equal(findFreeName('b'.repeat(31), (n) => !n.endsWith('10')), `${'b'.repeat(29)}10`);
    assert.equal(findFreeName('work', (n) => n !== 'work2'), 'work2');
  });

  it('selective restore: a template in the backup but not selected counts as missing', () => {
    const b = backup();
    const blocked = planRestore(b, null, 'alice', sel({ vms: ['mail'] }));
    assert.deepEqual(byName(blocked.vms, 'mail').problems, ['missing-template']);
    assert.equal(byName(blocked.vms, 'tpl').action, 'skip');
    assert.deepEqual(byName(blocked.vms, 'tpl').problems, ['excluded']);
    assert.equal(blocked.dom0?.action, 'skip'); // not selected
    assert.equal(blocked.blocking.length, 1);
    assert.match(blocked.blocking[0]!, /^mail: template tpl is in the backup but not selected \(select it too\), and is not on the host \(use --ignore-missing.*--skip-broken/);

    const skipped = planRestore(b, null, 'alice', sel({ vms: ['mail'], skipBroken: true }));
    assert.deepEqual(skipped.blocking, []);
    assert.equal(byName(skipped.vms, 'mail').action, 'skip');
    assert.equal(skipped.totalBytes, 0);

    const withDefault = host([{ name: 'deb', klass: 'TemplateVM', qid: 2 }], { default_template: 'deb' });
    const ignored = planRestore(b, withDefault, 'alice', sel({ vms: ['mail'], ignoreMissing: true }));
    assert.deepEqual(ignored.blocking, []);
    assert.equal(byName(ignored.vms, 'mail').template, 'deb');
    assert.match(byName(ignored.vms, 'mail').notes.join('\n'), /template deb \(host default_template\) used instead of missing tpl/);

    // a host without default_template, as Qubes: still missing (a template that does not exist
    // would make qubesd refuse the whole qubes.xml); --skip-broken skips it
    const bare = host([{ name: 'deb', klass: 'TemplateVM', qid: 2 }]);
    const noDefault = planRestore(b, bare, 'alice', sel({ vms: ['mail'], ignoreMissing: true }));
    assert.deepEqual(byName(noDefault.vms, 'mail').problems, ['missing-template']);
    assert.match(noDefault.blocking.join('\n'), /^mail: template tpl is in the backup but not selected \(select it too\), and is not on the host, and the host has no default_template to use instead \(set the host's default with qubes-prefs, or use --skip-broken to skip this VM\)$/m);
    const noDefaultSkip = planRestore(b, bare, 'alice', sel({ vms: ['mail'], ignoreMissing: true, skipBroken: true }));
    assert.deepEqual(noDefaultSkip.blocking, []);
    assert.equal(byName(noDefaultSkip.vms, 'mail').action, 'skip');

    // a new qubes root (no qubes.xml: a collection no qubesd loads yet): the reference is kept
    const fresh = planRestore(b, null, 'alice', sel({ vms: ['mail'], ignoreMissing: true }));
    assert.deepEqual(fresh.blocking, []);
    const mail = byName(fresh.vms, 'mail');
    assert.equal(mail.action, 'restore');
    assert.equal(mail.template, 'tpl');
    assert.match(mail.notes.join('\n'), /WARNING: .*the new collection has no default_template: the reference to tpl is kept/);

    // selecting the template too resolves it
    assert.deepEqual(planRestore(b, null, 'alice', sel({ vms: ['mail', 'tpl'] })).blocking, []);
    // ... and so does having it on the host
    assert.deepEqual(planRestore(b, host([{ name: 'tpl', klass: 'TemplateVM', qid: 9 }]), 'alice', sel({ vms: ['mail'] })).blocking, []);
  });

  it('a host VM of the wrong class does not count as the template', () => {
    const h = host([{ name: 'tpl', klass: 'AppVM', qid: 9, template: 'x' }]);
    const plan = planRestore(backup(), h, 'alice', sel({ vms: ['mail'] }));
    assert.match(plan.blocking.join('\n'), /template tpl exists on the host but cannot serve as a template/);
  });

  it('missing netVM: blocking, --skip-broken cascades, --ignore-missing uses the host default (none when the host has none)', () => {
    const b = backup();
    const h = host([{ name: 'tpl', klass: 'TemplateVM', qid: 2 }]);
    const blocked = planRestore(b, h, 'alice', sel({ vms: ['work'] }));
    assert.deepEqual(byName(blocked.vms, 'work').problems, ['missing-netvm']);
    assert.match(blocked.blocking.join('\n'), /work: netVM net is in the backup but not selected \(select it too\)/);

    // net2's template is missing: with --skip-broken net2 is skipped, then app (whose netVM it is) too
    const chain: VmSpec[] = [
      { name: 'app', klass: 'AppVM', qid: 3, template: 'tpl', netvm: 'net2', backup: true },
      { name: 'net2', klass: 'AppVM', qid: 4, template: 'gone', netvm: null, providesNetwork: true, backup: true },
      { name: 'other', klass: 'AppVM', qid: 5, template: 'tpl', backup: true },
    ];
    const cascade = planRestore(parseQubesXml(r4Xml(chain)), h, 'alice', sel({ skipBroken: true }));
    assert.deepEqual(cascade.blocking, []);
    assert.equal(byName(cascade.vms, 'net2').action, 'skip');
    assert.deepEqual(byName(cascade.vms, 'app').problems, ['missing-netvm']);
    assert.equal(byName(cascade.vms, 'app').action, 'skip');
    assert.equal(byName(cascade.vms, 'other').action, 'restore');
    assert.match(formatRestoreTable(cascade), /app .*skip: netVM net2 missing/);
    // without --skip-broken only net2 is reported: app's netVM is in the backup and selected
    const direct = planRestore(parseQubesXml(r4Xml(chain)), h, 'alice', sel());
    assert.deepEqual(direct.vms.filter((v) => v.problems.length > 0).map((v) => v.backupName), ['net2']);

    const withNet = host([{ name: 'tpl', klass: 'TemplateVM', qid: 2 }, { name: 'sys-fw', klass: 'AppVM', qid: 3, template: 'tpl', providesNetwork: true }], { default_netvm: 'sys-fw' });
    const def = planRestore(b, withNet, 'alice', sel({ vms: ['work'], ignoreMissing: true }));
    assert.deepEqual(def.blocking, []);
    assert.equal(byName(def.vms, 'work').netvm, undefined);
    assert.match(byName(def.vms, 'work').notes.join('\n'), /host's default netVM \(sys-fw\)/);

    // no default_netvm: the default all the same (none now), never a reference to a VM that does not exist
    const keep = planRestore(b, h, 'alice', sel({ vms: ['work'], ignoreMissing: true }));
    assert.deepEqual(keep.blocking, []);
    assert.equal(byName(keep.vms, 'work').netvm, undefined);
    assert.match(byName(keep.vms, 'work').notes.join('\n'), /WARNING: .*no default_netvm: restored without network/);

    // a host VM named like the netvm that does not provide network does not count
    const noNet = host([{ name: 'tpl', klass: 'TemplateVM', qid: 2 }, { name: 'net', klass: 'AppVM', qid: 3, template: 'tpl' }]);
    assert.match(planRestore(b, noNet, 'alice', sel({ vms: ['work'] })).blocking.join('\n'), /netVM net exists on the host but cannot serve/);
  });

  it('dom0 home: user mismatch blocks unless ignored or skipped', () => {
    const b = backup();
    const mismatch = planRestore(b, null, 'bob', sel());
    assert.deepEqual(mismatch.dom0?.problems, ['username-mismatch']);
    assert.match(mismatch.blocking.join('\n'), /home of user 'alice', but this host's user is 'bob'.*--ignore-username-mismatch/);
    assert.deepEqual(planRestore(b, null, 'bob', sel({ ignoreUsernameMismatch: true })).blocking, []);
    const skipped = planRestore(b, null, 'bob', sel({ skipDom0Home: true }));
    assert.deepEqual(skipped.blocking, []);
    assert.equal(skipped.dom0?.action, 'skip');
    assert.equal(skipped.totalBytes, 18000);
    assert.equal(planRestore(b, null, 'alice', sel({ exclude: ['dom0'] })).dom0?.action, 'skip');
    assert.equal(planRestore(b, null, 'alice', sel({ vms: ['dom0'] })).dom0?.action, 'restore');
    assert.equal(planRestore(parseQubesXml(r4Xml(BACKUP_VMS)), null, 'alice', sel()).dom0, undefined);
  });

  it('unknown names and -x exclusion', () => {
    const plan = planRestore(backup(), null, 'alice', sel({ vms: ['tpl', 'nope', 'fedora-41'] }));
    assert.deepEqual(plan.unknownNames, ['nope', 'fedora-41']);
    assert.match(plan.blocking.join('\n'), /nope: no such VM in the backup/);
    assert.match(plan.blocking.join('\n'), /fedora-41: listed in the backup's qubes.xml, but its data is not in the backup/);
    const x = planRestore(backup(), null, 'alice', sel({ exclude: ['work'] }));
    assert.deepEqual(x.blocking, []);
    assert.equal(byName(x.vms, 'work').action, 'skip');
    assert.match(formatRestoreTable(x), /work .*skip: not selected/);
  });

  it('verify-only: host conflicts, missing dependencies and user mismatch are not problems', () => {
    const h = host([{ name: 'work', klass: 'AppVM', qid: 3 }]);
    const plan = planRestore(backup(), h, 'bob', sel({ verifyOnly: true, vms: ['work', 'dom0'] }));
    assert.deepEqual(plan.blocking, []);
    assert.equal(byName(plan.vms, 'work').action, 'restore');
    assert.equal(byName(plan.vms, 'work').newName, 'work');
    assert.equal(plan.mode, 'verify');
    assert.match(formatRestoreTable(plan), /work .* verify$/m);
  });

  it('rejects unsafe backup paths and dom0 users from qubes.xml', () => {
    const vms: VmSpec[] = [
      { name: 'a', klass: 'StandaloneVM', qid: 3, backup: true, path: '../../etc/' },
      { name: 'b', klass: 'StandaloneVM', qid: 4, backup: true, path: 'vm4/' },
      { name: 'c', klass: 'StandaloneVM', qid: 5, backup: true, path: 'vm4' },
    ];
    const plan = planRestore(parseQubesXml(r4Xml(vms, { dom0Home: { user: '..', size: 1 } })), null, '..', sel());
    assert.equal(byName(plan.vms, 'a').action, 'skip');
    assert.equal(byName(plan.vms, 'b').action, 'restore');
    assert.equal(byName(plan.vms, 'c').action, 'skip');
    assert.equal(plan.dom0?.action, 'skip');
    assert.equal(plan.blocking.length, 3);
    assert.match(plan.blocking.join('\n'), /a: unsafe or duplicate backup path "..\/..\/etc\/"/);
  });

  it('plans an R2/R3 qubes.xml (real dirs as subdirs, qid references)', () => {
    const b = parseQubesXml(r3BackupXml());
    const h = host([{ name: 'debian-12', klass: 'TemplateVM', qid: 2 }], { default_template: 'debian-12' });
    const plan = planRestore(b, h, 'user', sel({ ignoreMissing: true }));
    assert.deepEqual(plan.blocking, []);
    assert.deepEqual(plan.vms.map((v) => [v.backupName, v.subdir]), [
      ['tplclone', 'vm-templates/tplclone/'], ['mynet', 'servicevms/mynet/'], ['myproxy', 'servicevms/myproxy/'],
      ['work', 'appvms/work/'], ['custom', 'appvms/custom/'],
    ]);
    assert.equal(byName(plan.vms, 'work').template, 'debian-12');
    assert.equal(byName(plan.vms, 'myproxy').template, 'tplclone');
    assert.equal(byName(plan.vms, 'myproxy').netvm, 'mynet');
    assert.equal(byName(plan.vms, 'custom').netvm, 'myproxy');
    assert.equal(plan.dom0?.user, 'user');
    // custom's DispVMs used its netVM myproxy: the table says what happens instead of disp-myproxy
    const table = formatRestoreTable(plan);
    assert.match(table, /custom: default_dispvm set to none: its R2\/R3 DispVMs had netVM myproxy, for which Qubes' restore creates the DispVM template disp-myproxy; not created here/);
    assert.doesNotMatch(table, /work: default_dispvm/);
    const strict = planRestore(b, h, 'user', sel());
    assert.deepEqual(strict.vms.filter((v) => v.problems.length > 0).map((v) => v.backupName).sort(), ['mynet', 'work']);
  });
});

describe('planRestore agrees with the Qubes restore plan of the fixtures', () => {
  // The oracle host holds dom0, default-template [TemplateVM] and default-dvm; --ignore-missing.
  const oracleHost = (): QubesXml =>
    host(
      [{ name: 'default-template', klass: 'TemplateVM', qid: 1 }, { name: 'default-dvm', klass: 'AppVM', qid: 2, template: 'default-template', dispvmTemplate: true }],
      { default_template: 'default-template', default_dispvm: 'default-dvm' },
    );
  for (const fixture of oracleFixtures()) {
    it(fixture, (t) => {
      if (!haveScrypt() && fixture.includes('v4')) return t.skip('scrypt CLI not installed');
      const b = parseQubesXml(fixtureQubesXml(fixture));
      const plan = planRestore(b, oracleHost(), 'user', sel({ ignoreMissing: true }));
      assert.deepEqual(plan.blocking, []);
      const info = oracleRestoreInfo(fixture);
      const expectVms = Object.entries(info).filter(([n, v]) => n !== 'dom0' && v.subdir !== null);
      assert.deepEqual(plan.vms.map((v) => v.backupName).sort(), expectVms.map(([n]) => n).sort());
      for (const [name, e] of expectVms) {
        const p = byName(plan.vms, name);
        assert.equal(p.action, 'restore', name);
        assert.equal(p.subdir, `${e.subdir}/`, name);
        assert.equal(p.sizeBytes, e.size, name);
        assert.equal(p.template ?? null, e.template, name);
      }
      assert.equal(plan.dom0?.user, info['dom0']?.subdir?.split('/')[1]);
      assert.equal(plan.dom0?.sizeBytes, info['dom0']?.size);
      // install order: every template before every non-template
      const firstNonTemplate = plan.vms.findIndex((v) => v.domain.klass !== 'TemplateVM');
      assert.ok(plan.vms.slice(firstNonTemplate).every((v) => v.domain.klass !== 'TemplateVM'));
    });
  }
});
