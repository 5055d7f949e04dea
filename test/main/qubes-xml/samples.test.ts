// Hand-written R4 and R2/R3 samples for the edge cases the fixtures do not cover, and VM names.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  findDomain,
  isValidVmName,
  legacyDispvmTemplates,
  legacyR4Properties,
  parseQubesXml,
  serializeQubesXml,
} from '../../../src/main/qubes-xml/index.js';
import { R2_NO_DOM0, R4_EDGES } from './samples.js';
import { normalisedTree } from './tree-compare.js';

describe('R2/R3 edge cases', () => {
  const doc = parseQubesXml(R2_NO_DOM0);

  test('a missing dom0 is synthesised in the model (not in the XML)', () => {
    const dom0 = findDomain(doc, 'dom0')!;
    assert.equal(dom0.qid, 0);
    assert.equal(dom0.klass, 'AdminVM');
    assert.equal(dom0.label, 'black');
    assert.equal(dom0.includeInBackups, true);
    assert.doesNotMatch(serializeQubesXml(doc), /QubesAdminVm/);
  });

  test('classes, references and converted features', () => {
    assert.deepEqual(
      doc.domains.map((d) => [d.name, d.klass, d.legacyClass ?? '-']),
      [
        ['dom0', 'AdminVM', 'QubesAdminVm'],
        ['fedora-20', 'TemplateVM', 'QubesTemplateVm'],
        ['netvm', 'AppVM', 'QubesNetVm'],
        ['win', 'StandaloneVM', 'QubesHVm'],
        ['wintpl', 'TemplateVM', 'QubesTemplateHVm'],
        ['hvm-app', 'AppVM', 'QubesAppVm'],
        ['disp1', 'DispVM', 'QubesDisposableVm'],
      ],
    );
    const netvm = findDomain(doc, 'netvm')!;
    assert.equal(netvm.providesNetwork, true);
    assert.equal(netvm.netvm, null);
    assert.equal(netvm.template, 'fedora-20');
    assert.deepEqual(netvm.devices.map((d) => [d.bus, d.backend, d.port, d.options]), [
      ['pci', 'dom0', '00_19.0', {}],
      ['pci', 'dom0', '03_00.0', {}],
    ]);
    const win = findDomain(doc, 'win')!;
    assert.equal(win.netvm, undefined, 'a dangling netvm_qid is ignored');
    assert.deepEqual(win.features, { 'linux-stubdom': '', internal: '1', 'service.meminfo-writer': '', "odd'key": 'x' });
    assert.deepEqual(legacyR4Properties(win), { memory: '1024', virt_mode: 'hvm', kernel: '' });
    assert.equal(findDomain(doc, 'fedora-20')!.includeInBackups, false);
    assert.equal(findDomain(doc, 'fedora-20')!.installedByRpm, true);
    assert.deepEqual(findDomain(doc, 'fedora-20')!.features, { qrexec: '1', gui: '1' });
    const app = findDomain(doc, 'hvm-app')!;
    assert.equal(app.template, 'wintpl');
    assert.equal(app.netvm, null, 'uses_default_netvm other than "True" means explicit');
    assert.deepEqual(app.backup, { content: true, path: 'appvms/hvm-app/', size: 4096 });
    assert.deepEqual(legacyR4Properties(app), { mac: '00:16:3E:5E:6C:00', vcpus: '4', kernel: '' });
    assert.equal(findDomain(doc, 'disp1')!.template, 'fedora-20');
    assert.equal(findDomain(doc, 'disp1')!.includeInBackups, false);
    assert.equal(findDomain(doc, 'hvm-app')!.includeInBackups, true);
    assert.equal(findDomain(doc, 'ghost'), undefined);
  });

  test('globals: qids resolved, None is empty', () => {
    assert.equal(doc.globalProperties['default_template'], 'fedora-20');
    assert.equal(doc.globalProperties['default_netvm'], 'netvm');
    assert.equal(doc.globalProperties['clockvm'], '');
    assert.equal(doc.globalProperties['default_kernel'], '3.12');
    assert.deepEqual(doc.labels, []);
  });

  test('synthetic DispVM templates follow the DispVM netvm', () => {
    assert.equal(findDomain(doc, 'wintpl')!.defaultDispvm, 'disp-no-netvm');
    assert.equal(findDomain(doc, 'hvm-app')!.defaultDispvm, 'disp-no-netvm');
    assert.equal(findDomain(doc, 'netvm')!.defaultDispvm, 'disp-no-netvm');
    assert.equal(findDomain(doc, 'win')!.defaultDispvm, undefined);
    const t = legacyDispvmTemplates(doc);
    assert.deepEqual(t.map((d) => [d.name, d.netvm, d.qid, d.properties]), [['disp-no-netvm', null, -1, { template_for_dispvms: 'True' }]]);
  });

  test('round trip', () => {
    const out = serializeQubesXml(doc);
    assert.deepEqual(parseQubesXml(out), doc);
    assert.deepEqual(normalisedTree(out), normalisedTree(R2_NO_DOM0));
  });
});

describe('R4 edge cases', () => {
  const doc = parseQubesXml(R4_EDGES);

  test('model', () => {
    const dom0 = findDomain(doc, 'dom0')!;
    assert.equal(dom0.qid, 0);
    assert.equal(dom0.label, undefined);
    const v = findDomain(doc, 'nolabel')!;
    assert.equal(v.qid, 7, 'qid from the id attribute');
    assert.equal(v.label, undefined);
    assert.equal(v.template, null);
    assert.equal(v.defaultDispvm, null);
    assert.equal(v.netvm, undefined);
    assert.equal(v.includeInBackups, false);
    assert.equal(v.installedByRpm, true);
    assert.deepEqual(v.backup, { content: false, path: 'vm7/' });
    assert.deepEqual(
      v.volumes.map((x) => [x.name, x.pool, x.vid, x.saveOnStop, x.snapToClone, x.size]),
      [
        ['private', 'lvm', 'qubes_dom0/vm-nolabel-private', true, false, 2147483648],
        ['root', 'lvm', 'qubes_dom0/vm-nolabel-root', false, true, undefined],
      ],
    );
    assert.equal(findDomain(doc, 'bylabelname')!.label, 'green');
    assert.equal(doc.globalProperties['default_netvm'], '');
  });

  test('round trip keeps the comment and the content', () => {
    const out = serializeQubesXml(doc);
    assert.match(out, /<!-- hand-written -->/);
    assert.deepEqual(parseQubesXml(out), doc);
    assert.deepEqual(normalisedTree(out), normalisedTree(R4_EDGES));
    // unchanged parts keep their text exactly
    assert.ok(out.includes('    <domain id="domain-8" class="AppVM">\n      <properties>\n        <property name="name">bylabelname</property>'));
  });
});

describe('isValidVmName', () => {
  test('accepts Qubes names', () => {
    for (const n of ['work', 'a', 'sys-net', 'fedora-38-xfce', 'A_b-9', 'x'.repeat(31), 'dom0']) assert.equal(isValidVmName(n), true, n);
  });
  test('rejects invalid names', () => {
    for (const n of ['', 'x'.repeat(32), '1abc', '-a', '_a', '.a', 'a b', 'a/b', '../x', 'a\u00e9', 'none', 'default', 'Domain-0', 'sys-dm', 'a\n', 'dom0/', 'vm.dot']) {
      assert.equal(isValidVmName(n), false, JSON.stringify(n));
    }
  });
  test('allowDot: the R1-R3 rule', () => {
    assert.equal(isValidVmName('vm.dot', { allowDot: true }), true);
    assert.equal(isValidVmName('.vm', { allowDot: true }), false);
    assert.equal(isValidVmName('vm-dm', { allowDot: true }), false);
  });
});
