// qvm-backup: parse argv, run the backup, map errors to exit codes. Nothing else.
import { Command, Option } from 'commander';
import { totalmem } from 'node:os';
import { resolve } from 'node:path';
import { runBackup } from '../backup/run-backup.js';
import { checkPassphraseFile, readPassphrase } from './passphrase.js';
import { sizeOption, formatBytes, exactSize } from './size.js';
import { loadSpawner } from '../io/spawn.js';
import { makeStats, statsFields, printStats, makeProgress, confirmOnTty, abortOnSignals, reportError, endFailedRun, intOption as int, collect, parseOrExit, jsonOfArgv, decideJson, watchStalls, stallTimeoutOption, hostDefaults, shownDefault, aliasOption, eitherSpelling, type HostDefaults } from './common.js';
import { EXIT } from './exit-codes.js';
import { EXIT_STATUS_SECTION, PASSPHRASE_SECTION, environmentSection, renderSections, type HelpSection } from './help-text.js';
import { DEFAULT_SCRYPT_LOGN, MAX_SCRYPT_LOGN, MAX_THREADS, MIN_CHUNK_SIZE_BYTES, MIN_SCRYPT_LOGN, maxChunkSize } from '../format/limits.js';
import { defaultMaxMemory } from '../pipeline/memory-default.js';
import { VERSION } from '../version.js';
import { fail, QvmBackupError } from '../errors.js';
import { DEFAULT_PROFILE_DIR, loadProfile, saveProfile, type BackupProfile } from './backup-profile.js';
import { peakRssBytes } from '../stats/peak-rss.js';


/** What --help prints after the options (and the man page has as sections). */
export const BACKUP_SECTIONS: readonly HelpSection[] = [
  {
    title: 'Memory',
    text:
      'Format 4 derives one scrypt key per chunk, each needing 128·r·N bytes (512 MiB at the default --scrypt-logn 19). Concurrent derivations are limited so that chunks in flight plus derivations stay within --max-memory; a small machine gets fewer derivations at a time, never more memory than asked (except the minimum: 2 chunks and one derivation, with a warning). ' +
      'Lower --scrypt-logn makes each chunk cheaper to encrypt and to restore but weakens the key against guessing; 19 is what the scrypt tool and Qubes R4 pick on typical hardware.',
  },
  PASSPHRASE_SECTION,
  {
    title: 'Examples',
    items: [
      ['qvm-backup -p ~/backup.pass /mnt/backups', 'every VM marked include_in_backups and the dom0 home, into /mnt/backups/qubes-<date>'],
      ['qvm-backup --passphrase-command "pass show qubes-backup" /mnt/backups work vault', 'two VMs, the passphrase from a password manager'],
      ['qvm-backup -p ~/backup.pass --dest-command \'ssh nas "cat > $QVM_BACKUP_LOCATION"\' backups/today', 'straight to another machine, no local file'],
    ],
  },
  environmentSection([['QVM_BACKUP_LOCATION', 'set for --dest-command: the BACKUP_LOCATION argument']]),
  EXIT_STATUS_SECTION,
];

/** The command line of qvm-backup: parsed by main(), printed by --help, and the source of the man page. */
export const backupProgram = (h: HostDefaults = hostDefaults()): Command => new Command('qvm-backup')
  .description('Back up Qubes VMs (and the dom0 home) into one encrypted, authenticated archive that stock Qubes restores.')
  .argument('[backup-location]', "directory (the archive is named qubes-%Y-%m-%dT%H%M%S inside it, as Qubes names it), a file path, or '-' for stdout; with -d, the location the VM is given; may come from --profile")
  .argument('[vm...]', 'VMs to back up (default: every VM with include_in_backups, plus dom0 = its home)')
  .option('-x, --exclude <vm>', 'exclude a VM (repeatable; "-x dom0" leaves out the dom0 home)', collect, [])
  .addOption(new Option('--qubes-root <dir>', 'directory holding qubes.xml and the VM files').default(h.qubesRoot, shownDefault(h, '$QUBES_ROOT, else /var/lib/qubes')))
  .addOption(new Option('--dom0-home <dir>', 'the dom0 home directory (its basename is the user name)').default(h.dom0Home, shownDefault(h, "the home of the first member of group qubes (as Qubes), else $HOME")))
  .option('-p, --passphrase-file <file>', "read the passphrase from the first line of FILE ('-' = stdin); otherwise ask twice on the terminal")
  .addOption(new Option('--passphrase-command <cmd>', 'run this shell command and take the first line of its output as the passphrase (asked once)').conflicts('passphraseFile'))
  .addOption(new Option('--format <n>', 'backup format: 4 (Qubes R4, scrypt), 3 (R3, openssl+HMAC), 2 (R2, tar multi-volume)').choices(['2', '3', '4']).default('4'))
  .option('-e, --encrypt', 'encrypt (the default; format 4 always encrypts)')
  .option('--no-encrypt', 'formats 2 and 3 only: do not encrypt (chunks are still HMAC-authenticated)')
  .option('-E, --enc-algo <cipher>', 'formats 2/3: openssl cipher', 'aes-256-cbc')
  .option('-H, --hmac-algo <digest>', 'formats 2/3: HMAC digest', 'SHA512')
  .option('-z, --compress', 'compress (the default)')
  .option('--no-compress', 'do not compress')
  .option('-Z, --compress-filter <prog>', 'compression: gzip or zstd (in-process, parallel blocks; zstd needs Node >= 22.15, else the zstd program runs with -T<threads>), or one of pigz, bzip2, pbzip2, xz, lzma, zstdmt (also spelled --compression-filter, as qvm-backup-restore has it)', 'gzip')
  .addOption(aliasOption('--compression-filter <prog>'))
  .option('--compress-level <n>', 'gzip 1-9 (default 6) or zstd/zstdmt 1-19 (default 3)', int('--compress-level', 1, 19))
  .option('--scrypt-logn <n>', 'format 4: scrypt cost, N = 2^n (memory 128·8·N bytes per derivation: 512 MiB at 19)', int('--scrypt-logn', MIN_SCRYPT_LOGN, MAX_SCRYPT_LOGN), DEFAULT_SCRYPT_LOGN)
  .option('--chunk-size <size>', `chunk size: ${exactSize(MIN_CHUNK_SIZE_BYTES)} to ${exactSize(maxChunkSize(4))} (the default, as Qubes), a multiple of 4096; format 2: the tar volume size, up to ${exactSize(maxChunkSize(2))} (the default), a multiple of 10240`, sizeOption('--chunk-size'))
  .option('--dest-command <cmd>', 'pipe the archive into this shell command instead of writing a file; BACKUP_LOCATION is passed to it as $QVM_BACKUP_LOCATION (e.g. --dest-command \'ssh host "cat > $QVM_BACKUP_LOCATION"\')')
  .addOption(new Option('-d, --dest-vm <vm>', "send the archive to this VM's qubes.Backup service (through qvm-run --pass-io --service), BACKUP_LOCATION as its first line; dom0 = a local file, as without -d").conflicts('destCommand'))
  .option('--profile <name|file>', "take the settings of this backup profile (Qubes' YAML format: NAME = <profile-dir>/NAME.conf, or a path with a '/'); options given on the command line override its values")
  .option('--save-profile <name|file>', 'save the settings of this run (the passphrase included) as a profile, mode 0600, once the plan was confirmed and the passphrase read')
  .addOption(new Option('--profile-dir <dir>', 'where profile NAMEs are kept').default(DEFAULT_PROFILE_DIR))
  .option('-y, --yes', 'do not ask for confirmation')
  .option('-q, --quiet', 'print only warnings and errors')
  .option('-v, --verbose', 'also print the effective settings and a line per file as it is written')
  .option('--json', "progress and result as JSON lines on stdout (refused with '-': stdout carries the archive)")
  .option('--stats', 'print the stage profile at the end (busy time per stage, worker use, child processes; with --json: the summary\'s "stats" object)')
  .addOption(stallTimeoutOption())
  .addOption(new Option('--threads <n>', 'worker threads').argParser(int('--threads', 1, MAX_THREADS)).default(h.threads, shownDefault(h, 'the number of CPU cores')))
  .option('--max-memory <size>', `bound on buffer memory: chunks in flight + compression blocks + scrypt derivations (default: 1 GiB + 512 MiB per thread for format 4 at logN 19, at most 1/4 of RAM${h.generic ? '' : `: here ${formatBytes(defaultMaxMemory(h.threads, DEFAULT_SCRYPT_LOGN, totalmem()))}`})`, sizeOption('--max-memory'))
  .version(VERSION, '-V, --version')
  .addHelpText('after', renderSections(BACKUP_SECTIONS));

export async function main(): Promise<number> {
  const program = backupProgram();
  const parsed = parseOrExit(program);
  if (parsed !== null) return parsed;
  const o = program.opts();
  let s: Settings;
  // the archive may go to stdout: then no JSON line, ever (known for sure once the settings are)
  const toStdout = (location: string | undefined, destVm: string | undefined): boolean => location === '-' && o['destCommand'] === undefined && (destVm === undefined || destVm === 'dom0');
  const first = (program.processedArgs as [string | undefined])[0];
  decideJson(o['json'] === true && first !== undefined && !toStdout(first, o['destVm'] as string | undefined), 'backup');
  try {
    s = await settings(program);
    await checkPassphraseFile(o['passphraseFile'] as string | undefined);
  } catch (e) {
    const { json, operation } = jsonOfArgv('qvm-backup');
    return reportError('qvm-backup', e, json, undefined, operation);
  }
  decideJson(o['json'] === true && !toStdout(s.location, s.destVm), 'backup');
  const { location, vms, destVm, compressFilter } = s;
  if (o['json'] && toStdout(location, destVm)) {
    // checked before any JSON is printed: the JSON lines would end up inside the archive
    return reportError('qvm-backup', new QvmBackupError('ERR_USAGE', "--json prints to stdout, which carries the archive with '-': drop --json, or pipe the archive with --dest-command"), false);
  }
  const progress = makeProgress(o, 'backup');
  // every backup starts processes (tar, the hole-map helper): execa is loaded with the start-up,
  // not inside the timed run
  await loadSpawner();
  const stats = makeStats(o, 'backup');
  const stop = abortOnSignals((sig) => {
    progress.warn(`${sig}: stopping (press Ctrl-C again to force)`);
    progress.stopping();
  }, { stdoutIsOutput: !toStdout(location, destVm) });
  const unwatch = watchStalls(progress, stop, o['stallTimeout'] as number | undefined);
  const format = Number(o['format']) as 2 | 3 | 4;
  try {
    // defaults and validation of the values: resolveBackupSettings, in runBackup
    const result = await runBackup({
      location,
      ...(o['destCommand'] !== undefined ? { destCommand: o['destCommand'] as string } : {}),
      ...(destVm !== undefined ? { destVm } : {}),
      vms,
      exclude: s.exclude,
      qubesRoot: o['qubesRoot'] as string,
      dom0Home: o['dom0Home'] as string,
      format,
      encrypt: o['encrypt'] !== false,
      cipher: o['encAlgo'] as string,
      hmacAlgorithm: o['hmacAlgo'] as string,
      compress: s.compress,
      compressFilter,
      ...(o['compressLevel'] !== undefined ? { compressLevel: o['compressLevel'] as number } : {}),
      scryptLogN: o['scryptLogn'] as number,
      ...(o['chunkSize'] !== undefined ? { chunkSize: o['chunkSize'] as number } : {}),
      threads: o['threads'] as number,
      ...(o['maxMemory'] !== undefined ? { maxMemory: o['maxMemory'] as number } : {}),
      getPassphrase: async () => {
        const pw = s.profile?.passphraseText !== undefined && o['passphraseFile'] === undefined && o['passphraseCommand'] === undefined ? s.profile.passphraseText : await stats.userWait(() => readPassphrase({ file: o['passphraseFile'] as string | undefined, command: o['passphraseCommand'] as string | undefined, confirm: true, signal: stop.signal }));
        if (o['saveProfile'] !== undefined) progress.info(`saved backup profile ${await saveProfile(o['saveProfile'] as string, o['profileDir'] as string, profileOf(s, pw))}`);
        return pw;
      },
      confirm: async (summary, plan) => {
        progress.plan(summary, plan);
        return stats.userWait(() => confirmOnTty('Do you want to proceed?', o['yes'] === true, stop.signal));
      },
      progress,
      signal: stop.signal,
      stats,
      ...(process.env['QVMB_INNER_TAR'] === 'tar' ? { innerArchives: 'tar' as const } : {}),
    });
    progress.finish(true, `Backup finished: ${result.path}, ${result.compression.text}`, {
      path: result.path,
      // the same shape as the plan: VM names, the dom0 home apart
      vms: result.vms.filter((n) => n !== 'dom0'),
      dom0_home: result.dom0User === undefined ? null : { user: result.dom0User },
      chunks: result.chunks,
      bytes_written: result.bytesWritten,
      compression: result.compression.json,
      max_rss_bytes: peakRssBytes(),
      ...statsFields(stats, o['json'] === true),
    });
    printStats(stats, o['json'] === true);
    return EXIT.OK;
  } catch (e) {
    return endFailedRun('qvm-backup', e, { json: o['json'] === true, progress, failText: 'Backup failed', interruptedBy: stop.received(), stoppedFor: stop.stoppedFor() });
  } finally {
    unwatch();
  }
}

/** What this run does: the command line over the --profile (if any). */
interface Settings {
  location: string;
  vms: string[];
  exclude: string[];
  destVm: string | undefined;
  compress: boolean;
  compressFilter: string;
  profile: BackupProfile | undefined;
}

async function settings(program: Command): Promise<Settings> {
  const o = program.opts();
  const [loc, args] = program.processedArgs as [string | undefined, string[]];
  const cli = (k: string) => program.getOptionValueSource(k) === 'cli';
  const profile = o['profile'] !== undefined ? (await loadProfile(o['profile'] as string, o['profileDir'] as string)).profile : undefined;
  const location = loc ?? profile?.destinationPath;
  if (location === undefined) fail('ERR_USAGE', "missing required argument 'backup-location'"); // as commander words it (without --profile)
  const filter = eitherSpelling(program, 'compressFilter', 'compressionFilter') as string;
  const filterGiven = cli('compressFilter') || cli('compressionFilter');
  const fromProfile = profile?.compression;
  const s: Settings = {
    location,
    vms: args.length > 0 ? args : (profile?.include ?? []),
    // -x adds to the profile's exclusions: a VM the profile leaves out is never backed up because
    // of another -x (Qubes refuses -x with --profile; replacing the list dropped them silently)
    exclude: [...new Set([...(profile?.exclude ?? []), ...(o['exclude'] as string[])])],
    // --dest-command on the command line replaces the profile's destination VM as well
    destVm: cli('destVm') || !profile ? (o['destVm'] as string | undefined) : o['destCommand'] !== undefined ? undefined : profile.destinationVm,
    compress: cli('compress') ? o['compress'] !== false : filterGiven || fromProfile === undefined || fromProfile !== false,
    compressFilter: filterGiven || typeof fromProfile !== 'string' ? filter : fromProfile,
    profile,
  };
  if (o['saveProfile'] !== undefined) {
    if (o['destCommand'] !== undefined) fail('ERR_USAGE', '--save-profile: a profile cannot hold --dest-command (Qubes profiles name a VM and a path)');
    if (location === '-' && (s.destVm === undefined || s.destVm === 'dom0')) fail('ERR_USAGE', "--save-profile: a profile cannot hold the location '-' (stdout)");
  }
  return s;
}

/** The profile --save-profile writes, as Qubes does: a local path made absolute, include null for
 *  the default selection, compression true (gzip), false or the filter. */
function profileOf(s: Settings, passphrase: string): BackupProfile {
  const local = s.destVm === undefined || s.destVm === 'dom0';
  return {
    include: s.vms.length > 0 ? s.vms : null,
    exclude: s.exclude,
    destinationVm: s.destVm ?? 'dom0',
    destinationPath: local ? resolve(s.location) : s.location,
    passphraseText: passphrase,
    compression: !s.compress ? false : s.compressFilter === 'gzip' ? true : s.compressFilter,
  };
}
