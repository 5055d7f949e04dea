// qvm-backup-restore: parse argv, run the restore, map errors to exit codes.
import { Command } from 'commander';
import { availableParallelism, homedir } from 'node:os';
import { runRestore } from '../restore/run-restore.js';
import { readPassphrase } from './passphrase.js';
import { sizeOption, formatBytes } from './size.js';
import { makeProgress, confirmOnTty, abortOnSignals, reportError, endFailedRun, intOption, collect, parseOrExit, defaultRestoreMaxMemory } from './common.js';
import { QvmBackupError } from '../errors.js';
import { EXIT, EXIT_STATUS_HELP } from './exit-codes.js';
import { VERSION } from '../version.js';

const program = new Command('qvm-backup-restore')
  .description('Verify and restore VMs from a Qubes backup (formats 1-4) in one streaming pass.')
  .argument('<backup-location>', "archive file, '-' for stdin, or a format 1 backup directory (ignored with --source-command)")
  .argument('[vm...]', 'restore only these VMs (dom0 = the dom0 home); default: every VM in the backup')
  .option('--source-command <cmd>', 'read the archive from the stdout of this shell command (e.g. "ssh host cat backup")')
  .option('-x, --exclude <vm>', 'do not restore this VM (repeatable)', collect, [])
  .option('--qubes-root <dir>', 'qubes root of the host to restore into', process.env['QUBES_ROOT'] ?? '/var/lib/qubes')
  .option('--dom0-home <dir>', 'dom0 home of the host (its basename is the user name)', homedir())
  .option('--skip-dom0-home', 'do not restore the dom0 home')
  .option('--ignore-username-mismatch', 'restore the dom0 home even if the user name differs')
  .option('--rename-conflicting', 'restore VMs whose name exists on the host as <name>-1 … <name>-99')
  .option('--skip-conflicting', 'skip VMs whose name exists on the host')
  .option('--skip-broken', 'skip VMs whose template or netVM is neither on the host nor restored')
  .option('--ignore-missing', 'use the host defaults for missing templates/netVMs (keep the reference where the host has none)')
  .option('-p, --passphrase-file <file>', "read the passphrase from the first line of FILE ('-' = stdin); otherwise ask on the terminal")
  .option('-Z, --compression-filter <prog>', 'decompress with this program instead of the one the header names (allow-list only)')
  .option('--verify-only', 'authenticate, decrypt and decompress everything selected, check every included VM is complete; write nothing')
  .option('-y, --yes', 'do not ask for confirmation')
  .option('-q, --quiet', 'print only warnings and errors')
  .option('--json', 'progress and result as JSON lines on stdout')
  .option('--threads <n>', 'worker threads', intOption('--threads', 1, 256), availableParallelism())
  .option('--max-memory <size>', `bound on buffer memory: chunks in flight + concurrent scrypt derivations (128·r·N bytes each); an archive asking for more than this minus 255 MiB per derivation is refused before deriving (default 1 GiB + 512 MiB per thread, at most 1/4 of RAM, at least 2.5 GiB: here ${formatBytes(defaultRestoreMaxMemory(availableParallelism()))})`, sizeOption('--max-memory'))
  .version(VERSION, '-V, --version')
  .addHelpText('after', EXIT_STATUS_HELP);

async function main(): Promise<number> {
  const parsed = parseOrExit(program);
  if (parsed !== null) return parsed;
  const o = program.opts();
  const [location, vms] = program.processedArgs as [string, string[]];
  if (o['passphraseFile'] === '-' && location === '-' && o['sourceCommand'] === undefined) {
    return reportError('qvm-backup-restore', new QvmBackupError('ERR_USAGE', "-p - and the archive '-' cannot both be read from stdin: give the passphrase in a file"), false);
  }
  const progress = makeProgress(o);
  const stop = abortOnSignals((sig) => progress.warn(`${sig}: stopping, removing the staging directory (press Ctrl-C again to force)`));
  const verifyOnly = o['verifyOnly'] === true;
  try {
    const r = await runRestore({
      location,
      ...(o['sourceCommand'] !== undefined ? { sourceCommand: o['sourceCommand'] as string } : {}),
      vms,
      exclude: o['exclude'] as string[],
      skipDom0Home: o['skipDom0Home'] === true,
      ignoreUsernameMismatch: o['ignoreUsernameMismatch'] === true,
      renameConflicting: o['renameConflicting'] === true,
      skipConflicting: o['skipConflicting'] === true,
      skipBroken: o['skipBroken'] === true,
      ignoreMissing: o['ignoreMissing'] === true,
      verifyOnly,
      qubesRoot: o['qubesRoot'] as string,
      dom0Home: o['dom0Home'] as string,
      ...(o['compressionFilter'] !== undefined ? { compressionFilter: o['compressionFilter'] as string } : {}),
      threads: o['threads'] as number,
      maxMemory: (o['maxMemory'] as number | undefined) ?? defaultRestoreMaxMemory(o['threads'] as number),
      getPassphrase: () => readPassphrase({ file: o['passphraseFile'] as string | undefined, confirm: false, signal: stop.signal }),
      confirm: async (table, plan) => {
        if (o['json']) process.stdout.write(JSON.stringify({ message_type: 'plan', table, vms: plan.vms.map((v) => ({ name: v.backupName, new_name: v.newName, action: v.action, problems: v.problems, notes: v.notes })) }) + '\n');
        else if (!o['quiet']) process.stderr.write(table + '\n');
        return confirmOnTty(verifyOnly ? 'Verify the backup?' : 'Do you want to proceed?', o['yes'] === true, stop.signal);
      },
      progress,
      signal: stop.signal,
      ...(process.env['QVMB_IMAGE_EXTRACTION'] === 'tar' ? { imageExtraction: 'tar' as const } : {}),
    });
    const names = r.restored.map((x) => (x.name === x.from ? x.name : `${x.from} as ${x.name}`));
    const text = verifyOnly ? `Verification succeeded: ${names.length} VM(s)${r.dom0HomeDir ? ' and the dom0 home' : ''} complete and authentic` : `Restore finished: ${names.join(', ') || 'no VMs'}${r.dom0HomeDir ? `; dom0 home in ${r.dom0HomeDir}` : ''}`;
    progress.finish(true, text, { restored: r.restored, dom0_home: r.dom0HomeDir ?? null, verify_only: verifyOnly, max_rss_bytes: process.resourceUsage().maxRSS * 1024 });
    return EXIT.OK;
  } catch (e) {
    return endFailedRun('qvm-backup-restore', e, { json: o['json'] === true, progress, failText: verifyOnly ? 'Verification failed' : 'Restore failed', interruptedBy: stop.received() });
  }
}

main().then((code) => process.exit(code), (e: unknown) => process.exit(reportError('qvm-backup-restore', e, false)));
