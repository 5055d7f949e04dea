// Backup profiles in Qubes' YAML format: what PyYAML's safe_dump writes is read back the same;
// unknown keys, wrong types, tags, aliases and duplicate keys are refused naming the problem.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseProfile, profilePath, profileText } from '../../../src/main/cli/backup-profile.js';

test('a profile as Qubes writes it (keys sorted, include null) parses; profileText round-trips', () => {
  const qubes = 'compression: true\ndestination_path: /home/user/backups\ndestination_vm: dom0\nexclude:\n- sys-net\ninclude: null\npassphrase_text: correct horse\n';
  const p = parseProfile(qubes, 'x.conf');
  assert.deepEqual(p, { include: null, exclude: ['sys-net'], destinationVm: 'dom0', destinationPath: '/home/user/backups', compression: true, passphraseText: 'correct horse' });
  assert.deepEqual(parseProfile(profileText(p), 'y'), p);
  const vm = parseProfile('compression: xz\ndestination_path: /mnt/usb\ndestination_vm: sys-usb\ninclude:\n- work\n- vault\n', 'z');
  assert.deepEqual(vm, { include: ['work', 'vault'], exclude: [], destinationVm: 'sys-usb', destinationPath: '/mnt/usb', compression: 'xz' });
  // YAML 1.1, as PyYAML: "no" is false; a VM named "yes" is written quoted and read back as a name
  assert.equal(parseProfile('compression: no\ndestination_path: /b\ndestination_vm: dom0\ninclude: null\n', 'n').compression, false);
  const yes = { include: ['yes', 'on'], exclude: [], destinationVm: 'dom0', destinationPath: '/b', compression: false as const };
  assert.deepEqual(parseProfile(profileText(yes), 'q'), yes);
});

test('unknown keys, wrong types and unsafe YAML are refused naming the key', () => {
  const base = 'destination_path: /b\ndestination_vm: dom0\ninclude: null\n';
  const cases: [string, RegExp][] = [
    [`${base}compresion: true\n`, /unknown key "compresion"/],
    [`${base}passphrase_vm: vault\n`, /passphrase_vm .* is not supported/],
    ['destination_path: /b\ndestination_vm: dom0\n', /missing include/],
    ['destination_vm: dom0\ninclude: null\n', /missing destination_path/],
    [`${base}compression: 3\n`, /compression must be a non-empty string/],
    [`${base}passphrase_text: 1234\n`, /passphrase_text must be a string/],
    [`${base}passphrase_text: ""\n`, /empty passphrase/],
    ['destination_path: /b\ndestination_vm: dom0\ninclude: work\n', /include must be a list of VM names/],
    ['destination_path: /b\ndestination_vm: dom0\ninclude: ["../etc"]\n', /include: not a VM name/],
    ['destination_path: /b\ndestination_vm: dom0\ninclude: ["@tag:backup"]\n', /selectors are not supported/],
    ['destination_path: [1]\ndestination_vm: dom0\ninclude: null\n', /destination_path must be a non-empty string/],
    ['destination_path: /b\ndestination_vm: "-x"\ninclude: null\n', /destination_vm: not a VM name/],
    [`${base}exclude: !!python/object:os.system x\n`, /not valid YAML: Unresolved tag/],
    [`a: &x [1]\n${base}exclude: *x\n`, /not valid YAML|unknown key "a"/],
    [`${base}include: null\n`, /not valid YAML/],
    ['- a\n- b\n', /expected a mapping/],
    ['x: [\n', /not valid YAML/],
  ];
  for (const [text, re] of cases) assert.throws(() => parseProfile(text, 'p.conf'), (e: Error & { code?: string }) => {
    assert.match(e.message, re, text);
    assert.match(e.message, /^backup profile p\.conf: |p\.conf/, text);
    assert.equal(e.code, 'ERR_USAGE');
    return true;
  }, text);
});

test('profile names live in the profile dir; a path with a slash is used as it is', () => {
  assert.equal(profilePath('daily', '/etc/qubes/backup'), '/etc/qubes/backup/daily.conf');
  assert.equal(profilePath('/tmp/p.yaml', '/etc/qubes/backup'), '/tmp/p.yaml');
  assert.throws(() => profilePath('..', '/d'), /profile name/);
  assert.throws(() => profilePath('a b', '/d'), /profile name/);
});
