// The restore plan refuses, before any data is read, what Qubes would refuse to load: reference
// cycles, a non-template as template, a netVM without network, unknown classes, names no VM can
// have, an R1–R3 host; and it lists what of each VM will not be carried into the host qubes.xml.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseQubesXml, type QubesXml } from '../../../src/main/qubes-xml/index.js';
import { formatRestoreTable, planRestore, type RestorePlan, type RestoreSelection, type VmPlan } from '../../../src/main/restore/plan/restore-plan.js';
import { r3BackupXml, r4Xml, type VmSpec } from './sample-xml.js';

const SEL: RestoreSelection = {
  vms: [], exclude: [], skipDom0Home: false, ignoreUsernameMismatch: false, renameConflicting: false,
  skipConflicting: false, skipBroken: false, ignoreMissing: false, verifyOnly: false,
};
const sel = (o: Partial<RestoreSelection> = {}): RestoreSelection => ({ ...SEL, ...o });
const TPL: VmSpec = { name: 'tpl', klass: 'TemplateVM', qid: 2, backup: true };
const plan = (vms: VmSpec[], o: Partial<RestoreSelection> = {}, host: QubesXml | null = null): RestorePlan => planRestore(parseQubesXml(r4Xml([TPL, ...vms])), host, 'u', sel(o));
const vm = (p: RestorePlan, name: string): VmPlan => p.vms.find((v) => v.backupName === name)!;

describe('planRestore: references Qubes would refuse are plan errors', () => {
  it('a netVM loop: both VMs named, blocking (it used to install nothing and exit 0)', () => {
    const p = plan([
      { name: 'a', klass: 'AppVM', qid: 3, template: 'tpl', netvm: 'b', providesNetwork: true, backup: true },
      { name: 'b', klass: 'AppVM', qid: 4, template: 'tpl', netvm: 'a', providesNetwork: true, backup: true },
      { name: 'c', klass: 'AppVM', qid: 5, template: 'tpl', backup: true },
    ]);
    assert.deepEqual(vm(p, 'a').problems, ['reference-cycle']);
    assert.deepEqual(vm(p, 'b').problems, ['reference-cycle']);
    assert.deepEqual(vm(p, 'c').problems, []);
    assert.equal(p.blocking.length, 2);
    assert.match(p.blocking[0]!, /^[ab]: its template\/netVM\/default_dispvm references form a cycle: (a → b → a|b → a → b): Qubes would refuse this VM \(exclude it with -x [ab], or use --skip-broken/);
    assert.match(formatRestoreTable(p), /a .*BLOCKED: reference cycle/);
    // --skip-broken skips both, the rest is restored
    const s = plan([
      { name: 'a', klass: 'AppVM', qid: 3, template: 'tpl', netvm: 'b', providesNetwork: true, backup: true },
      { name: 'b', klass: 'AppVM', qid: 4, template: 'tpl', netvm: 'a', providesNetwork: true, backup: true },
    ], { skipBroken: true });
    assert.deepEqual(s.blocking, []);
    assert.deepEqual(s.vms.map((v) => [v.backupName, v.action]), [['tpl', 'restore'], ['a', 'skip'], ['b', 'skip']]);
  });

  it('a loop through default_dispvm is no cycle (it is set once both VMs are installed)', () => {
    const p = plan([
      { name: 'dvm', klass: 'AppVM', qid: 3, template: 'tpl', dispvmTemplate: true, netvm: 'fw', backup: true },
      { name: 'fw', klass: 'AppVM', qid: 4, template: 'tpl', providesNetwork: true, defaultDispvm: 'dvm', backup: true },
    ]);
    assert.deepEqual(p.blocking, []);
    assert.deepEqual(vm(p, 'dvm').problems, []);
  });

  it('a disposable template naming itself as default_dispvm is fine', () => {
    const p = plan([{ name: 'dvm', klass: 'AppVM', qid: 3, template: 'tpl', dispvmTemplate: true, defaultDispvm: 'dvm', backup: true }]);
    assert.deepEqual(p.blocking, []);
    assert.deepEqual(vm(p, 'dvm').warnings, []);
  });

  it('its own template or netVM, an AppVM as template, a netVM without network, no template', () => {
    const p = plan([
      { name: 'self-t', klass: 'AppVM', qid: 3, template: 'self-t', backup: true },
      { name: 'self-n', klass: 'AppVM', qid: 4, template: 'tpl', netvm: 'self-n', providesNetwork: true, backup: true },
      { name: 'app', klass: 'AppVM', qid: 5, template: 'tpl', backup: true },
      { name: 'on-app', klass: 'AppVM', qid: 6, template: 'app', backup: true },
      { name: 'on-nonet', klass: 'AppVM', qid: 7, template: 'tpl', netvm: 'app', backup: true },
      { name: 'no-tpl', klass: 'AppVM', qid: 8, backup: true },
      { name: 'disp', klass: 'DispVM', qid: 9, template: 'app', backup: true },
    ]);
    const lines = p.blocking.join('\n');
    assert.match(lines, /self-t: it names itself as its template/);
    assert.match(lines, /self-n: it names itself as its netVM/);
    assert.match(lines, /on-app: template app, restored too, is an AppVM, not a TemplateVM/);
    assert.match(lines, /on-nonet: netVM app, restored too, does not provide network/);
    assert.match(lines, /no-tpl: it has no template \(an AppVM needs one\)/);
    assert.match(lines, /disp: template app, restored too, is an AppVM without template_for_dispvms, not a disposable template/);
    for (const n of ['self-t', 'self-n', 'on-app', 'on-nonet', 'no-tpl', 'disp']) assert.ok(vm(p, n).problems.includes('bad-reference'), n);
    assert.deepEqual(vm(p, 'app').problems, []);
    // --ignore-missing does not make them acceptable
    assert.equal(plan([{ name: 'on-app', klass: 'AppVM', qid: 6, template: 'app', backup: true }, { name: 'app', klass: 'AppVM', qid: 5, template: 'tpl', backup: true }], { ignoreMissing: true }).blocking.length, 1);
  });

  it('reference names no VM can have are refused, and never printed raw', () => {
    const p = plan([{ name: 'x', klass: 'AppVM', qid: 3, template: 'tpl\u009b2J', netvm: '../sys-net', backup: true }]);
    assert.match(p.blocking.join('\n'), /template name "tpl\\u009b2J" is not a valid VM name; netVM name "..\/sys-net" is not a valid VM name/);
    assert.ok(!formatRestoreTable(p).includes('\u009b'));
  });

  it('an unknown class is refused unless excluded', () => {
    const vms: VmSpec[] = [{ name: 'odd', klass: 'RemoteVM', qid: 3, backup: true }, { name: 'ok', klass: 'StandaloneVM', qid: 4, backup: true }];
    const p = plan(vms);
    assert.match(p.blocking.join('\n'), /odd: class "RemoteVM" in the backup's qubes.xml cannot be restored \(exclude it with -x odd\)/);
    assert.equal(vm(p, 'odd').action, 'skip');
    assert.deepEqual(plan(vms, { exclude: ['odd'] }).blocking, []);
  });

  it('an R1–R3 host is refused (ERR_UNSUPPORTED) unless verifying', () => {
    const r3host = parseQubesXml(r3BackupXml());
    assert.throws(() => plan([], {}, r3host), { code: 'ERR_UNSUPPORTED', message: /R1–R3 collection/ });
    assert.deepEqual(plan([], { verifyOnly: true }, r3host).blocking, []);
  });
});

describe('planRestore: what will not be carried is listed before any data is read', () => {
  it('dropped properties, features and devices, and an unusable default_dispvm, in the notes', () => {
    const p = plan([
      { name: 'net', klass: 'AppVM', qid: 3, template: 'tpl', providesNetwork: true, backup: true },
      { name: 'w', klass: 'AppVM', qid: 4, template: 'tpl', netvm: 'net', defaultDispvm: 'net', backup: true, props: [['evil', '1'], ['memory', 'lots'], ['vcpus', '2']] },
    ]);
    assert.deepEqual(p.blocking, []);
    assert.deepEqual(vm(p, 'w').warnings, [
      'property "evil" not restored: not a property Qubes knows for an AppVM',
      'property memory not restored: invalid value "lots"',
      'default_dispvm "net" set to none: an AppVM without template_for_dispvms is no disposable template',
    ]);
    // R4.3's boot mode names a feature of its template: not carried, said as such
    const boot = plan([{ name: 'w', klass: 'AppVM', qid: 4, template: 'tpl', backup: true, props: [['bootmode', 'debug']] }]);
    assert.deepEqual(vm(boot, 'w').warnings, ['property bootmode ("debug") not restored: a boot mode names one of its template\'s boot-mode.* features, which the host\'s template may not have (set it with qvm-prefs)']);
    // one that is neither restored nor on the host: said in the plan, set to none
    const nowhere = plan([{ name: 'w', klass: 'AppVM', qid: 4, template: 'tpl', defaultDispvm: 'gone-dvm', backup: true }]);
    assert.deepEqual(vm(nowhere, 'w').warnings, ['default_dispvm "gone-dvm" set to none: it is neither restored nor on the host']);
    assert.match(formatRestoreTable(p), /Notes:\n {2}w: property "evil" not restored/);
    assert.deepEqual(vm(p, 'net').warnings, []);
    // verify-only lists nothing (nothing is installed)
    assert.deepEqual(vm(plan([{ name: 'w', klass: 'AppVM', qid: 4, template: 'tpl', backup: true, props: [['evil', '1']] }], { verifyOnly: true }), 'w').warnings, []);
  });

  it('a device of a VM restored in the same run is kept; one of dom0 is not', () => {
    const xml = r4Xml([
      TPL,
      { name: 'usb', klass: 'AppVM', qid: 3, template: 'tpl', backup: true },
      { name: 'w', klass: 'AppVM', qid: 4, template: 'tpl', backup: true },
    ]).replace(
      '<features><feature name="backup-content">1</feature><feature name="backup-path">vm4/</feature>',
      '<devices class="usb"><device backend-domain="usb" id="2-1"/></devices><devices class="pci"><device backend-domain="dom0" id="00_14.0"/></devices>' +
        '<features><feature name="backup-content">1</feature><feature name="backup-path">vm4/</feature>',
    );
    const p = planRestore(parseQubesXml(xml), null, 'u', sel());
    assert.deepEqual(vm(p, 'w').warnings.map((w) => w.slice(0, 60)), ['device "pci:dom0:00_14.0" not restored: devices of dom0 or o']);
  });
});
