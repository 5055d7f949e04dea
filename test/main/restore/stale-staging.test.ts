// What a killed restore leaves, swept by the next one under the host lock (removeStaleStaging):
// its staging directory, and the VM directories its install journal names that qubes.xml does
// not list (moved in, never registered: a kill -9 between the moves and the qubes.xml write).
// Nothing the journal names outside the root's VM directories, nothing listed, no link.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chownSync, existsSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { INSTALL_JOURNAL, journalEntries, removeStaleStaging } from '../../../src/main/restore/install/staging.js';
import { tempDir } from '../../helpers/cli.js';

test('a killed restore\'s unregistered VM directories are removed, registered ones and anything else kept', async () => {
  const t = tempDir('qvmb-stale-');
  try {
    const root = join(t.dir, 'q');
    for (const d of ['appvms/listed', 'appvms/orphan', 'vm-templates/tpl-orphan', 'outside', 'appvms/real']) mkdirSync(join(root, d), { recursive: true });
    symlinkSync(join(root, 'appvms', 'real'), join(root, 'appvms', 'link'));
    const staging = join(root, '.restore-abc123');
    mkdirSync(join(staging, 'vm3'), { recursive: true });
    const made = (p: string) => ({ target: join(root, p), state: 'made' });
    const targets = ['appvms/listed', 'appvms/orphan', 'vm-templates/tpl-orphan', 'outside', 'appvms/link', 'appvms/../outside', '../etc'].map(made);
    // an intent: the killed run was about to make it. Empty: removed; with content (it was there
    // before: its mkdir failed): kept
    mkdirSync(join(root, 'appvms', 'empty-intent'));
    mkdirSync(join(root, 'appvms', 'user-dir'));
    writeFileSync(join(root, 'appvms', 'user-dir', 'precious'), 'x');
    const intents = ['appvms/empty-intent', 'appvms/user-dir'].map((p) => ({ target: join(root, p), state: 'intent' }));
    writeFileSync(join(staging, INSTALL_JOURNAL), JSON.stringify([...targets, ...intents, 42, join(root, 'appvms', 'real'), { target: join(root, 'appvms', 'real'), state: 'other' }]));
    const r = await removeStaleStaging(root, (name) => name === 'listed');
    assert.deepEqual(r.staging, ['.restore-abc123']);
    assert.deepEqual(r.orphans.sort(), ['appvms/empty-intent', 'appvms/orphan', 'vm-templates/tpl-orphan']);
    for (const kept of ['appvms/listed', 'outside', 'appvms/real', 'appvms/link', 'appvms/user-dir/precious']) assert.ok(existsSync(join(root, kept)), kept);
    assert.equal(existsSync(staging), false);
    // qubes.xml cannot be read (listed unknown): a staging with a journal is kept for a later run
    mkdirSync(join(root, '.restore-keep01'));
    mkdirSync(join(root, 'appvms', 'later'));
    writeFileSync(join(root, '.restore-keep01', INSTALL_JOURNAL), JSON.stringify([{ target: join(root, 'appvms', 'later'), state: 'made' }]));
    assert.deepEqual(await removeStaleStaging(root, undefined), { staging: [], orphans: [], temps: [] });
    assert.ok(existsSync(join(root, '.restore-keep01', INSTALL_JOURNAL)) && existsSync(join(root, 'appvms', 'later')));
    assert.deepEqual(await removeStaleStaging(root, () => false), { staging: ['.restore-keep01'], orphans: ['appvms/later'], temps: [] });
    // the killed run named the root through a link: the same directories
    symlinkSync(root, join(t.dir, 'q-link'));
    mkdirSync(join(root, 'appvms', 'via-link'));
    mkdirSync(join(root, '.restore-link01'));
    writeFileSync(join(root, '.restore-link01', INSTALL_JOURNAL), JSON.stringify([{ target: join(t.dir, 'q-link', 'appvms', 'via-link'), state: 'made' }]));
    assert.deepEqual(await removeStaleStaging(root, () => false), { staging: ['.restore-link01'], orphans: ['appvms/via-link'], temps: [] });
    // no journal (or a broken one): only the staging goes
    mkdirSync(join(root, '.restore-def456'));
    writeFileSync(join(root, '.restore-def456', INSTALL_JOURNAL), '{not json');
    assert.deepEqual(await removeStaleStaging(root, () => false), { staging: ['.restore-def456'], orphans: [], temps: [] });
  } finally {
    t.cleanup();
  }
});

test('the install journal as appended lines: the last line of a target wins; a line cut short is skipped', async () => {
  const line = (target: string, state: string): string => `\n${JSON.stringify({ target, state })}`;
  // made after its intent; abandoned after its intent (its mkdir failed: not ours); an intent whose
  // "made" line was cut short by a kill; a line cut short and continued by the next write
  const text = line('/q/appvms/a', 'intent') + line('/q/appvms/b', 'intent') + line('/q/appvms/a', 'made') + line('/q/appvms/b', 'abandoned') + line('/q/appvms/c', 'intent') + line('/q/appvms/c', 'made').slice(0, 20);
  assert.deepEqual(journalEntries(text), [
    { target: '/q/appvms/a', state: 'made' },
    { target: '/q/appvms/c', state: 'intent' },
  ]);
  const garbled = line('/q/appvms/d', 'intent').slice(0, 15) + line('/q/appvms/e', 'made');
  assert.deepEqual(journalEntries(garbled), [{ target: '/q/appvms/e', state: 'made' }]);
  assert.deepEqual(journalEntries(''), []);
  assert.deepEqual(journalEntries('[{"target":"/q/appvms/f","state":"made"}]'), [{ target: '/q/appvms/f', state: 'made' }], 'the whole-array form of earlier versions');

  const t = tempDir('qvmb-stale-lines-');
  try {
    const root = join(t.dir, 'q');
    for (const d of ['appvms/made', 'appvms/cut', 'appvms/gave-up']) mkdirSync(join(root, d), { recursive: true });
    writeFileSync(join(root, 'appvms', 'gave-up', 'precious'), 'x');
    const staging = join(root, '.restore-lines1');
    mkdirSync(staging);
    const at = (p: string): string => join(root, p);
    writeFileSync(
      join(staging, INSTALL_JOURNAL),
      line(at('appvms/made'), 'intent') + line(at('appvms/made'), 'made') + line(at('appvms/gave-up'), 'intent') + line(at('appvms/gave-up'), 'abandoned') + line(at('appvms/cut'), 'intent') + line(at('appvms/cut'), 'made').slice(0, 9),
    );
    writeFileSync(join(root, 'appvms', 'made', 'root.img'), 'y');
    const r = await removeStaleStaging(root, () => false);
    assert.deepEqual(r.orphans.sort(), ['appvms/cut', 'appvms/made']);
    assert.ok(existsSync(join(root, 'appvms', 'gave-up', 'precious')), 'an abandoned target is not ours');
  } finally {
    t.cleanup();
  }
});

test('a sweep trusts only what this user made: another user\'s staging directory or journal, or a FIFO journal, names nothing (and never holds the run)', async () => {
  const t = tempDir('qvmb-stale-owner-');
  try {
    const root = join(t.dir, 'q');
    for (const d of ['appvms/keep', 'appvms/keep2', 'appvms/keep3']) mkdirSync(join(root, d), { recursive: true });
    const made = (p: string): string => JSON.stringify([{ target: join(root, p), state: 'made' }]);
    // a directory of another user's (one who can write to the root): left alone, its journal unread
    const foreign = join(root, '.restore-evil01');
    mkdirSync(foreign);
    writeFileSync(join(foreign, INSTALL_JOURNAL), made('appvms/keep'));
    // ours, with a journal another user owns
    const ownDir = join(root, '.restore-own001');
    mkdirSync(ownDir);
    writeFileSync(join(ownDir, INSTALL_JOURNAL), made('appvms/keep2'));
    const asRoot = process.getuid?.() === 0;
    if (asRoot) {
      chownSync(foreign, 65534, 65534);
      chownSync(join(foreign, INSTALL_JOURNAL), 65534, 65534);
      chownSync(join(ownDir, INSTALL_JOURNAL), 65534, 65534);
    }
    // a FIFO where the journal should be: opened without waiting for a writer
    const fifoDir = join(root, '.restore-fifo01');
    mkdirSync(fifoDir);
    execFileSync('mkfifo', [join(fifoDir, INSTALL_JOURNAL)]);
    const r = await removeStaleStaging(root, () => false);
    assert.deepEqual(r.orphans, []);
    for (const d of ['appvms/keep', 'appvms/keep2', 'appvms/keep3']) assert.ok(existsSync(join(root, d)), d);
    assert.ok(r.staging.includes('.restore-fifo01'));
    if (asRoot) {
      assert.ok(existsSync(foreign), 'another user\'s directory is not ours to remove');
      assert.deepEqual(r.staging.sort(), ['.restore-fifo01', '.restore-own001']);
    }
  } finally {
    t.cleanup();
  }
});

test('the temporary file of a qubes.xml write a kill cut short is removed; nothing else the journal names as one', async () => {
  const t = tempDir('qvmb-stale-temp-');
  try {
    const root = join(t.dir, 'q');
    mkdirSync(join(root, 'appvms'), { recursive: true });
    const temp = (p: string): string => `\n${JSON.stringify({ target: p, state: 'temp' })}`;
    for (const f of ['qubes.xml.123456', 'qubes.xml.99', 'notes.txt', 'appvms/qubes.xml.5']) writeFileSync(join(root, f), 'x');
    symlinkSync(join(root, 'notes.txt'), join(root, 'qubes.xml.777'));
    mkdirSync(join(t.dir, 'outside'));
    writeFileSync(join(t.dir, 'outside', 'qubes.xml.1'), 'x');
    const staging = join(root, '.restore-tmp001');
    mkdirSync(staging);
    writeFileSync(
      join(staging, INSTALL_JOURNAL),
      temp(join(root, 'qubes.xml.123456')) + temp(join(root, 'notes.txt')) + temp(join(root, 'appvms', 'qubes.xml.5')) + temp(join(root, 'qubes.xml.777')) + temp(join(t.dir, 'outside', 'qubes.xml.1')) + temp(join(root, 'qubes.xml.gone')),
    );
    const r = await removeStaleStaging(root, () => false);
    assert.deepEqual(r, { staging: ['.restore-tmp001'], orphans: [], temps: ['qubes.xml.123456'] });
    assert.equal(existsSync(join(root, 'qubes.xml.123456')), false);
    for (const kept of [join(root, 'qubes.xml.99'), join(root, 'notes.txt'), join(root, 'appvms', 'qubes.xml.5'), join(root, 'qubes.xml.777'), join(t.dir, 'outside', 'qubes.xml.1')]) assert.ok(existsSync(kept), kept);
  } finally {
    t.cleanup();
  }
});
