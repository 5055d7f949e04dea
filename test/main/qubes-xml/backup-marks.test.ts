// Backup-side edits: markBackupContent and setBackupTimestamp on both schemas, checked in the
// written text and in the re-parsed model.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  cloneQubesXml,
  findDomain,
  markBackupContent,
  parseQubesXml,
  serializeQubesXml,
  setBackupTimestamp,
} from '../../../src/main/qubes-xml/index.js';
import { R2_NO_DOM0, R4_EDGES } from './samples.js';
import { normalisedTree } from './tree-compare.js';

const R4 = `<?xml version='1.0' encoding='UTF-8'?>
<qubes>
  <labels>
    <label color="0xcc0000" id="label-1">red</label>
    <label color="0x000000" id="label-8">black</label>
  </labels>
  <properties/>
  <domains>
    <domain id="domain-0" class="AdminVM">
      <properties>
        <property name="label">label-8</property>
      </properties>
      <features/>
      <tags/>
    </domain>
    <domain id="domain-3" class="AppVM">
      <properties>
        <property name="label">label-1</property>
        <property name="name">work</property>
        <property name="qid">3</property>
      </properties>
      <features>
        <feature name="backup-content">1</feature>
        <feature name="backup-path">vm3/</feature>
        <feature name="backup-size">99</feature>
        <feature name="preload-dispvm">disp1 disp2</feature>
        <feature name="preload-dispvm-max">2</feature>
        <feature name="preload-dispvm-threshold">1</feature>
        <feature name="gui">1</feature>
      </features>
      <tags/>
    </domain>
    <domain id="domain-5" class="TemplateVM">
      <properties>
        <property name="label">label-8</property>
        <property name="name">fedora</property>
        <property name="qid">5</property>
      </properties>
      <tags/>
    </domain>
  </domains>
</qubes>
`;

describe('markBackupContent, R4', () => {
  const host = parseQubesXml(R4);
  const copy = cloneQubesXml(host);
  markBackupContent(copy, new Map([
    [0, { path: 'dom0-home/user', size: 20480 }],
    [5, { path: 'vm5/', size: 10737418240 }],
  ]));
  const out = serializeQubesXml(copy);

  test('the original is untouched', () => {
    assert.deepEqual(normalisedTree(serializeQubesXml(host)), normalisedTree(R4));
    assert.deepEqual(findDomain(host, 'work')!.backup, { content: true, path: 'vm3/', size: 99 });
  });

  test('written text', () => {
    assert.ok(
      out.includes(`      <features>
        <feature name="backup-content">1</feature>
        <feature name="backup-path">dom0-home/user</feature>
        <feature name="backup-size">20480</feature>
      </features>`),
      out,
    );
    // work: not included any more, stale path/size stay as Qubes leaves them; preload-dispvm* gone but -max
    assert.ok(
      out.includes(`      <features>
        <feature name="backup-content"/>
        <feature name="backup-path">vm3/</feature>
        <feature name="backup-size">99</feature>
        <feature name="preload-dispvm-max">2</feature>
        <feature name="gui">1</feature>
      </features>`),
      out,
    );
    // fedora had no <features>: created after <properties>, before <tags>
    assert.ok(
      out.includes(`        <property name="qid">5</property>
      </properties>
      <features>
        <feature name="backup-content">1</feature>
        <feature name="backup-path">vm5/</feature>
        <feature name="backup-size">10737418240</feature>
      </features>
      <tags/>`),
      out,
    );
  });

  test('model follows', () => {
    const again = parseQubesXml(out);
    assert.deepEqual(again, copy);
    assert.deepEqual(findDomain(copy, 'fedora')!.backup, { content: true, path: 'vm5/', size: 10737418240 });
    assert.deepEqual(findDomain(copy, 'work')!.backup, { content: false, path: 'vm3/', size: 99 });
    assert.deepEqual(findDomain(copy, 'dom0')!.backup, { content: true, path: 'dom0-home/user', size: 20480 });
  });

  test('DomainInfo objects keep their identity across edits', () => {
    const c = cloneQubesXml(host);
    const work = findDomain(c, 'work')!;
    markBackupContent(c, new Map([[3, { path: 'vm3/', size: 1 }]]));
    assert.equal(findDomain(c, 'work'), work);
    assert.equal(work.backup?.size, 1);
  });

  test('timestamp', () => {
    const c = cloneQubesXml(copy);
    setBackupTimestamp(c, [0, 5], 1700000000);
    const t = serializeQubesXml(c);
    assert.ok(t.includes(`        <property name="label">label-8</property>
        <property name="backup_timestamp">1700000000</property>
      </properties>`));
    assert.equal(findDomain(c, 'fedora')!.properties['backup_timestamp'], '1700000000');
    setBackupTimestamp(c, [5], 1700000001);
    assert.equal(findDomain(parseQubesXml(serializeQubesXml(c)), 'fedora')!.properties['backup_timestamp'], '1700000001');
  });

  test('unknown qid and bad sizes are refused', () => {
    const c = cloneQubesXml(host);
    assert.throws(() => markBackupContent(c, new Map([[42, { path: 'vm42/', size: 1 }]])), { code: 'ERR_PLAN' });
    assert.throws(() => markBackupContent(c, new Map([[3, { path: 'vm3/', size: -1 }]])), { code: 'ERR_INTERNAL' });
    assert.throws(() => setBackupTimestamp(c, [42], 1), { code: 'ERR_PLAN' });
  });

  test('preload-dispvm cleanup also applies to a hand-written edge file', () => {
    const c = parseQubesXml(R4_EDGES);
    markBackupContent(c, new Map());
    assert.deepEqual(findDomain(c, 'nolabel')!.features, { 'backup-content': '', 'backup-path': 'vm7/', 'preload-dispvm-max': '2' });
    assert.deepEqual(findDomain(c, 'bylabelname')!.features, { 'backup-content': '' });
  });
});

describe('markBackupContent, R2/R3', () => {
  const R3 = `<QubesVmCollection default_template="1" default_netvm="2" updatevm="2" clockvm="2">
  <QubesAdminVm qid="0" name="dom0" label="black" backup_content="True" backup_path="dom0-home/old" backup_size="1"/>
  <QubesTemplateVm qid="1" name="fedora-23" label="black" template_qid="none"/>
  <QubesNetVm qid="2" name="sys-net" template_qid="1" services="{'ntpd': False}"/>
  <QubesAppVm qid="5" name="work" template_qid="1" label="green" backup_content="True" backup_path="appvms/work" backup_size="7"/>
</QubesVmCollection>
`;

  test('written attributes', () => {
    const doc = parseQubesXml(R3);
    markBackupContent(doc, new Map([
      [2, { path: 'vm2/', size: 2097152 }],
      [0, { path: 'dom0-home/user', size: 12 }],
    ]));
    setBackupTimestamp(doc, [2], 1600000000);
    assert.equal(
      serializeQubesXml(doc),
      `<QubesVmCollection default_template="1" default_netvm="2" updatevm="2" clockvm="2">
  <QubesAdminVm qid="0" name="dom0" label="black" backup_content="True" backup_path="dom0-home/user" backup_size="12"/>
  <QubesTemplateVm qid="1" name="fedora-23" label="black" template_qid="none" backup_content="False"/>
  <QubesNetVm qid="2" name="sys-net" template_qid="1" services="{'ntpd': False}" backup_content="True" backup_path="vm2" backup_size="2097152" backup_timestamp="1600000000"/>
  <QubesAppVm qid="5" name="work" template_qid="1" label="green" backup_content="False" backup_path="appvms/work" backup_size="7"/>
</QubesVmCollection>
`,
    );
    assert.deepEqual(findDomain(doc, 'sys-net')!.backup, { content: true, path: 'vm2', size: 2097152 });
    assert.equal(findDomain(doc, 'sys-net')!.properties['backup_timestamp'], '1600000000');
  });

  test('an old R2 file without dom0 gets a dom0 element when its home is included', () => {
    const doc = parseQubesXml(R2_NO_DOM0);
    const dom0 = findDomain(doc, 'dom0')!;
    markBackupContent(doc, new Map([[0, { path: 'dom0-home/user', size: 3 }]]));
    const out = serializeQubesXml(doc);
    assert.match(out, /^<QubesVmCollection [^\n]*>\n  <QubesAdminVm qid="0" name="dom0" label="black" backup_content="True" backup_path="dom0-home\/user" backup_size="3"\/>\n  <QubesTemplateVm /);
    assert.equal(findDomain(doc, 'dom0'), dom0);
    assert.deepEqual(dom0.backup, { content: true, path: 'dom0-home/user', size: 3 });
    assert.deepEqual(parseQubesXml(out), doc);
    // not included: no element is made
    const doc2 = parseQubesXml(R2_NO_DOM0);
    markBackupContent(doc2, new Map());
    assert.doesNotMatch(serializeQubesXml(doc2), /QubesAdminVm/);
    assert.match(serializeQubesXml(doc2), /<QubesDisposableVm qid="7" name="disp1" template_qid="1" dispid="1" backup_content="False"\/>/);
  });
});
