// The man pages are made from the commands' option definitions (scripts/man.ts): the committed
// pages must be what that makes now, so an option changed without `npm run man` fails here. And
// what they are made of is what --help shows: every option, the exit statuses, the passphrase rule.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { homedir } from 'node:os';
import { manPages } from '../../scripts/man.js';
import { EXIT_STATUS_TABLE } from '../../src/main/cli/exit-codes.js';
import { node, run, ROOT, BACKUP_BIN, RESTORE_BIN, haveCmd } from '../helpers/cli.js';

const pages = manPages();

test('the committed man pages are the ones the option definitions make (npm run man)', () => {
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { man: string[]; files: string[] };
  assert.deepEqual(pkg.man, ['man/qvm-backup.1', 'man/qvm-backup-restore.1']);
  assert.ok(pkg.files.includes('man'));
  for (const [file, text] of pages) {
    const committed = readFileSync(join(ROOT, 'man', file), 'utf8');
    assert.ok(committed === text, `man/${file} differs from what the option definitions make: run \`npm run man\` and commit the result`);
  }
});

test('each man page lists every option of --help, the exit statuses and the passphrase rule', () => {
  for (const [bin, file] of [[BACKUP_BIN, 'qvm-backup.1'], [RESTORE_BIN, 'qvm-backup-restore.1']] as const) {
    const page = pages.get(file)!.replace(/\\-/g, '-');
    const help = node(bin, ['--help']).stdout;
    const flags = [...help.matchAll(/^ {2}(-\S+?)[,\s]/gm), ...help.matchAll(/^ {2}-\S, (--\S+)/gm)].map((m) => m[1]!);
    assert.ok(flags.length > 20, `${file}: options found in --help`);
    for (const f of flags) assert.ok(page.includes(`\\fB${f}\\fR`), `${file} lists ${f}`);
    assert.ok(page.includes('--passphrase-command'), file);
    for (const [code] of EXIT_STATUS_TABLE) assert.match(page, new RegExp(`^\\.TP\\n\\\\fB${code}\\\\fR\\n`, 'm'), `${file}: exit status ${code}`);
    assert.match(page, /^\.SH PASSPHRASE\n.*first line only.*trailing whitespace removed/m, file);
    // the same page on every machine: defaults say how they are chosen
    for (const local of ['here: ', `"${homedir()}"`, '(default: "/var/lib/qubes")']) assert.ok(!page.includes(local), `${file}: no value of this machine (${local})`);
    assert.ok(page.includes('worker threads (default: the number of CPU cores)'), file);
  }
});

test('the man pages format without warnings', { skip: haveCmd('groff') ? false : 'groff is not installed' }, () => {
  for (const file of pages.keys()) {
    const r = run('groff', ['-man', '-ww', '-z', '-Tutf8', join(ROOT, 'man', file)]);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stderr, '', `${file}: ${r.stderr}`);
  }
});
