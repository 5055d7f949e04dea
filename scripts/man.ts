// `npm run man`: writes man/qvm-backup.1 and man/qvm-backup-restore.1 from the commands' own
// commander definitions (the objects --help prints), so the pages list exactly the options,
// arguments, defaults and sections of the help; test/e2e/man-pages.test.ts fails when a committed
// page differs from what this makes. Defaults that depend on the machine are shown as rules
// ("$HOME"), so the pages are the same wherever they are made.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { backupProgram, BACKUP_SECTIONS } from '../src/main/cli/backup-main.js';
import { restoreProgram, RESTORE_SECTIONS } from '../src/main/cli/restore-main.js';
import { genericDefaults } from '../src/main/cli/common.js';
import type { HelpSection } from '../src/main/cli/help-text.js';
import { VERSION } from '../src/main/version.js';

/** Text as roff input: backslashes and hyphens escaped, non-ASCII as \[uXXXX], no control lines. */
function roff(text: string): string {
  const escaped = [...text.replace(/\\/g, '\\e').replace(/-/g, '\\-')].map((c) => (c.charCodeAt(0) > 0x7e ? `\\[u${c.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}]` : c)).join('');
  return escaped.replace(/^([.'])/gm, '\\&$1');
}

/** `-x, --exclude <vm>` → bold flags, italic argument. */
function optionTerm(term: string): string {
  const m = /^(.*?)(?: ([<[].*))?$/.exec(term)!;
  const flags = m[1]!.split(', ').map((f) => `\\fB${roff(f)}\\fR`).join(', ');
  return m[2] === undefined ? flags : `${flags} \\fI${roff(m[2].replace(/^[<[]|[>\]]$/g, ''))}\\fR`;
}

/** `qvm-backup [options] <backup-location> [vm...]` → name bold, the rest with italic placeholders. */
function synopsis(usage: string, name: string): string {
  const rest = usage.split(' ').map((t) => {
    const m = /^([<[])([^>\]]*?)(\.\.\.)?([>\]])$/.exec(t);
    if (!m) return roff(t);
    const inner = `\\fI${roff(m[2]!)}\\fR${m[3] ?? ''}`;
    return m[1] === '[' ? `[${inner}]` : inner;
  });
  return `.B ${roff(name)}\n${rest.join(' ')}`;
}

function section(s: HelpSection): string {
  const out = [`.SH ${roff(s.title.toUpperCase())}`];
  if (s.text !== undefined) out.push(roff(s.text));
  for (const [term, text] of s.items ?? []) out.push('.TP', `\\fB${roff(term)}\\fR`, roff(text));
  return out.join('\n');
}

/** The man page of `program` (section 1). */
export function renderManPage(program: Command, sections: readonly HelpSection[], seeAlso: readonly string[]): string {
  const help = program.createHelp();
  const name = program.name();
  const summary = program.description().replace(/\.$/, '');
  const lines = [
    `.\\" Made by scripts/man.ts (npm run man) from the option definitions of ${name}; do not edit.`,
    `.TH ${roff(name.toUpperCase())} 1 "" "${roff(`${name} ${VERSION}`)}" "User Commands"`,
    '.ad l', // ragged right, no hyphenation: commands and paths stay whole
    '.nh',
    '.SH NAME',
    `${roff(name)} \\- ${roff(summary.charAt(0).toLowerCase() + summary.slice(1))}`,
    '.SH SYNOPSIS',
    synopsis(help.commandUsage(program).replace(/^\S+ /, ''), name),
    '.SH DESCRIPTION',
    roff(program.description()),
    '.SH ARGUMENTS',
  ];
  for (const a of help.visibleArguments(program)) lines.push('.TP', `.I ${roff(help.argumentTerm(a))}`, roff(help.argumentDescription(a)));
  lines.push('.SH OPTIONS');
  for (const o of help.visibleOptions(program)) lines.push('.TP', optionTerm(help.optionTerm(o)), roff(help.optionDescription(o)));
  for (const s of sections) lines.push(section(s));
  lines.push('.SH SEE ALSO', seeAlso.map((p) => `.BR ${roff(p.replace(/\((\d)\)$/, ''))} (${/\((\d)\)$/.exec(p)?.[1] ?? '1'})`).join(',\n'));
  return `${lines.join('\n')}\n`;
}

/** Both pages, by file name under man/. */
export function manPages(): Map<string, string> {
  const g = genericDefaults();
  return new Map([
    ['qvm-backup.1', renderManPage(backupProgram(g), BACKUP_SECTIONS, ['qvm-backup-restore(1)', 'scrypt(1)', 'tar(1)'])],
    ['qvm-backup-restore.1', renderManPage(restoreProgram(g), RESTORE_SECTIONS, ['qvm-backup(1)', 'scrypt(1)', 'tar(1)'])],
  ]);
}

export const MAN_DIR = new URL('../../man/', import.meta.url).pathname; // from dist/scripts

if (import.meta.url === `file://${process.argv[1]}`) {
  mkdirSync(MAN_DIR, { recursive: true });
  for (const [file, text] of manPages()) {
    writeFileSync(join(MAN_DIR, file), text);
    console.log(`wrote man/${file}`);
  }
}
