// qvm-backup-restore: parse argv, run the restore, map errors to exit codes.
import { Command, Option } from 'commander';
import { stat } from 'node:fs/promises';
import { totalmem } from 'node:os';
import { defaultRestoreMaxMemory } from '../restore/settings.js';
import { runRestore } from '../restore/run-restore.js';
import { listArchive } from '../restore/list-archive.js';
import { formatListing } from '../restore/plan/listing-table.js';
import { restorePlanJson } from '../restore/plan/plan-json.js';
import { checkBackupDirectory } from '../restore/stream/index.js';
import { isValidVmName } from '../qubes-xml/index.js';
import { checkPassphraseFile, readPassphrase } from './passphrase.js';
import { sizeOption, formatBytes } from './size.js';
import { loadSpawner } from '../io/spawn.js';
import { makeStats, statsFields, printStats, makeProgress, confirmOnTty, asksOnTty, abortOnSignals, reportError, endFailedRun, intOption, collect, parseOrExit, jsonOfArgv, decideJson, watchStalls, stallTimeoutOption, hostDefaults, shownDefault, aliasOption, eitherSpelling, outputIsTheResult, type HostDefaults } from './common.js';
import { QvmBackupError } from '../errors.js';
import { RESTORE_SERVICE, qvmRunArgs } from '../io/qrexec.js';
import type { SourceVm } from '../restore/archive-source.js';
import { EXIT, exitCodeForSignal } from './exit-codes.js';
import { EXIT_STATUS_SECTION, PASSPHRASE_SECTION, environmentSection, renderSections, type HelpSection } from './help-text.js';
import { VERSION } from '../version.js';
import { MAX_THREADS } from '../format/limits.js';
import { peakRssBytes } from '../stats/peak-rss.js';
import { results } from '../io/message-out.js';

/** What --help prints after the options (and the man page has as sections). */
export const RESTORE_SECTIONS: readonly HelpSection[] = [
  PASSPHRASE_SECTION,
  {
    title: 'Examples',
    items: [
      ['qvm-backup-restore --verify-only -p ~/backup.pass /mnt/backups/qubes-2024-05-01T120000', 'check the whole archive as a restore would (authenticated, decrypted, unpacked into a scratch copy in $TMPDIR or /var/tmp, checked), install nothing'],
      ['qvm-backup-restore -p ~/backup.pass --rename-conflicting /mnt/backups/qubes-2024-05-01T120000 work', 'restore one VM; as work1 if a work exists (as Qubes names it)'],
      ['qvm-backup-restore -p ~/backup.pass --source-command "ssh nas cat backups/today" work vault', 'read the archive from another machine'],
    ],
  },
  environmentSection([['QVMB_DROP_BEHIND=0', "keep the pages of the VM images restored in the page cache (prepared ahead of the writes instead) rather than hand them back to the kernel once they are on disk (for comparisons)"]]),
  EXIT_STATUS_SECTION,
];

/** The command line of qvm-backup-restore: parsed by main(), printed by --help, and the source of the man page. */
export const restoreProgram = (h: HostDefaults = hostDefaults()): Command => new Command('qvm-backup-restore')
  .description('Verify and restore VMs from a Qubes backup (formats 1-4) in one streaming pass.')
  .argument('[backup-location]', "archive file, '-' for stdin, or a format 1 backup directory; not with --source-command (then every argument is a VM name)")
  .argument('[vm...]', 'restore only these VMs (dom0 = the dom0 home); default: every VM in the backup')
  .option('--source-command <cmd>', 'read the archive from the stdout of this shell command (e.g. "ssh host cat backup") instead of a backup location')
  .addOption(new Option('-d, --dest-vm <vm>', "read the archive from this VM: its qubes.Restore service (through qvm-run --pass-io --service) is given BACKUP_LOCATION, a path or command inside the VM; dom0 = a local file, as without -d").conflicts('sourceCommand'))
  .option('--location-is-service', 'with -d: BACKUP_LOCATION names the qrexec service of the VM that sends the archive (e.g. my.Restore+arg) instead of a location for qubes.Restore')
  .option('-x, --exclude <vm>', 'do not restore this VM (repeatable)', collect, [])
  .addOption(new Option('--qubes-root <dir>', 'qubes root of the host to restore into').default(h.qubesRoot, shownDefault(h, '$QUBES_ROOT, else /var/lib/qubes')))
  .addOption(new Option('--dom0-home <dir>', 'dom0 home of the host (its basename is the user name)').default(h.dom0Home, shownDefault(h, "the home of the first member of group qubes (as Qubes), else $HOME")))
  .option('--skip-dom0-home', 'do not restore the dom0 home')
  .option('--ignore-username-mismatch', 'restore the dom0 home even if the user name differs')
  .option('--rename-conflicting', 'restore VMs whose name exists on the host as Qubes names them: <name>1 … <name>99')
  .option('--skip-conflicting', 'skip VMs whose name exists on the host')
  .option('--skip-broken', 'skip VMs whose template or netVM is neither on the host nor restored')
  .option('--ignore-missing', 'use the host defaults for missing templates/netVMs (keep the reference where the host has none)')
  .option('--ignore-size-limit', "restore a VM even when its data unpacks to more than the size the backup's qubes.xml states for it (by default: at most that size, a quarter more and 64 MiB, so that the free-space check holds; the VM fails otherwise)")
  .option('-p, --passphrase-file <file>', "read the passphrase from the first line of FILE ('-' = stdin); otherwise ask on the terminal")
  .addOption(new Option('--passphrase-command <cmd>', 'run this shell command and take the first line of its output as the passphrase').conflicts('passphraseFile'))
  .option('-Z, --compression-filter <prog>', 'decompress with this program instead of the one the header names (allow-list only; also spelled --compress-filter, as qvm-backup has it)')
  .addOption(aliasOption('--compress-filter <prog>'))
  .option('--verify-only', 'a restore that installs nothing: everything selected authenticated, decrypted, decompressed and extracted into a scratch directory in $TMPDIR (default /var/tmp; images as placeholders without data) with every check a restore makes, then removed; nothing else on the host is written')
  .option('--list', 'show what the archive holds (format, compression, encryption, KDF cost, backup id and date, the VMs and the dom0 home) from its header and qubes.xml, both authenticated; reads nothing else and writes nothing')
  .option('-y, --yes', 'do not ask for confirmation')
  .option('-q, --quiet', 'print only warnings and errors')
  .option('-v, --verbose', 'also print the effective settings and a line per file as it completes')
  .option('--json', 'progress and result as JSON lines on stdout')
  .option('--stats', 'print the stage profile at the end (busy time per stage, worker use, key derivations, child processes; with --json: the summary\'s "stats" object)')
  .addOption(stallTimeoutOption())
  .addOption(new Option('--threads <n>', 'worker threads').argParser(intOption('--threads', 1, MAX_THREADS)).default(h.threads, shownDefault(h, 'the number of CPU cores')))
  .option('--direct-io', 'write the VM images around the page cache (O_DIRECT, where the filesystem allows it): a little less CPU than the default (which hands an image\'s pages back once they are on disk) and none of the images\' data in the page cache (in dom0: the desktop\'s memory), but they are written as fast as the disk takes one 8 MiB write at a time (slower here)')
  .option('--max-memory <size>', `bound on buffer memory: chunks in flight + concurrent scrypt derivations (128·r·N bytes each); an archive asking for more than this minus 255 MiB per derivation is refused before deriving (default 1 GiB + 512 MiB per thread, at most 1/4 of RAM, at least 2.5 GiB${h.generic ? '' : `: here ${formatBytes(defaultRestoreMaxMemory(h.threads, totalmem()))}`})`, sizeOption('--max-memory'))
  .version(VERSION, '-V, --version')
  .addHelpText('after', renderSections(RESTORE_SECTIONS));

/**
 * The archive location and the VM names from the positional arguments: with --source-command the
 * archive comes from the command and every argument is a VM name (one that cannot be a VM name is
 * a location given as well); without it the first argument is the location. A directory must be
 * a format 1 backup (checked here, before anything is asked).
 */
async function locationAndVms(args: [string | undefined, string[]], sourceCommand: string | undefined, passphraseFile: string | undefined): Promise<{ location: string; vms: string[] }> {
  const [first, rest] = args;
  if (sourceCommand !== undefined) {
    if (first === undefined) return { location: '', vms: rest };
    if (!isValidVmName(first, { allowDot: true })) {
      throw new QvmBackupError('ERR_USAGE', `--source-command delivers the archive: give no backup location (${JSON.stringify(first)}); the arguments after the options are VM names`);
    }
    return { location: '', vms: [first, ...rest] };
  }
  if (first === undefined) throw new QvmBackupError('ERR_USAGE', "missing required argument 'backup-location' (or give --source-command)");
  if (passphraseFile === '-' && first === '-') throw new QvmBackupError('ERR_USAGE', "-p - and the archive '-' cannot both be read from stdin: give the passphrase in a file");
  if (first !== '-' && (await stat(first).then((st) => st.isDirectory(), () => false))) await checkBackupDirectory(first);
  return { location: first, vms: rest };
}

/** With -d VM: the location is a path (or command, or with --location-is-service a service name)
 *  in the VM, never checked here; the rest are VM names. */
function vmLocationAndVms(args: [string | undefined, string[]]): { location: string; vms: string[] } {
  const [first, rest] = args;
  if (first === undefined || first.replace(/[\r\n]/g, '') === '') throw new QvmBackupError('ERR_USAGE', "-d/--dest-vm needs a backup location: the path (or command) the VM's qubes.Restore is given, or with --location-is-service the service name");
  return { location: first, vms: rest };
}

/** The VM and (with --location-is-service) the service name, checked before anything is asked. */
function checkVmSource(v: SourceVm, args: [string | undefined, string[]]): void {
  qvmRunArgs(v.vm, v.locationIsService && args[0] !== undefined ? args[0] : RESTORE_SERVICE);
}

export async function main(): Promise<number> {
  const program = restoreProgram();
  const parsed = parseOrExit(program);
  if (parsed !== null) return parsed;
  const o = program.opts();
  decideJson(o['json'] === true, o['list'] === true ? 'list' : o['verifyOnly'] === true ? 'verify' : 'restore');
  let location: string;
  let vms: string[];
  let compressionFilter: string | undefined;
  const destVm = o['destVm'] as string | undefined;
  /** -p FILE is a regular file (read at once) */
  let passphraseFromFile = false;
  const sourceVm = destVm !== undefined && destVm !== 'dom0' ? { vm: destVm, locationIsService: o['locationIsService'] === true } : undefined;
  try {
    if (o['locationIsService'] && sourceVm === undefined) throw new QvmBackupError('ERR_USAGE', '--location-is-service needs -d/--dest-vm with a VM other than dom0');
    if (sourceVm) checkVmSource(sourceVm, program.processedArgs as [string | undefined, string[]]);
    ({ location, vms } = sourceVm ? vmLocationAndVms(program.processedArgs as [string | undefined, string[]]) : await locationAndVms(program.processedArgs as [string | undefined, string[]], o['sourceCommand'] as string | undefined, o['passphraseFile'] as string | undefined));
    compressionFilter = eitherSpelling(program, 'compressionFilter', 'compressFilter') as string | undefined;
    passphraseFromFile = await checkPassphraseFile(o['passphraseFile'] as string | undefined);
  } catch (e) {
    const { json, operation } = jsonOfArgv('qvm-backup-restore');
    return reportError('qvm-backup-restore', e, json, undefined, operation);
  }
  if (o['list'] === true) return listMain(o, location, vms, compressionFilter);
  const verifyOnly = o['verifyOnly'] === true;
  const progress = makeProgress(o, verifyOnly ? 'verify' : 'restore');
  // a source command runs for sure: execa is loaded with the start-up, not inside the timed run
  if (sourceVm !== undefined || o['sourceCommand'] !== undefined) await loadSpawner();
  const stats = makeStats(o, verifyOnly ? 'verify' : 'restore');
  const stop = abortOnSignals((sig) => {
    progress.warn(`${sig}: stopping, nothing more will be installed (press Ctrl-C again to force)`);
    progress.stopping();
  });
  const unwatch = watchStalls(progress, stop, o['stallTimeout'] as number | undefined);
  try {
    const r = await runRestore({
      location,
      ...(o['sourceCommand'] !== undefined ? { sourceCommand: o['sourceCommand'] as string } : {}),
      ...(sourceVm !== undefined ? { sourceVm } : {}),
      vms,
      exclude: o['exclude'] as string[],
      skipDom0Home: o['skipDom0Home'] === true,
      ignoreUsernameMismatch: o['ignoreUsernameMismatch'] === true,
      renameConflicting: o['renameConflicting'] === true,
      skipConflicting: o['skipConflicting'] === true,
      skipBroken: o['skipBroken'] === true,
      ignoreMissing: o['ignoreMissing'] === true,
      ...(o['ignoreSizeLimit'] === true ? { ignoreSizeLimit: true } : {}),
      verifyOnly,
      qubesRoot: o['qubesRoot'] as string,
      dom0Home: o['dom0Home'] as string,
      ...(compressionFilter !== undefined ? { compressionFilter } : {}),
      threads: o['threads'] as number,
      ...(o['maxMemory'] !== undefined ? { maxMemory: o['maxMemory'] as number } : {}),
      getPassphrase: () => stats.userWait(() => readPassphrase({ file: o['passphraseFile'] as string | undefined, command: o['passphraseCommand'] as string | undefined, confirm: false, signal: stop.signal })),
      // -p FILE, a regular file, asks no one and is read at once (the terminal's prompt, stdin, a
      // command, a FIFO or a device such as /dev/tty may wait for someone)
      passphraseAsksNoOne: passphraseFromFile,
      confirm: async (table, plan) => {
        progress.plan(table, restorePlanJson(plan));
        // one question, Qubes' words, for a restore and a verification alike
        return stats.userWait(() => confirmOnTty('Do you want to proceed?', o['yes'] === true, stop.signal));
      },
      confirmWaits: asksOnTty(o['yes'] === true),
      progress,
      signal: stop.signal,
      stats,
      ...(process.env['QVMB_IMAGE_EXTRACTION'] === 'tar' ? { imageExtraction: 'tar' as const } : {}),
      ...(process.env['QVMB_PREFAULT'] === '0' ? { prefaultImages: false } : {}),
      ...(process.env['QVMB_DROP_BEHIND'] === '0' ? { dropBehind: false } : {}),
      ...(o['directIo'] === true ? { directImageWrites: true } : {}),
    });
    const names = r.restored.map((x) => (x.name === x.from ? x.name : `${x.from} as ${x.name}`));
    const text = verifyOnly ? `Verification succeeded: ${names.length} VM(s)${r.dom0User !== undefined ? ' and the dom0 home' : ''} complete${r.unauthenticated === true ? ' (a format 1 directory: its VMs\' directories are there; nothing in it is authenticated, and its content is checked only by a restore)' : ' and authentic'}` : `Restore finished: ${names.join(', ') || 'no VMs'}${r.dom0HomeDir ? `; dom0 home in ${r.dom0HomeDir}` : ''}`;
    const home = r.dom0User === undefined ? null : { user: r.dom0User, ...(r.dom0HomeDir !== undefined ? { path: r.dom0HomeDir } : {}) };
    // verification results are not "restored": nothing was written
    const result = verifyOnly ? { verified: r.restored.map((x) => ({ name: x.from })) } : { restored: r.restored };
    progress.finish(true, text, { ...result, dom0_home: home, max_rss_bytes: peakRssBytes(), ...statsFields(stats, o['json'] === true) });
    printStats(stats, o['json'] === true);
    return EXIT.OK;
  } catch (e) {
    return endFailedRun('qvm-backup-restore', e, { json: o['json'] === true, progress, failText: verifyOnly ? 'Verification failed' : 'Restore failed', interruptedBy: stop.received(), stoppedFor: stop.stoppedFor() });
  } finally {
    unwatch();
  }
}

/** --list: the archive's settings and VMs (stdout: it is what was asked for), nothing else read. */
async function listMain(o: Record<string, unknown>, location: string, vms: string[], compressionFilter: string | undefined): Promise<number> {
  const json = o['json'] === true;
  const stop = abortOnSignals(() => {});
  try {
    if (vms.length > 0) throw new QvmBackupError('ERR_USAGE', `--list shows every VM of the archive: give no VM names (${vms.join(', ')})`);
    if (o['verifyOnly'] === true) throw new QvmBackupError('ERR_USAGE', '--list and --verify-only cannot be combined: --list reads only the header and qubes.xml');
    const listing = await listArchive({
      location,
      ...(o['sourceCommand'] !== undefined ? { sourceCommand: o['sourceCommand'] as string } : {}),
      ...(compressionFilter !== undefined ? { compressionFilter } : {}),
      threads: o['threads'] as number,
      ...(o['maxMemory'] !== undefined ? { maxMemory: o['maxMemory'] as number } : {}),
      getPassphrase: () => readPassphrase({ file: o['passphraseFile'] as string | undefined, command: o['passphraseCommand'] as string | undefined, confirm: false, signal: stop.signal }),
      signal: stop.signal,
    });
    outputIsTheResult(); // the command's end waits for its reader, without a time limit
    results().writeKept(json ? JSON.stringify({ message_type: 'listing', operation: 'list', ...listing }) + '\n' : formatListing(listing));
    return EXIT.OK;
  } catch (e) {
    const sig = stop.received();
    if (sig !== undefined) return reportError('qvm-backup-restore', new QvmBackupError('ERR_CANCELLED', `interrupted by ${sig}`, { signal: sig }, e), json, exitCodeForSignal(sig), 'list');
    return reportError('qvm-backup-restore', e, json, undefined, 'list');
  }
}

