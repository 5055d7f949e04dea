// Restore side: emptyR4Host and addRestoredDomain for R2/R3 and R4 source VMs (qid allocation,
// renames, labels by name, volumes), and the refusal of an R2/R3 host. Hostile input: restore-hostile.test.ts.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  addRestoredDomain,
  emptyR4Host,
  findDomain,
  legacyDispvmTemplates,
  markForRollback,
  parseQubesXml,
  previewRestoredDomain,
  restoreWarningsOf,
  serializeQubesXml,
  validateHostCollection,
  type DomainInfo,
  type QubesXml,
} from '../../../src/main/qubes-xml/index.js';

const R3 = `<QubesVmCollection default_template="1" default_netvm="3" default_fw_netvm="2" updatevm="3" clockvm="2" default_kernel="4.4.14-11">
  <QubesAdminVm qid="0" name="dom0" label="black" backup_content="True" backup_path="dom0-home/user" backup_size="20480"/>
  <QubesTemplateVm qid="1" name="fedora-23" label="black" template_qid="none" installed_by_rpm="True"/>
  <QubesNetVm qid="2" name="sys-net" label="red" template_qid="1" pcidevs="['00:19.0']" services="{'ntpd': False}"/>
  <QubesProxyVm qid="3" name="sys-firewall" label="green" template_qid="1" uses_default_netvm="False" netvm_qid="2"/>
  <QubesTemplateVm qid="11" name="tplclone" label="black" template_qid="none" memory="1000" uses_default_kernel="False" kernel="4.1" backup_content="True" backup_path="vm11" backup_size="100" dir_path="/var/lib/qubes/vm-templates/tplclone" conf_file="tplclone.conf"/>
  <QubesAppVm qid="6" name="custom" label="purple" template_qid="11" uses_default_netvm="False" netvm_qid="none" services="{'cups': True, 'qubes-update-check': False}" backup_content="True" backup_path="vm6" backup_size="200" dir_path="/var/lib/qubes/appvms/custom" conf_file="custom.conf"/>
  <QubesHVm qid="8" name="winhvm" label="orange" template_qid="none" uses_default_netvm="False" netvm_qid="3" backup_content="True" backup_path="vm8" backup_size="300"/>
  <QubesAppVm qid="5" name="work" label="green" template_qid="1" uses_default_netvm="True" backup_content="True" backup_path="vm5" backup_size="400"/>
</QubesVmCollection>
`;

const R4 = `<qubes>
  <labels>
    <label color="0xcc0000" id="label-1">red</label>
    <label color="0xff2400" id="label-9">scarlet</label>
    <label color="0x75507b" id="label-7">purple</label>
  </labels>
  <pools>
    <pool driver="lvm_thin" name="lvm" thin_pool="pool00" volume_group="qubes_dom0"/>
    <pool dir_path="/var/lib/qubes" driver="file" name="varlibqubes"/>
    <pool driver="linux-kernel" name="linux-kernel"/>
  </pools>
  <properties/>
  <domains>
    <domain id="domain-0" class="AdminVM"><properties><property name="label">label-1</property></properties></domain>
    <domain id="domain-21" class="AppVM">
      <properties>
        <property name="label">label-9</property>
        <property name="name">mail</property>
        <property name="qid">21</property>
        <property name="uuid">11111111-2222-3333-4444-555555555555</property>
        <property name="template">fedora-38</property>
        <property name="netvm">sys-vpn</property>
        <property name="default_dispvm">dvm-gone</property>
        <property name="installed_by_rpm">True</property>
        <property name="memory">700</property>
      </properties>
      <features>
        <feature name="backup-content">1</feature>
        <feature name="backup-path">vm21/</feature>
        <feature name="backup-size">2097152</feature>
        <feature name="service.cups">1</feature>
      </features>
      <devices class="usb">
        <device backend-domain="sys-usb" id="2-1"><option name="read-only">yes</option></device>
      </devices>
      <tags>
        <tag name="mine"/>
      </tags>
      <volume-config>
        <volume name="root" pool="lvm" revisions_to_keep="0" size="21474836480" snap_on_start="True" source="qubes_dom0/vm-fedora-38-root" vid="qubes_dom0/vm-mail-root"/>
        <volume name="private" pool="varlibqubes" revisions_to_keep="2" rw="True" save_on_stop="True" size="4294967296" vid="appvms/d8test2/private"/>
        <volume name="volatile" pool="lvm" rw="True" size="10737418240" vid="qubes_dom0/vm-mail-volatile"/>
        <volume name="kernel" pool="linux-kernel" vid="6.1.1"/>
      </volume-config>
    </domain>
    <domain id="domain-22" class="AppVM">
      <properties>
        <property name="label">label-7</property>
        <property name="name">sys-vpn</property>
        <property name="qid">22</property>
        <property name="provides_network">True</property>
        <property name="netvm"></property>
      </properties>
    </domain>
  </domains>
</qubes>
`;

const vol = (d: DomainInfo, name: string) => d.volumes.find((v) => v.name === name);
const prop = (d: DomainInfo) => d.properties;

describe('emptyR4Host', () => {
  test('dom0 and the standard labels', () => {
    const h = emptyR4Host();
    assert.equal(h.schema, 'r4');
    assert.deepEqual(h.domains.map((d) => [d.qid, d.name, d.klass, d.label]), [[0, 'dom0', 'AdminVM', 'black']]);
    assert.deepEqual(
      h.labels.map((l) => `${l.id}=${l.name}/${l.color}`),
      ['label-1=red/0xcc0000', 'label-2=orange/0xf57900', 'label-3=yellow/0xedd400', 'label-4=green/0x73d216', 'label-5=gray/0x555753', 'label-6=blue/0x3465a4', 'label-7=purple/0x75507b', 'label-8=black/0x000000'],
    );
    assert.notEqual(emptyR4Host(), h);
  });
});

describe('R2/R3 DispVM netVM without its disp-<netvm> template on the host (issue 10)', () => {
  test('default_dispvm is set to none (not the host default, which may have other network) and the reason is noted', () => {
    const src = parseQubesXml(R3);
    const host = emptyR4Host();
    const renames = new Map([['tplclone', 'tplclone'], ['custom', 'custom']]);
    addRestoredDomain(host, findDomain(src, 'tplclone')!, { newName: 'tplclone', renames });
    // custom had netvm none, so its DispVMs had none: Qubes' restore would create disp-no-netvm
    const custom = addRestoredDomain(host, findDomain(src, 'custom')!, { newName: 'custom', renames });
    assert.equal(custom.defaultDispvm, null);
    assert.match(serializeQubesXml(host).toString(), /<property name="default_dispvm"\/>/);
    assert.match(restoreWarningsOf(host, 'custom')!.join('\n'), /default_dispvm set to none: its R2\/R3 DispVMs had no netVM, for which Qubes' restore creates the DispVM template disp-no-netvm; not created here/);
    validateHostCollection(host);
    // work used the default netVM: no disp-* template, the host default applies as before
    const work = addRestoredDomain(host, findDomain(src, 'work')!, { newName: 'work', renames: new Map([['work', 'work']]), hostDefaults: { template: 'tplclone' } });
    assert.equal(work.defaultDispvm, undefined);
  });
});

describe('addRestoredDomain, R2/R3 source into an R4 host', () => {
  const src = parseQubesXml(R3);
  const host = emptyR4Host();
  const renames = new Map([['tplclone', 'tplclone'], ['custom', 'custom-1'], ['winhvm', 'winhvm'], ['work', 'work'], ['disp-no-netvm', 'disp-no-netvm']]);
  const tpl = addRestoredDomain(host, findDomain(src, 'tplclone')!, { newName: 'tplclone', renames });
  // the synthetic DVM template has no template: the host default is used, as Qubes does
  const disp = addRestoredDomain(host, legacyDispvmTemplates(src).find((d) => d.name === 'disp-no-netvm')!, { newName: 'disp-no-netvm', renames, hostDefaults: { template: 'tplclone' } });
  const custom = addRestoredDomain(host, findDomain(src, 'custom')!, { newName: 'custom-1', renames });
  const win = addRestoredDomain(host, findDomain(src, 'winhvm')!, { newName: 'winhvm', renames });

  test('qids, names, classes, labels', () => {
    assert.deepEqual(
      [tpl, disp, custom, win].map((d) => [d.qid, d.name, d.klass, d.label, d.properties['label']]),
      [
        [1, 'tplclone', 'TemplateVM', 'black', 'label-8'],
        [2, 'disp-no-netvm', 'AppVM', 'red', 'label-1'],
        [3, 'custom-1', 'AppVM', 'purple', 'label-7'],
        [4, 'winhvm', 'StandaloneVM', 'orange', 'label-2'],
      ],
    );
    assert.equal(findDomain(host, 'custom-1'), custom);
    assert.equal(host.domains.length, 5);
    assert.match(prop(custom)['uuid'] ?? '', /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
  });

  test('converted properties, references and features', () => {
    assert.deepEqual(
      { ...prop(tpl), uuid: '' },
      { label: 'label-8', name: 'tplclone', qid: '1', uuid: '', memory: '1000', kernel: '4.1' },
    );
    assert.equal(custom.template, 'tplclone');
    assert.equal(custom.netvm, null);
    assert.equal(custom.defaultDispvm, 'disp-no-netvm');
    assert.deepEqual(custom.features, { cups: '1', 'check-updates': '' });
    assert.equal(custom.backup, undefined);
    assert.equal(disp.properties['template_for_dispvms'], 'True');
    assert.equal(disp.template, 'tplclone');
    assert.equal(disp.netvm, null);
    // winhvm's netvm sys-firewall is neither on the host nor restored: left to the default
    assert.equal(win.netvm, undefined);
    assert.equal(prop(win)['virt_mode'], 'hvm');
    assert.equal(prop(win)['kernel'], '');
    assert.deepEqual(win.features, { 'linux-stubdom': '' });
  });

  test('synthesised volumes', () => {
    assert.deepEqual(
      tpl.volumes.map((v) => [v.name, v.pool, v.vid, v.saveOnStop, v.snapToClone]),
      [
        ['root', 'varlibqubes', 'vm-templates/tplclone/root', true, false],
        ['private', 'varlibqubes', 'vm-templates/tplclone/private', true, false],
        ['volatile', 'varlibqubes', 'vm-templates/tplclone/volatile', false, false],
        ['kernel', 'linux-kernel', '4.1', false, false],
      ],
    );
    assert.deepEqual([vol(custom, 'root')?.snapToClone, vol(custom, 'root')?.saveOnStop], [true, false]);
    assert.equal(vol(custom, 'private')?.vid, 'appvms/custom-1/private');
    assert.equal(vol(custom, 'private')?.saveOnStop, true);
    assert.equal(vol(win, 'root')?.saveOnStop, true);
  });

  test('the host writes and re-reads the same model, and loads as Qubes would', () => {
    const out = serializeQubesXml(host);
    assert.deepEqual(parseQubesXml(out), host);
    assert.deepEqual(validateHostCollection(parseQubesXml(out)), []);
    assert.ok(out.includes(`    <domain id="domain-3" class="AppVM">
      <properties>
        <property name="label">label-7</property>
        <property name="name">custom-1</property>`));
  });

  test('missing template: fails, or uses the host default', () => {
    const h = emptyR4Host();
    assert.throws(() => addRestoredDomain(h, findDomain(src, 'work')!, { newName: 'work', renames: new Map([['work', 'work']]) }), { code: 'ERR_PLAN' });
    addRestoredDomain(h, findDomain(src, 'tplclone')!, { newName: 'tpl2', renames: new Map([['tplclone', 'tpl2']]) });
    const w = addRestoredDomain(h, findDomain(src, 'work')!, { newName: 'work', renames: new Map([['work', 'work']]), hostDefaults: { template: 'tpl2' } });
    assert.equal(w.template, 'tpl2');
    assert.equal(vol(w, 'root')?.snapToClone, true);
  });

  test('refused: dom0, R2/R3 DispVMs, bad or taken names', () => {
    const h = emptyR4Host();
    const r = new Map<string, string>();
    assert.throws(() => addRestoredDomain(h, findDomain(src, 'dom0')!, { newName: 'x', renames: r }), { code: 'ERR_PLAN' });
    const withDisp = parseQubesXml(R3.replace('</QubesVmCollection>', '<QubesDisposableVm qid="9" name="disp9" template_qid="1"/></QubesVmCollection>'));
    assert.throws(() => addRestoredDomain(h, findDomain(withDisp, 'disp9')!, { newName: 'disp9', renames: r }), { code: 'ERR_PLAN' });
    for (const bad of ['dom0', '../x', 'a/b', '', 'x'.repeat(32), 'none']) {
      assert.throws(() => addRestoredDomain(h, findDomain(src, 'winhvm')!, { newName: bad, renames: r }), { code: 'ERR_PLAN' }, bad);
    }
    assert.equal(h.domains.length, 1);
  });
});

/** An empty R4 host plus TemplateVM `fedora-38` (kernel 4.1, restored from the R3 sample). */
function hostWithTemplate(): QubesXml {
  const h = emptyR4Host();
  addRestoredDomain(h, findDomain(parseQubesXml(R3), 'tplclone')!, { newName: 'fedora-38', renames: new Map() });
  return h;
}

describe('addRestoredDomain, R4 source into an R4 host', () => {
  const src = parseQubesXml(R4);
  const host = hostWithTemplate();
  const renames = new Map([['mail', 'mail-2'], ['sys-vpn', 'vpn']]);
  // sys-vpn has no template in this sample: the host default is used
  const vpn = addRestoredDomain(host, findDomain(src, 'sys-vpn')!, { newName: 'vpn', renames, hostDefaults: { template: 'fedora-38' } });
  const mail = addRestoredDomain(host, findDomain(src, 'mail')!, { newName: 'mail-2', renames });

  test('the model after the adds (each reads only its own element) is what a parse of the written host makes', () => {
    assert.deepEqual(parseQubesXml(serializeQubesXml(host)), host);
  });

  test('previewRestoredDomain: what the add would add (but its fresh uuid), the host unchanged; the same refusals', () => {
    const h = hostWithTemplate();
    const before = serializeQubesXml(h);
    const opts = { newName: 'mail-3', renames: new Map([['mail', 'mail-3']]) };
    const preview = previewRestoredDomain(h, findDomain(src, 'mail')!, opts);
    assert.equal(serializeQubesXml(h), before, 'nothing added');
    assert.equal(findDomain(h, 'mail-3'), undefined);
    const added = addRestoredDomain(h, findDomain(src, 'mail')!, opts);
    const noUuid = (d: DomainInfo): unknown => ({ ...d, uuid: undefined, properties: { ...d.properties, uuid: undefined } });
    assert.deepEqual(noUuid(preview), noUuid(added));
    assert.throws(() => previewRestoredDomain(h, findDomain(src, 'mail')!, opts), /already exists/);
    assert.throws(() => previewRestoredDomain(h, findDomain(src, 'mail')!, { ...opts, newName: 'bad name' }), /invalid VM name/);
  });

  test('identity, label by name and references', () => {
    assert.deepEqual([vpn.qid, vpn.name, vpn.label, vpn.netvm, vpn.providesNetwork, vpn.template], [2, 'vpn', 'purple', null, true, 'fedora-38']);
    assert.deepEqual([mail.qid, mail.name, mail.label], [3, 'mail-2', 'red']);
    assert.equal(prop(mail)['qid'], '3');
    assert.notEqual(prop(mail)['uuid'], '11111111-2222-3333-4444-555555555555');
    assert.equal(mail.netvm, 'vpn', 'netvm follows the rename');
    assert.equal(mail.template, 'fedora-38');
    assert.equal(mail.defaultDispvm, null, 'a default_dispvm that is nowhere is set to none (not the host default, which may have another network)');
    assert.equal(prop(mail)['installed_by_rpm'], undefined);
    assert.equal(prop(mail)['memory'], '700');
    assert.deepEqual(validateHostCollection(host), []);
  });

  test('features without backup-* and tags kept; a device of a host VM is not', () => {
    assert.deepEqual(mail.features, { 'service.cups': '1' });
    assert.equal(mail.backup, undefined);
    assert.deepEqual(mail.tags, ['mine']);
    assert.deepEqual(mail.devices, []);
    assert.match(restoreWarningsOf(host, 'mail-2')!.join('\n'), /device "usb:sys-usb:2-1" not restored: devices of dom0 or of VMs already on the host/);
  });

  test('a device whose backend is restored in the same run is kept', () => {
    const h = hostWithTemplate();
    const r = new Map([['mail', 'mail'], ['sys-usb', 'usb']]);
    const usbSrc = parseQubesXml(R4.replace('<property name="name">sys-vpn</property>', '<property name="name">sys-usb</property>'));
    addRestoredDomain(h, findDomain(usbSrc, 'sys-usb')!, { newName: 'usb', renames: r, hostDefaults: { template: 'fedora-38' } });
    const m = addRestoredDomain(h, findDomain(usbSrc, 'mail')!, { newName: 'mail', renames: r });
    assert.deepEqual(m.devices.map((d) => [d.bus, d.backend, d.port, d.options]), [['usb', 'usb', '2-1', { 'read-only': 'yes' }]]);
    assert.deepEqual(validateHostCollection(h), []);
  });

  test('volume-config generated: file pool, own vids, sizes from the backup (a snapshot root: its template\'s), kernel of the template', () => {
    assert.deepEqual(
      mail.volumes.map((v) => [v.name, v.pool, v.vid, v.size, v.saveOnStop, v.snapToClone, v.attrs['rw'], v.attrs['revisions_to_keep']]),
      [
        // the backup says 20 GiB (its template's then); the host's fedora-38 root is 10 GiB
        ['root', 'varlibqubes', 'appvms/mail-2/root', vol(host.domains.find((d) => d.name === 'fedora-38')!, 'root')!.size, false, true, 'True', undefined],
        ['private', 'varlibqubes', 'appvms/mail-2/private', 4294967296, true, false, 'True', undefined],
        ['volatile', 'varlibqubes', 'appvms/mail-2/volatile', 10737418240, false, false, 'True', undefined],
        ['kernel', 'linux-kernel', '4.1', undefined, false, false, undefined, undefined],
      ],
    );
    assert.equal(vol(host.domains.find((d) => d.name === 'fedora-38')!, 'root')!.size, 10737418240);
    assert.equal(vol(vpn, 'private')?.vid, 'appvms/vpn/private');
    // the snapshot source is the template's own root volume on the host
    assert.equal(vol(mail, 'root')?.attrs['source'], 'vm-templates/fedora-38/root');
  });

  test('volume sizes: the restored files first, insane backed-up sizes ignored', () => {
    const h = hostWithTemplate();
    const huge = parseQubesXml(R4.replace('size="4294967296"', 'size="99999999999999999"').replace('size="21474836480"', 'size="0"'));
    const m = addRestoredDomain(h, findDomain(huge, 'mail')!, { newName: 'm', renames: new Map() });
    assert.deepEqual(m.volumes.map((v) => v.size), [10 * 2 ** 30, 2 * 2 ** 30, 10737418240, undefined]);
    const m2 = addRestoredDomain(h, findDomain(huge, 'mail')!, { newName: 'm2', renames: new Map(), volumeSizes: { private: 12345, root: -1 } });
    assert.deepEqual(m2.volumes.map((v) => v.size), [10 * 2 ** 30, 12345, 10737418240, undefined]);
  });

  test('the source document is not modified', () => {
    assert.equal(findDomain(src, 'mail')!.name, 'mail');
    assert.equal(findDomain(src, 'mail')!.backup?.content, true);
  });

  test('lowest free qid', () => {
    const h = parseQubesXml(serializeQubesXml(host).replace('id="domain-2"', 'id="domain-7"').replace('<property name="qid">2</property>', '<property name="qid">7</property>'));
    const opts = { renames: new Map(), hostDefaults: { template: 'fedora-38' } };
    const again = addRestoredDomain(h, findDomain(src, 'sys-vpn')!, { newName: 'vpn2', ...opts });
    assert.equal(again.qid, 2);
    const third = addRestoredDomain(h, findDomain(src, 'sys-vpn')!, { newName: 'vpn3', ...opts });
    assert.equal(third.qid, 4);
  });

  test('netvm fallbacks: a host default that provides network, else the default', () => {
    const h = hostWithTemplate();
    addRestoredDomain(h, findDomain(src, 'sys-vpn')!, { newName: 'fw', renames: new Map(), hostDefaults: { template: 'fedora-38' } });
    const a = addRestoredDomain(h, findDomain(src, 'mail')!, { newName: 'a', renames: new Map(), hostDefaults: { netvm: 'fw' } });
    assert.equal(a.netvm, 'fw');
    const b = addRestoredDomain(h, findDomain(src, 'mail')!, { newName: 'b', renames: new Map() });
    assert.equal(b.netvm, undefined);
    // dom0 does not provide network: not a usable fallback
    const c = addRestoredDomain(h, findDomain(src, 'mail')!, { newName: 'c', renames: new Map(), hostDefaults: { netvm: 'dom0' } });
    assert.equal(c.netvm, undefined);
    assert.deepEqual(validateHostCollection(h), []);
  });

  test('a host whose default pool is LVM: volumes still go to its file pool', () => {
    const h = parseQubesXml(
      serializeQubesXml(hostWithTemplate())
        .replace('<pools>', '<pools><pool driver="lvm_thin" name="lvm" thin_pool="pool00" volume_group="qubes_dom0"/>')
        .replace('<properties/>', '<properties><property name="default_pool">lvm</property></properties>'),
    );
    const s = addRestoredDomain(h, legacyDispvmTemplates(parseQubesXml(R3.replace('uses_default_netvm="False" netvm_qid="none"', 'uses_default_netvm="False" netvm_qid="2"')))[0]!, {
      newName: 'disp-x',
      renames: new Map(),
      hostDefaults: { template: 'fedora-38' },
    });
    assert.equal(vol(s, 'private')?.vid, 'appvms/disp-x/private');
    assert.equal(vol(s, 'private')?.pool, 'varlibqubes');
  });
});

describe('addRestoredDomain into an R2/R3 host', () => {
  test('refused (ERR_UNSUPPORTED), the host unchanged', () => {
    const src = parseQubesXml(R3);
    const host = parseQubesXml(R3.replace(/\n  <QubesTemplateVm qid="11"[^\n]*|\n  <QubesAppVm[^\n]*|\n  <QubesHVm[^\n]*/g, ''));
    const before = serializeQubesXml(host);
    assert.throws(() => addRestoredDomain(host, findDomain(src, 'tplclone')!, { newName: 'tpl-new', renames: new Map() }), { code: 'ERR_UNSUPPORTED' });
    const r4vm = findDomain(parseQubesXml(R4), 'mail')!;
    assert.throws(() => addRestoredDomain(host, r4vm, { newName: 'mail', renames: new Map() }), { code: 'ERR_UNSUPPORTED' });
    assert.equal(serializeQubesXml(host), before);
  });
});

describe('markForRollback (a dry run or a failed install without copying the document)', () => {
  test('after adds, the rollback gives back the very same document and model; earlier domains keep their objects', () => {
    const src = parseQubesXml(R3);
    const host = emptyR4Host(); // no <domains> content yet beyond dom0
    const renames = new Map([['tplclone', 'tplclone'], ['work', 'work']]);
    addRestoredDomain(host, findDomain(src, 'tplclone')!, { newName: 'tplclone', renames });
    const before = serializeQubesXml(host).toString();
    const tpl = findDomain(host, 'tplclone');
    const rollback = markForRollback(host);
    addRestoredDomain(host, findDomain(src, 'work')!, { newName: 'work', renames, hostDefaults: { template: 'tplclone' } });
    assert.ok(findDomain(host, 'work'));
    rollback();
    assert.equal(serializeQubesXml(host).toString(), before);
    assert.equal(findDomain(host, 'work'), undefined);
    assert.equal(restoreWarningsOf(host, 'work'), undefined);
    assert.equal(findDomain(host, 'tplclone'), tpl, 'the same DomainInfo object');
    // adding again after the rollback works (qid, name free again)
    addRestoredDomain(host, findDomain(src, 'work')!, { newName: 'work', renames, hostDefaults: { template: 'tplclone' } });
    validateHostCollection(host);
  });

  test('a <domains> element the add created goes away again', () => {
    const host = parseQubesXml(serializeQubesXml(emptyR4Host()).toString().replace(/\n *<domains>[^]*<\/domains>/, ''));
    assert.doesNotMatch(serializeQubesXml(host).toString(), /<domains>/);
    const before = serializeQubesXml(host).toString();
    const rollback = markForRollback(host);
    const src = parseQubesXml(R3);
    addRestoredDomain(host, findDomain(src, 'tplclone')!, { newName: 'tplclone', renames: new Map([['tplclone', 'tplclone']]) });
    assert.match(serializeQubesXml(host).toString(), /<domains>/);
    rollback();
    assert.equal(serializeQubesXml(host).toString(), before);
  });
});
