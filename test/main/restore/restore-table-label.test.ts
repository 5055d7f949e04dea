// The restore table keeps its columns and adds the label (issue 10); untrusted labels are escaped;
// the --json plan has the same VMs with named fields.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseQubesXml } from '../../../src/main/qubes-xml/index.js';
import { formatRestoreTable, planRestore, type RestoreSelection } from '../../../src/main/restore/plan/restore-plan.js';
import { restorePlanJson } from '../../../src/main/restore/plan/plan-json.js';
import { r4Xml } from './sample-xml.js';

const SEL: RestoreSelection = {
  vms: [], exclude: [], skipDom0Home: false, ignoreUsernameMismatch: false, renameConflicting: false,
  skipConflicting: false, skipBroken: false, ignoreMissing: false, verifyOnly: false,
};

test('label column between netvm and size; a hostile label is escaped; JSON plan fields', () => {
  const xml = r4Xml([
    { name: 'tpl', klass: 'TemplateVM', qid: 6, backup: true, size: 6000 },
    { name: 'work', klass: 'AppVM', qid: 3, template: 'tpl', netvm: null, backup: true, size: 3000 },
  ]).replace('>red</label>', '>r\u202eed</label>');
  const plan = planRestore(parseQubesXml(xml), null, 'alice', SEL);
  const text = formatRestoreTable(plan);
  assert.match(text, /^name +\| type +\| template +\| netvm +\| label +\| +size \| what happens$/m);
  assert.match(text, /^work +\| AppVM +\| tpl +\| - +\| "r\\u202eed" +\| +2\.9 KiB \| restore$/m);
  assert.ok(!text.includes('\u202e'));
  const j = restorePlanJson(plan) as { vms: Record<string, unknown>[]; dom0_home: unknown; total_bytes: number };
  assert.deepEqual(j.vms.find((v) => v['name'] === 'work'), {
    name: 'work', new_name: 'work', type: 'AppVM', template: 'tpl', netvm: null, netvm_is_default: false, label: 'r\u202eed',
    // the host (a new collection: the standard labels) has no such label
    size_bytes: 3000, action: 'restore', problems: [], notes: [], warnings: ['label "r\\u202eed" is not one of the host\'s labels: restored as red'],
  });
  assert.equal(j.dom0_home, null);
  assert.equal(j.total_bytes, 9000);
  assert.equal((restorePlanJson(planRestore(parseQubesXml(xml), null, 'alice', { ...SEL, verifyOnly: true })) as { vms: { action: string }[] }).vms[0]!.action, 'verify');
});
