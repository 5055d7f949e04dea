// Qubes qrexec services through qvm-run, the way dom0's qvm-backup and qvm-backup-restore reach a
// VM: `qvm-run --pass-io --service VM SERVICE` runs the service in the VM (starting the VM if
// needed) with our stdin/stdout as the service's; its exit status is the service's.
import { fail } from '../errors.js';
import { findInPath } from './child-lifetime.js';
import { isValidVmName } from '../qubes-xml/index.js';

/** The program that runs a service in a VM (a stand-in on PATH in tests). */
export const QVM_RUN = 'qvm-run';

/** `qubes.Backup` receives the archive; `qubes.Restore` sends it (in qfile format, see qfile-stream). */
export const BACKUP_SERVICE = 'qubes.Backup';
export const RESTORE_SERVICE = 'qubes.Restore';

/** Arguments of qvm-run for `service` in `vm` (both checked: neither can read as an option), and
 *  qvm-run found on PATH: without it (not Qubes' dom0) -d fails now, before the plan, not after it
 *  with setpriv's "failed to execute". */
export function qvmRunArgs(vm: string, service: string): string[] {
  checkVmName(vm);
  checkServiceName(service);
  if (findInPath(QVM_RUN) === null) fail('ERR_USAGE', `--dest-vm ${vm}: ${QVM_RUN} is not on PATH (it is Qubes dom0's); outside dom0 use --dest-command / --source-command`);
  return ['--pass-io', '--service', vm, service];
}

/** A VM name as --dest-vm accepts it (Qubes' VM name rules). */
export function checkVmName(vm: string): void {
  if (!isValidVmName(vm, { allowDot: true })) fail('ERR_USAGE', `--dest-vm: not a valid VM name: ${JSON.stringify(vm)}`);
}

/** A qrexec service name, optionally with an argument after '+' (Qubes' allowed characters). */
export function checkServiceName(service: string): void {
  if (!/^[A-Za-z0-9_.][A-Za-z0-9_.+-]*$/.test(service) || service.length > 64) fail('ERR_USAGE', `not a valid qrexec service name: ${JSON.stringify(service)} (letters, digits and . _ - +; an argument after +)`);
}

/** The location line Qubes sends first: carriage returns and newlines removed, one newline after. */
export function locationLine(location: string): string {
  return `${location.replace(/[\r\n]/g, '')}\n`;
}
