// Hostile backups (authenticated, so parsed and planned like any other) must not put their own XML
// into the host qubes.xml: each case builds the backup's qubes.xml in code, adds its VM to a host
// holding a victim VM, and checks that the host document carries none of the hostile content and
// still loads as Qubes R4 would (validateHostCollection).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  addRestoredDomain,
  emptyR4Host,
  EXTRAS_LIMITS,
  findDomain,
  parseQubesXml,
  restoreWarningsOf,
  serializeQubesXml,
  validateHostCollection,
  type DomainInfo,
  type QubesXml,
} from '../../../src/main/qubes-xml/index.js';
import { oracleHostXml } from './samples.js';

const prop = (n: string, v: string) => `<property name="${n}">${v}</property>`;

/** The host: dom0, default-template, default-dvm, sys-firewall (network) and the victim AppVM `victim`. */
function host(): QubesXml {
  const victim =
    `<domain id="domain-3" class="AppVM"><properties>${prop('label', 'label-1')}${prop('name', 'victim')}${prop('qid', '3')}${prop('template', 'default-template')}</properties>` +
    `<features/><tags/><volume-config><volume name="private" pool="varlibqubes" rw="True" save_on_stop="True" size="2147483648" vid="appvms/victim/private"/></volume-config></domain>` +
    `<domain id="domain-4" class="AppVM"><properties>${prop('label', 'label-1')}${prop('name', 'sys-firewall')}${prop('qid', '4')}${prop('template', 'default-template')}${prop('provides_network', 'True')}</properties></domain>`;
  const doc = parseQubesXml(oracleHostXml(serializeQubesXml(emptyR4Host())).replace('</domains>', `${victim}</domains>`));
  assert.deepEqual(validateHostCollection(doc), []);
  return doc;
}

/** A backup qubes.xml holding `domains` (raw XML) besides dom0. */
function backup(domains: string): QubesXml {
  return parseQubesXml(
    `<qubes><labels><label id="label-1" color="0xcc0000">red</label><label id="label-3" color="0xedd400">yellow</label></labels>` +
      `<pools><pool name="evil" driver="file" dir_path="/etc"/><pool name="varlibqubes" driver="file" dir_path="/var/lib/qubes"/></pools><properties/>` +
      `<domains><domain id="domain-0" class="AdminVM"><properties>${prop('label', 'label-1')}</properties></domain>${domains}</domains></qubes>`,
  );
}

/** An AppVM element of the backup with extra XML inside `<domain>` and extra properties. */
const appvm = (name: string, inside = '', props = '', klass = 'AppVM') =>
  `<domain id="domain-9" class="${klass}"><properties>${prop('label', 'label-3')}${prop('name', name)}${prop('qid', '9')}${klass === 'AppVM' ? prop('template', 'default-template') : ''}${props}</properties>` +
  `<features><feature name="backup-content">1</feature><feature name="backup-path">vm9/</feature><feature name="backup-size">1024</feature></features>${inside}</domain>`;

/** Add `name` of backup `b` to host `h` (renames: identity for `name`), then check the host. */
function restoreInto(h: QubesXml, b: QubesXml, name: string, extra: Partial<Parameters<typeof addRestoredDomain>[2]> = {}): { d: DomainInfo; xml: string; element: string } {
  const d = addRestoredDomain(h, findDomain(b, name)!, { newName: name, renames: new Map([[name, name]]), ...extra });
  const xml = serializeQubesXml(h);
  const reread = parseQubesXml(xml);
  assert.deepEqual(validateHostCollection(reread), []);
  assert.equal(findDomain(reread, 'victim')!.volumes[0]!.vid, 'appvms/victim/private');
  const start = xml.indexOf(`<property name="name">${name}</property>`);
  const element = xml.slice(xml.lastIndexOf('<domain ', start), xml.indexOf('</domain>', start));
  return { d, xml, element };
}

describe('hostile volume-config is never carried', () => {
  test('a source or vid naming another VM, ../ in names, a foreign pool: regenerated', () => {
    const b = backup(appvm('evil', `<volume-config>
      <volume name="private" pool="evil" rw="True" save_on_stop="True" size="2147483648" vid="appvms/victim/private" source="appvms/victim/private"/>
      <volume name="root" pool="varlibqubes" snap_on_start="True" source="appvms/victim/private" vid="../../../etc/shadow"/>
      <volume name="../../victim/private" pool="varlibqubes" rw="True" save_on_stop="True" vid="appvms/evil/../victim/private"/>
      <volume name="kernel" pool="linux-kernel" vid="../../../boot"/>
    </volume-config>`));
    const h = host();
    const { d, element } = restoreInto(h, b, 'evil');
    assert.deepEqual(
      d.volumes.map((v) => [v.name, v.pool, v.vid, v.attrs['source']]),
      [
        ['root', 'varlibqubes', 'appvms/evil/root', undefined],
        ['private', 'varlibqubes', 'appvms/evil/private', undefined],
        ['volatile', 'varlibqubes', 'appvms/evil/volatile', undefined],
      ],
    );
    for (const bad of ['victim', '..', 'evil"', 'shadow', 'boot']) assert.ok(!element.includes(bad), `${bad} in ${element}`);
  });

  test('snapshot source: only the VM\'s own template volume, when it is in the file pool', () => {
    const h = host();
    const tpl = backup(`<domain id="domain-5" class="TemplateVM"><properties>${prop('label', 'label-1')}${prop('name', 'tpl')}${prop('qid', '5')}</properties></domain>`);
    addRestoredDomain(h, findDomain(tpl, 'tpl')!, { newName: 'tpl', renames: new Map() });
    const b = backup(appvm('evil', '<volume-config><volume name="root" pool="varlibqubes" snap_on_start="True" source="appvms/victim/private" vid="appvms/evil/root"/></volume-config>', '').replace(prop('template', 'default-template'), prop('template', 'tpl')));
    const { d } = restoreInto(h, b, 'evil');
    assert.equal(d.volumes.find((v) => v.name === 'root')!.attrs['source'], 'vm-templates/tpl/root');
  });
});

describe('hostile properties are never carried', () => {
  test('a second <properties> section and a ref attribute: one section, our qid and name', () => {
    const second = `<properties>${prop('qid', '0')}${prop('name', 'victim')}${prop('netvm', 'victim')}</properties>`;
    const b = backup(appvm('evil', second, `<property name="template" ref="victim">default-template</property>${prop('qid', '0')}`));
    assert.equal(findDomain(b, 'evil')!.properties['qid'], '0');
    const h = host();
    const { d, element } = restoreInto(h, b, 'evil');
    assert.equal(element.split('<properties>').length, 2, element);
    assert.ok(!element.includes('ref='), element);
    assert.equal(d.qid, 5);
    assert.equal(d.properties['qid'], '5');
    assert.equal(d.template, 'default-template');
    assert.equal(d.netvm, undefined);
  });

  test('unknown properties, invalid values and host references: dropped, each named in a warning', () => {
    const props =
      prop('evil_prop', 'x') + prop('memory', '-1') + prop('vcpus', '4') + prop('kernel', '../../etc') + prop('kernelopts', 'a\u009b31mb\tc') +
      prop('mac', '00:16:3e:zz:00:01') + prop('virt_mode', 'xen') + prop('guivm', 'victim') + prop('audiovm', 'victim') +
      prop('management_dispvm', 'victim') + prop('installed_by_rpm', 'True') + prop('updateable', 'True') + prop('maxmem', '4000') +
      prop('template_for_dispvms', 'True') + prop('default_user', 'user;rm') + prop('ip', '10.137.0.300') + prop('debug', 'maybe');
    const h = host();
    const { d, element } = restoreInto(h, backup(appvm('evil', '', props)), 'evil');
    assert.deepEqual(
      Object.fromEntries(Object.entries(d.properties).filter(([k]) => !['uuid'].includes(k))),
      { label: 'label-3', name: 'evil', qid: '5', vcpus: '4', maxmem: '4000', template_for_dispvms: 'True', template: 'default-template' },
    );
    const w = restoreWarningsOf(h, 'evil')!.join('\n');
    for (const name of ['evil_prop', 'memory', 'kernel', 'kernelopts', 'mac', 'virt_mode', 'guivm', 'audiovm', 'management_dispvm', 'updateable', 'default_user', 'ip', 'debug']) {
      assert.match(w, new RegExp(`property "?${name}"? `), name);
    }
    assert.ok(!w.includes('\u009b') && !w.includes('\t'), 'control characters are escaped in warnings');
    assert.ok(!element.includes('victim') && !element.includes('../'), element);
    // the kernel volume is the host default's, not the backup's
    assert.equal(d.volumes.find((v) => v.name === 'kernel'), undefined);
  });

  test('a property allowed on another class only is dropped (auto_cleanup on an AppVM)', () => {
    const h = host();
    const { d } = restoreInto(h, backup(appvm('evil', '', prop('auto_cleanup', 'True'))), 'evil');
    assert.equal(d.properties['auto_cleanup'], undefined);
  });

  test('unknown class: refused, the host unchanged; a second AdminVM does not even parse', () => {
    for (const klass of ['EvilVM', 'RemoteVM', 'QubesAppVm']) {
      const h = host();
      const before = serializeQubesXml(h);
      const b = backup(appvm('evil', '', '', klass));
      assert.throws(() => addRestoredDomain(h, findDomain(b, 'evil')!, { newName: 'evil', renames: new Map() }), { code: 'ERR_PLAN' }, klass);
      assert.equal(serializeQubesXml(h), before);
    }
    // every AdminVM is read as dom0: a second one is a duplicate name
    assert.throws(() => backup(appvm('evil', '', '', 'AdminVM')), { code: 'ERR_QUBES_XML' });
  });
});

describe('hostile references', () => {
  test('its own template, an AppVM or a dom0 as template: refused (ERR_PLAN)', () => {
    const h = host();
    for (const t of ['evil', 'victim', 'dom0', 'sys-firewall']) {
      const b = backup(appvm('evil').replace(prop('template', 'default-template'), prop('template', t)));
      assert.throws(() => addRestoredDomain(h, findDomain(b, 'evil')!, { newName: 'evil', renames: new Map([['evil', 'evil']]) }), { code: 'ERR_PLAN' }, t);
    }
    // a DispVM on a template without template_for_dispvms
    const disp = backup(appvm('evil', '', '', 'DispVM').replace(`${prop('qid', '9')}`, `${prop('qid', '9')}${prop('template', 'victim')}`));
    assert.throws(() => addRestoredDomain(h, findDomain(disp, 'evil')!, { newName: 'evil', renames: new Map() }), { code: 'ERR_PLAN' });
    assert.deepEqual(validateHostCollection(h), []);
    assert.equal(findDomain(h, 'evil'), undefined);
  });

  test('its own netVM, a netVM without network, dom0: dropped with a warning', () => {
    for (const n of ['evil', 'victim', 'dom0']) {
      const h = host();
      const { d } = restoreInto(h, backup(appvm('evil', '', prop('netvm', n))), 'evil');
      assert.equal(d.netvm, undefined, n);
      assert.match(restoreWarningsOf(h, 'evil')!.join('\n'), /netvm .* not restored/, n);
    }
    const h = host();
    assert.equal(restoreInto(h, backup(appvm('ok', '', prop('netvm', 'sys-firewall'))), 'ok').d.netvm, 'sys-firewall');
  });

  test('a netVM that would close a loop through the host is dropped', () => {
    // the host's sys-firewall names `evil` (not on the host yet) as its netVM
    const h = parseQubesXml(serializeQubesXml(host()).replace(`${prop('provides_network', 'True')}`, `${prop('provides_network', 'True')}${prop('netvm', 'evil')}`));
    const b = backup(appvm('evil', '', prop('netvm', 'sys-firewall') + prop('provides_network', 'True')));
    const d = addRestoredDomain(h, findDomain(b, 'evil')!, { newName: 'evil', renames: new Map() });
    assert.equal(d.netvm, undefined);
    assert.match(restoreWarningsOf(h, 'evil')!.join('\n'), /network loop/);
  });

  test('an ip, ip6 or mac a host VM has (its own, or the ip of its qid) is not taken: the default applies, said', () => {
    const h = host();
    const mine = prop('mac', '00:16:3e:5e:6c:99');
    // victim is qid 3 with a netVM: its default ip is 10.137.0.3; sys-firewall gets an explicit ip6 and mac
    h.domains.find((d) => d.name === 'victim')!.netvm = 'sys-firewall';
    h.domains.find((d) => d.name === 'sys-firewall')!.properties['mac'] = '00:16:3E:5E:6C:04';
    h.domains.find((d) => d.name === 'sys-firewall')!.properties['ip6'] = 'fd09:24ef:4179::a89:4';
    // (the same IPv6 address written another way is the same address)
    const { d } = restoreInto(h, backup(appvm('dup', '', prop('ip', '10.137.0.3') + prop('ip6', 'FD09:24EF:4179:0000::A89:4') + prop('mac', '00:16:3e:5e:6c:04'))), 'dup');
    assert.equal(d.properties['ip'], undefined);
    assert.equal(d.properties['ip6'], undefined);
    assert.equal(d.properties['mac'], undefined);
    const w = restoreWarningsOf(h, 'dup')!.join('\n');
    assert.match(w, /property ip \(10\.137\.0\.3\) not restored: host VM victim has that address; the default applies/);
    assert.match(w, /property mac \(00:16:3e:5e:6c:04\) not restored: host VM sys-firewall has that address/);
    // an address nobody has is kept; so is the default of a VM without network (no address)
    h.domains.find((d) => d.name === 'victim')!.netvm = null;
    const { d: own } = restoreInto(h, backup(appvm('own', '', prop('ip', '10.137.0.3') + mine)), 'own');
    assert.deepEqual([own.properties['ip'], own.properties['mac']], ['10.137.0.3', '00:16:3e:5e:6c:99']);
  });

  test('default_dispvm: a disposable template kept; anything else set to none with a warning', () => {
    const h = host();
    assert.equal(restoreInto(h, backup(appvm('a', '', prop('default_dispvm', 'default-dvm'))), 'a').d.defaultDispvm, 'default-dvm');
    for (const [name, dd] of [['b', 'victim'], ['c', 'c'], ['e', 'dom0'], ['g', 'nowhere']] as const) {
      const { d } = restoreInto(h, backup(appvm(name, '', prop('default_dispvm', dd))), name);
      // none, never the host's default_dispvm (its disposables may have another network)
      assert.equal(d.defaultDispvm, null, dd);
      assert.match(restoreWarningsOf(h, name)!.join('\n'), /default_dispvm .*set to none/, dd);
    }
    // a disposable template may name itself
    const self = restoreInto(h, backup(appvm('f', '', prop('template_for_dispvms', 'True') + prop('default_dispvm', 'f'))), 'f').d;
    assert.equal(self.defaultDispvm, 'f');
  });
});

describe('features, tags and devices are checked and bounded', () => {
  test('names and values string-checked, counts bounded, backup-* dropped', () => {
    const feats = Array.from({ length: EXTRAS_LIMITS.features + 10 }, (_, i) => `<feature name="f${i}">v</feature>`).join('') +
      '<feature name="bad name">x</feature><feature name="ctl">a&#x9b;31mb</feature><feature name="nl">a&#10;b</feature>' +
      `<feature name="long">${'x'.repeat(EXTRAS_LIMITS.featureValueLength + 1)}</feature><feature name="backup-evil">1</feature>`;
    const tags = Array.from({ length: EXTRAS_LIMITS.tags + 5 }, (_, i) => `<tag name="t${i}"/>`).join('') + '<tag name="../x"/><tag name="t1"/>';
    const b = backup(appvm('evil', `<tags>${tags}</tags>`).replace('<features>', `<features>${feats}`));
    const h = host();
    const { d } = restoreInto(h, b, 'evil');
    assert.equal(Object.keys(d.features).length, EXTRAS_LIMITS.features);
    assert.ok(Object.keys(d.features).every((f) => /^f[0-9]+$/.test(f)));
    assert.equal(d.tags.length, EXTRAS_LIMITS.tags);
    assert.ok(!d.tags.includes('../x'));
    const w = restoreWarningsOf(h, 'evil')!.join('\n');
    assert.match(w, /feature "bad name" not restored: invalid name/);
    assert.match(w, /feature ctl not restored: invalid or too long value "a\\u009b31mb"/);
    assert.match(w, /feature nl not restored: invalid or too long value "a\\nb"/);
    assert.match(w, /feature long not restored/);
    assert.match(w, /10 features not restored: more than 512/);
    assert.match(w, /tag "..\/x" not restored/);
    assert.match(w, /5 tags not restored: more than 256/);
  });

  test('devices of dom0 or of host VMs, and malformed ones, are not assigned', () => {
    const devs =
      '<devices class="pci"><device backend-domain="dom0" id="00_1f.2" mode="required"/></devices>' +
      '<devices class="block"><device backend-domain="victim" id="xvdb"><option name="read-only">no</option></device></devices>' +
      '<devices class="usb"><device backend-domain="evil2" id="../../x"/></devices>';
    const h = host();
    const { d, element } = restoreInto(h, backup(appvm('evil', devs)), 'evil');
    assert.deepEqual(d.devices, []);
    assert.ok(!element.includes('<device '), element);
    const w = restoreWarningsOf(h, 'evil')!.join('\n');
    assert.match(w, /device "pci:dom0:00_1f.2" not restored: devices of dom0/);
    assert.match(w, /device "block:victim:xvdb" not restored/);
    assert.match(w, /device "usb:evil2:..\/..\/x" not restored: invalid device/);
  });
});
