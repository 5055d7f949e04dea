// Where a backup goes, checked before anything is asked or written: a command, stdout, or a file
// (an existing directory gets the default timestamped name inside it). Nothing existing is ever
// replaced: an existing file is refused here, and the file sink claims the final name with link(2)
// at the end (see openFileSink).
import { fstatSync, statSync } from 'node:fs';
import { lstat, stat } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fail } from '../errors.js';
import { commandSink, openFileSink, processSink, stdoutSink, type FileSink, type Sink } from '../io/sink.js';
import { BACKUP_SERVICE, QVM_RUN, locationLine, qvmRunArgs } from '../io/qrexec.js';
import { loadSpawner } from '../io/spawn.js';

const pad = (n: number) => String(n).padStart(2, '0');

/** `qubes-%Y-%m-%dT%H%M%S` in local time: the name Qubes' backup gives an archive written in a dom0
 *  directory (its VM-side qubes.Backup service names its own `qubes-backup-…`). */
export function defaultBackupName(d: Date): string {
  return `qubes-${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}${pad(d.getMinutes())}${pad(d.getSeconds())}`;
}

export interface Destination {
  /** opens the sink (after the plan was confirmed) */
  sink: () => Promise<Sink | FileSink>;
  /** for messages; a file sink's final name may get a `-N` suffix (FileSink.path) */
  path: string;
  /** the local directory written into, for the free-space check */
  localDir?: string;
}

/**
 * Check `location` (or `destCommand`, or `destVm`) and say how to open it; ERR_USAGE when it cannot
 * work. A VM other than dom0 gets the archive through its qubes.Backup service, the location as
 * the first line (the VM decides what it means: a directory gets a timestamped file in it).
 */
export async function resolveDestination(location: string, destCommand: string | undefined, now: Date, destVm?: string, vmNames: readonly string[] = []): Promise<Destination> {
  // The location always comes first, also with --profile: `qvm-backup --profile daily vault`,
  // meant to back up the VM vault, would back up the profile's VMs into a file named vault. A
  // location that names a VM and no directory is refused: in dom0 unless that path exists (./vault
  // is a file named so), in a destination VM always (its paths cannot be looked at from here)
  const vmNamed = (): never =>
    fail('ERR_USAGE', `the backup location '${location}' is the name of a VM of the collection, not a path: VMs to back up come after the location (with --profile too)${destVm !== undefined && destVm !== 'dom0' ? `; give a path in ${destVm}, such as /home/user/${location}` : `; to write a file of that name, give ./${location}`}`);
  if (destVm !== undefined && destVm !== 'dom0') {
    if (destCommand === undefined && !location.includes('/') && vmNames.includes(location)) vmNamed();
    const args = qvmRunArgs(destVm, BACKUP_SERVICE);
    if (location.replace(/[\r\n]/g, '') === '') fail('ERR_USAGE', '--dest-vm needs a backup location: the path (or command) the VM\'s qubes.Backup service is given');
    const what = `${BACKUP_SERVICE} in VM ${destVm}`;
    // qubes.Backup's stdout is its chatter ("Starting Backupcopy"): dropped, as Qubes does
    const sink = async (): Promise<Sink> => {
      await loadSpawner();
      return processSink(QVM_RUN, args, { description: what, what, command: `${QVM_RUN} ${args.join(' ')}`, stdout: 'ignore', firstLine: locationLine(location) });
    };
    return { path: `${destVm}:${location}`, sink };
  }
  if (destCommand !== undefined) {
    // like qubes.Backup, the command learns the location: $QVM_BACKUP_LOCATION (in its environment
    // only, never in ours)
    const sink = async (): Promise<Sink> => {
      await loadSpawner();
      return commandSink(destCommand, { QVM_BACKUP_LOCATION: location });
    };
    return { path: `| ${destCommand}`, sink };
  }
  if (location === '-') {
    // node puts /dev/null where a closed stdout was (`qvm-backup - >&-`): the archive would be lost
    // with exit 0; so would one sent to /dev/null itself
    if (stdoutIsNull()) fail('ERR_USAGE', "the backup location is stdout ('-'), but stdout is /dev/null or was closed: the archive would be lost; redirect stdout to a file or a pipe");
    return { path: '(stdout)', sink: async () => stdoutSink() };
  }
  // an unset variable in a script (`qvm-backup "$DEST" …`) is no location: it would write into the
  // current directory
  if (location === '') fail('ERR_USAGE', 'the backup location is empty (an unset variable?): give a directory, a file path or - for stdout');
  const loc = resolve(location);
  let st;
  let statCode: string | undefined;
  try {
    st = await stat(loc);
  } catch (e) {
    st = undefined;
    statCode = (e as NodeJS.ErrnoException).code;
  }
  if (st === undefined && !location.includes('/') && vmNames.includes(location)) vmNamed();
  // a link whose target is missing would be found "appeared while written" after the whole backup
  if (st === undefined && statCode === 'ENOENT' && (await lstat(loc).then(() => true, () => false))) {
    fail('ERR_USAGE', `backup location ${location} is a symbolic link to a missing target (not followed): give the path itself`);
  }
  // A trailing '/' names a directory: never turn it into a file of that name.
  if (location.endsWith('/') && !st?.isDirectory()) {
    fail('ERR_USAGE', st || statCode === 'ENOTDIR' ? `backup location is not a directory: ${location}` : `backup directory does not exist: ${location}`);
  }
  if (st?.isDirectory()) {
    // the default name: a run in the same second gets `-1`, `-2`, … instead of replacing it
    const path = join(loc, defaultBackupName(now));
    return { path, localDir: loc, sink: () => openFileSink(path, { numbered: true }) };
  }
  if (st) fail('ERR_USAGE', `backup location exists and is not a directory: ${loc} (refusing to overwrite)`);
  const dir = dirname(loc);
  try {
    if (!(await stat(dir)).isDirectory()) throw new Error('not a directory');
  } catch {
    fail('ERR_USAGE', `directory of the backup location does not exist: ${dir}`);
  }
  return { path: loc, localDir: dir, sink: () => openFileSink(loc) };
}

/** fd 1 is /dev/null (node opens it there when the process started with stdout closed). */
function stdoutIsNull(): boolean {
  try {
    const out = fstatSync(1);
    const nul = statSync('/dev/null');
    return out.isCharacterDevice() && out.rdev === nul.rdev;
  } catch {
    return false;
  }
}
