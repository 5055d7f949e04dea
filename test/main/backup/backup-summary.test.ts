// The backup summary as Qubes prints it (issue 10): `| VM | type | size |`, right-aligned columns
// of at least Qubes' widths, its type words, the total, the VMs not selected, then the dom0 home's path.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { backupPlanJson, formatBackupSummary, sizeToHuman } from '../../../src/main/backup/backup-summary.js';
import type { BackupPlan, VmJob } from '../../../src/main/backup/backup-plan.js';

const job = (name: string, klass: string, sizeBytes: number, subdir = 'vm1/'): VmJob => ({ name, qid: 1, klass, subdir, backupPath: subdir, files: [{ name: 'private.img', base: `${subdir}private.img`, sizeBytes, dereference: true }], sizeBytes });

test('Qubes-style table: type words, right-aligned cells, total, VMs not selected', () => {
  const plan: BackupPlan = {
    vms: [job('fedora-40', 'TemplateVM', 6 * 1024 ** 2), job('sys-net', 'AppVM', 2 * 1024 ** 2), job('standalone', 'StandaloneVM', 1536 * 1024 ** 2), job('a-very-long-vm-name-x', 'AppVM', 512)],
    dom0: { name: 'dom0', qid: 0, klass: 'AdminVM', subdir: 'dom0-home/', backupPath: 'dom0-home/user', files: [{ dir: '/home', name: 'user', base: 'dom0-home/user', sizeBytes: 112 * 1024, dereference: false }], sizeBytes: 112 * 1024 },
    totalBytes: 6 * 1024 ** 2 + 2 * 1024 ** 2 + 1536 * 1024 ** 2 + 512 + 112 * 1024,
    warnings: [],
  };
  const text = formatBackupSummary(plan, ['vault', 'personal']);
  const lines = text.trimEnd().split('\n');
  const rule = '-'.repeat(22) + '-+' + '-'.repeat(13) + '-+' + '-'.repeat(13) + '-+';
  assert.deepEqual(lines.slice(0, 3), [rule, `${'VM'.padStart(22)} |${'type'.padStart(13)} |${'size'.padStart(13)} |`, rule]);
  assert.equal(lines[3], `${'fedora-40'.padStart(22)} |${'Template VM'.padStart(13)} |${'6.0 MiB'.padStart(13)} |`);
  assert.equal(lines[4], `${'sys-net'.padStart(22)} |${'VM'.padStart(13)} |${'2.0 MiB'.padStart(13)} |`);
  assert.equal(lines[5], `${'standalone'.padStart(22)} |${'VM + Sys'.padStart(13)} |${'1.5 GiB'.padStart(13)} |`);
  assert.equal(lines[6], `${'a-very-long-vm-name-x'.padStart(22)} |${'VM'.padStart(13)} |${'512 B'.padStart(13)} |`);
  assert.equal(lines[7], `${'dom0'.padStart(22)} |${'User home'.padStart(13)} |${'112.0 KiB'.padStart(13)} |`);
  assert.equal(lines[8], rule);
  assert.equal(lines[9], `${'Total size:'.padStart(22)} |${'1.5 GiB'.padStart(28)} |`);
  assert.equal(lines[10], rule);
  // then which directory "User home" is
  assert.deepEqual(lines.slice(11), ['VMs not selected for backup:', ' - personal', ' - vault', 'dom0 home: /home/user']);
  assert.deepEqual(backupPlanJson(plan, [])['dom0_home'], { user: 'user', path: '/home/user', size_bytes: 112 * 1024 });
  // Qubes' minimum widths (16/12/12) with short names
  const small = formatBackupSummary({ vms: [job('work', 'AppVM', 1024)], totalBytes: 1024, warnings: [] }, []);
  assert.match(small, /^ {15}VM \| {9}type \| {9}size \|$/m);
  assert.match(small, /^VMs not selected for backup: none$/m);
});

test('sizes and the JSON plan', () => {
  assert.equal(sizeToHuman(1023), '1023 B');
  assert.equal(sizeToHuman(1024), '1.0 KiB');
  assert.equal(sizeToHuman(3 * 1024 ** 3), '3.0 GiB');
  const j = backupPlanJson({ vms: [job('work', 'AppVM', 4096, 'vm3/')], totalBytes: 4096, warnings: [] }, ['b', 'a']);
  assert.deepEqual(j, { vms: [{ name: 'work', type: 'AppVM', type_text: 'VM', size_bytes: 4096, files: ['vm3/private.img'] }], dom0_home: null, total_bytes: 4096, not_selected: ['a', 'b'] });
});
