// planBackup on a small sample collection: which VMs and files, their archive names per format,
// the dom0 home last, name order, sizes; unknown names, exclusions and paths escaping the root.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { planBackup, type BackupPlanOptions } from '../../../src/main/backup/backup-plan.js';
import { parseQubesXml, type QubesXml } from '../../../src/main/qubes-xml/index.js';
import { sampleIn, tempDir } from '../../helpers/cli.js';

const MiB = 1024 * 1024;
let t: { dir: string; cleanup(): void };
let root = '';
let home = '';
let doc: QubesXml;

before(() => {
  t = tempDir();
  ({ root, home } = sampleIn(t.dir, { bigImageBytes: 4 * MiB, bigDataBytes: MiB, smallImageBytes: 2 * MiB, smallDataBytes: 64 * 1024 }));
  doc = parseQubesXml(readFileSync(`${root}/qubes.xml`));
});
after(() => t.cleanup());

const opts = (o: Partial<BackupPlanOptions>): BackupPlanOptions => ({ format: 4, encrypted: true, qubesRoot: root, dom0Home: home, vms: [], exclude: [], ...o });

test('format 4: vm<qid>/ subdirs, <volume>.img names, the extras of work, VMs by name, dom0 apart', async () => {
  const p = await planBackup(doc, opts({ vms: ['work', 'fedora-40', 'dom0'] }));
  assert.deepEqual(p.vms.map((v) => v.name), ['fedora-40', 'work']);
  const work = p.vms.find((v) => v.name === 'work')!;
  assert.equal(work.subdir, 'vm3/');
  assert.equal(work.backupPath, 'vm3/');
  assert.deepEqual(work.files.map((f) => f.base), ['vm3/private.img', 'vm3/firewall.xml', 'vm3/notes.txt']);
  assert.ok(work.files.every((f) => f.dereference));
  const tpl = p.vms.find((v) => v.name === 'fedora-40')!;
  assert.ok(tpl.files.some((f) => f.base === 'vm1/root.img'));
  assert.equal(p.dom0?.files[0]?.base, 'dom0-home/user');
  assert.equal(p.totalBytes, p.vms.reduce((a, v) => a + v.sizeBytes, 0) + p.dom0!.sizeBytes);
  assert.ok(work.sizeBytes >= MiB, 'sizes count the allocated data');
});

test('a VM named twice is backed up once (its chunks twice would make an archive no restore takes)', async () => {
  const p = await planBackup(doc, opts({ vms: ['work', 'vault', 'work', 'dom0', 'dom0'] }));
  assert.deepEqual(p.vms.map((v) => v.name).sort(), ['vault', 'work']);
  assert.ok(p.dom0 !== undefined);
});

test('format 3 unencrypted: the VM directories as they are; a template is one archive of its directory', async () => {
  const p = await planBackup(doc, opts({ format: 3, encrypted: false, vms: ['work', 'fedora-40'] }));
  const work = p.vms.find((v) => v.name === 'work')!;
  assert.equal(work.subdir, 'appvms/work/');
  assert.equal(work.backupPath, 'appvms/work');
  assert.deepEqual(work.files.map((f) => f.name), ['private.img', 'firewall.xml', 'whitelisted-appmenus.list']);
  assert.deepEqual(p.vms.find((v) => v.name === 'fedora-40')!.files.map((f) => f.base), ['vm-templates/fedora-40/.']);
  assert.match(p.warnings.join('\n'), /format 3 with an R4 qubes.xml/);
});

test('unknown names are refused, unknown exclusions warned about, excluded VMs left out', async () => {
  await assert.rejects(planBackup(doc, opts({ vms: ['nope'] })), (e: { code?: string; message: string }) => e.code === 'ERR_USAGE' && /unknown VM: nope/.test(e.message));
  const p = await planBackup(doc, opts({ vms: ['work', 'vault'], exclude: ['vault', 'ghost'] }));
  assert.deepEqual(p.vms.map((v) => v.name), ['work']);
  assert.deepEqual(p.warnings, ['excluded VM ghost does not exist']);
});

test('a volume path that escapes the qubes root is refused', async () => {
  const hostile = structuredClone(doc);
  const work = hostile.domains.find((d) => d.name === 'work')!;
  const vol = work.volumes.find((v) => v.name === 'private')!;
  vol.vid = '../../../etc/passwd';
  await assert.rejects(planBackup(hostile, opts({ vms: ['work'] })), (e: { code?: string }) => e.code === 'ERR_QUBES_XML');
});

test('the plan refuses what no restore installs: a FIFO as notes.txt (format 4: only regular files), a FIFO among a VM\'s files (format 3), a dom0 home that is a link', async () => {
  const notes = `${root}/appvms/work/notes.txt`;
  const saved = readFileSync(notes);
  rmSync(notes);
  spawnSync('mkfifo', [notes]);
  try {
    await assert.rejects(planBackup(doc, opts({ vms: ['work'] })), (e: { code?: string; message: string }) => e.code === 'ERR_IO' && /^VM work: \S+\/notes\.txt is not a regular file/.test(e.message));
    // format 3 archives the VM's own files as they are; notes.txt is not one of them
    await planBackup(doc, opts({ format: 3, vms: ['work'] }));
  } finally {
    rmSync(notes);
    writeFileSync(notes, saved);
  }
  const fw = `${root}/appvms/work/firewall.xml`;
  const fwSaved = readFileSync(fw);
  rmSync(fw);
  spawnSync('mkfifo', [fw]);
  try {
    await assert.rejects(planBackup(doc, opts({ format: 3, vms: ['work'] })), (e: { code?: string; message: string }) => e.code === 'ERR_IO' && /^VM work: \S+\/firewall\.xml is a FIFO, device or socket:/.test(e.message));
  } finally {
    rmSync(fw);
    writeFileSync(fw, fwSaved);
  }
  const link = `${t.dir}/home-link`;
  symlinkSync(home, link);
  await assert.rejects(planBackup(doc, opts({ dom0Home: link, vms: ['dom0'] })), (e: { code?: string; message: string }) => e.code === 'ERR_USAGE' && e.message.includes(`is a symbolic link: give the directory it points to (--dom0-home ${realpathSync(home)})`));
  const p = await planBackup(doc, opts({ vms: ['work'] }));
  assert.ok(p.vms[0]!.files.every((f) => f.regular === true), 'format 4 files are all regular');
});

test('format 4 of an R2/R3 collection is refused (ERR_USAGE, naming --format 3): its VMs have no volumes, so the archive would hold no VM data', async () => {
  const r3 = tempDir();
  try {
    const s = sampleIn(r3.dir, { schema: 'r3', bigImageBytes: 2 * MiB, bigDataBytes: 64 * 1024, smallImageBytes: MiB, smallDataBytes: 4096 });
    const r3doc = parseQubesXml(readFileSync(`${s.root}/qubes.xml`));
    assert.equal(r3doc.schema, 'r2r3');
    const o = { qubesRoot: s.root, dom0Home: s.home, vms: ['work'] };
    await assert.rejects(planBackup(r3doc, opts({ ...o })), (e: { code?: string; message: string }) => e.code === 'ERR_USAGE' && /R2\/R3 collection .*format 4 needs an R4 qubes\.xml .*--format 3/.test(e.message));
    const p = await planBackup(r3doc, opts({ ...o, format: 3 }));
    assert.ok(p.vms[0]!.files.some((f) => f.base.endsWith('private.img')), 'format 3 takes its private.img');
  } finally {
    r3.cleanup();
  }
});

test('format 4: an R4 VM without <volume-config> is refused (its images are unknown: the archive would hold none of its data)', async () => {
  const bare: QubesXml = { ...doc, domains: doc.domains.map((d) => (d.name === 'work' ? { ...d, volumes: [] } : d)) };
  await assert.rejects(planBackup(bare, opts({ vms: ['work'] })), (e: { code?: string; message: string }) => e.code === 'ERR_IO' && /^VM work has no <volume-config> in qubes\.xml: .*-x work\)$/.test(e.message));
  const others = await planBackup(bare, opts({ vms: ['vault'] }));
  assert.deepEqual(others.vms.map((v) => v.name), ['vault']);
});

test('the default selection is R4\'s: include_in_backups (a disposable\'s default: not auto_cleanup; dom0\'s own), the internal feature no reason to leave a VM out', async () => {
  const xml = readFileSync(`${root}/qubes.xml`, 'utf8');
  const edit = (from: string, to: string, text: string): string => {
    assert.ok(text.includes(from), from);
    return text.replace(from, to);
  };
  // work gets the internal feature; vault include_in_backups False; dom0 too
  let x = edit('<domain id="domain-3" class="AppVM">', '<domain id="domain-3" class="AppVM"><features><feature name="internal">1</feature></features>', xml);
  x = edit('<property name="name">vault</property>', '<property name="name">vault</property><property name="include_in_backups">False</property>', x);
  x = edit('class="AdminVM">\n      <properties>', 'class="AdminVM">\n      <properties><property name="include_in_backups">False</property>', x);
  // two disposables: one removed at its shutdown (not backed up by default), one named (backed up)
  const disp = (qid: number, name: string, cleanup: string): string => `<domain id="domain-${qid}" class="DispVM"><properties><property name="qid">${qid}</property><property name="name">${name}</property><property name="label">label-1</property><property name="template">work</property>${cleanup}</properties><features/><tags/></domain>`;
  x = edit('</domains>', `${disp(40, 'disp40', '<property name="auto_cleanup">True</property>')}${disp(41, 'disp41', '')}</domains>`, x);
  const d = parseQubesXml(Buffer.from(x));
  assert.deepEqual(d.domains.filter((v) => v.klass === 'DispVM').map((v) => [v.name, v.includeInBackups]), [['disp40', false], ['disp41', true]]);
  const p = await planBackup({ ...d, domains: d.domains.filter((v) => v.name !== 'disp41') }, opts({}));
  const names = p.vms.map((v) => v.name);
  assert.ok(!names.includes('disp40'), 'a disposable with auto_cleanup');
  assert.ok(names.includes('work'), 'the internal feature does not leave work out');
  assert.ok(!names.includes('vault'), 'include_in_backups False');
  assert.equal(p.dom0, undefined, "dom0's include_in_backups False leaves the home out");
  // named, they are backed up all the same
  const named = await planBackup(d, opts({ vms: ['vault', 'dom0'] }));
  assert.deepEqual(named.vms.map((v) => v.name), ['vault']);
  assert.ok(named.dom0 !== undefined);
});
