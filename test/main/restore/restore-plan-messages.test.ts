// The planner's messages for what the user typed: "did you mean" for mistyped VM names (positional
// and -x), a warning for -x names that match nothing, and the edit distance behind them.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseQubesXml } from '../../../src/main/qubes-xml/index.js';
import { didYouMean, editDistance, similarNames } from '../../../src/main/qubes-xml/similar-names.js';
import { planRestore, unknownExcludeWarning, type RestoreSelection } from '../../../src/main/restore/plan/restore-plan.js';
import { r4Xml, type VmSpec } from './sample-xml.js';

const sel = (o: Partial<RestoreSelection> = {}): RestoreSelection => ({
  vms: [], exclude: [], skipDom0Home: false, ignoreUsernameMismatch: false, renameConflicting: false,
  skipConflicting: false, skipBroken: false, ignoreMissing: false, verifyOnly: false, ...o,
});
const VMS: VmSpec[] = [
  { name: 'work', klass: 'AppVM', qid: 3, template: 'tpl', netvm: 'sys-net', backup: true, size: 3000 },
  { name: 'personal', klass: 'AppVM', qid: 4, template: 'tpl', backup: true, size: 4000 },
  { name: 'sys-net', klass: 'AppVM', qid: 5, template: 'tpl', netvm: null, providesNetwork: true, backup: true, size: 5000 },
  { name: 'tpl', klass: 'TemplateVM', qid: 6, backup: true, size: 6000 },
  { name: 'vault', klass: 'AppVM', qid: 7, template: 'tpl', netvm: null, size: 10 },
];
const backup = () => parseQubesXml(r4Xml(VMS, { dom0Home: { user: 'alice', size: 700 } }));

describe('edit distance and suggestions', () => {
  it('counts inserts, deletes, substitutions and swapped neighbours as one edit each', () => {
    assert.equal(editDistance('work', 'work'), 0);
    assert.equal(editDistance('wrok', 'work'), 1);
    assert.equal(editDistance('wrk', 'work'), 1);
    assert.equal(editDistance('worke', 'work'), 1);
    assert.equal(editDistance('wirk', 'work'), 1);
    assert.equal(editDistance('', 'abc'), 3);
    assert.equal(editDistance('sys-net', 'sys-firewall'), 7);
  });
  it('suggests only close names, closest first, ignoring case', () => {
    assert.deepEqual(similarNames('wrok', ['personal', 'work', 'vault']), ['work']);
    assert.deepEqual(similarNames('Work', ['work']), ['work']);
    assert.deepEqual(similarNames('personl', ['personal', 'work']), ['personal']);
    assert.deepEqual(similarNames('sys-nte', ['sys-net', 'sys-usb', 'sys-firewall']), ['sys-net']);
    assert.deepEqual(similarNames('abc', ['xyz', 'work']), []);
    assert.deepEqual(similarNames('vm', ['vm1', 'vm2', 'vm3', 'vm4']), ['vm1', 'vm2', 'vm3']);
    assert.equal(didYouMean('wrok', ['work']), ' (did you mean work?)');
    assert.equal(didYouMean('vm', ['vm1', 'vm2']), ' (did you mean vm1 or vm2?)');
    assert.equal(didYouMean('zzzzzz', ['work']), '');
  });
});

describe('planRestore: names that match nothing', () => {
  it('a mistyped positional name blocks the restore with a suggestion from the archive\'s VMs', () => {
    const plan = planRestore(backup(), null, 'alice', sel({ vms: ['wrok', 'personl', 'dom'] }));
    assert.deepEqual(plan.unknownNames, ['wrok', 'personl', 'dom']);
    assert.ok(plan.blocking.includes('wrok: no such VM in the backup (did you mean work?)'), plan.blocking.join('\n'));
    assert.ok(plan.blocking.includes('personl: no such VM in the backup (did you mean personal?)'), plan.blocking.join('\n'));
    assert.ok(plan.blocking.includes('dom: no such VM in the backup (did you mean dom0?)'), plan.blocking.join('\n'));
  });
  it('-x names that match nothing are listed (warned about), with a suggestion; real ones are not', () => {
    const plan = planRestore(backup(), null, 'alice', sel({ exclude: ['wrk', 'personal', 'dom0', 'nothing-like-it'] }));
    assert.deepEqual(plan.blocking, []);
    assert.deepEqual(plan.unknownExcludes, ['wrk', 'nothing-like-it']);
    assert.equal(unknownExcludeWarning('wrk', plan), '-x wrk: there is no VM wrk in the backup, nothing excluded (did you mean work?)');
    assert.equal(unknownExcludeWarning('nothing-like-it', plan), '-x nothing-like-it: there is no VM nothing-like-it in the backup, nothing excluded');
    // a VM listed in qubes.xml without data is no typo: excluding it is quietly fine
    assert.deepEqual(planRestore(backup(), null, 'alice', sel({ exclude: ['vault'] })).unknownExcludes, []);
  });
});
