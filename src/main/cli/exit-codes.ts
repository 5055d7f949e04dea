// The only table from error code to process exit status. Listed in both commands' --help.
// Only codes decide (QvmBackupError codes, errno codes), never the text of a message.
import { constants } from 'node:os';
import type { ErrorCode } from '../errors.js';

export const EXIT = {
  OK: 0,
  FAILURE: 1,
  USAGE: 2,
  PARTIAL: 3,
  AUTH: 4,
  INTEGRITY: 5,
  NO_SPACE: 6,
  TAR: 7,
  LOCKED: 8,
  HANGUP: 129,
  INTERRUPTED: 130,
  PIPE: 141,
  TERMINATED: 143,
} as const;

const byCode: Partial<Record<ErrorCode, number>> = {
  ERR_USAGE: EXIT.USAGE,
  ERR_PLAN: EXIT.USAGE,
  ERR_NOT_A_BACKUP: EXIT.USAGE,
  ERR_UNSUPPORTED: EXIT.USAGE,
  ERR_PARTIAL: EXIT.PARTIAL,
  ERR_HEADER_AUTH: EXIT.AUTH,
  ERR_CHUNK_AUTH: EXIT.INTEGRITY,
  ERR_CORRUPT: EXIT.INTEGRITY,
  ERR_BAD_HEADER: EXIT.INTEGRITY,
  ERR_UNSAFE_NAME: EXIT.INTEGRITY,
  ERR_UNSAFE_CONTENT: EXIT.INTEGRITY,
  ERR_TOO_LARGE: EXIT.INTEGRITY,
  ERR_QUBES_XML: EXIT.INTEGRITY,
  ERR_NO_SPACE: EXIT.NO_SPACE,
  ERR_TAR_FAILED: EXIT.TAR,
  ERR_FILTER_FAILED: EXIT.TAR,
  ERR_CANCELLED: EXIT.INTERRUPTED,
  ERR_STALLED: EXIT.FAILURE,
  ERR_LOCKED: EXIT.LOCKED,
  ERR_DECLINED: EXIT.OK,
};

/** errno codes of a full disk or quota: exit 6 wherever they surface */
const NO_SPACE_ERRNO = new Set(['ENOSPC', 'EDQUOT']);

/** The `code` property of any error object: errors that crossed a worker thread keep it even
 *  when they lost their class and the QvmBackupError marker. */
export function errorCodeOf(err: unknown): string | undefined {
  const code = typeof err === 'object' && err !== null ? (err as { code?: unknown }).code : undefined;
  return typeof code === 'string' ? code : undefined;
}

/** Exit status for an error thrown out of a command. */
export function exitCodeFor(err: unknown): number {
  const code = errorCodeOf(err);
  const mapped = code !== undefined ? byCode[code as ErrorCode] : undefined;
  if (mapped !== undefined) return mapped;
  // a generic failure (ERR_IO, ERR_INTERNAL, a plain Error) caused by a full disk is a full disk
  let e: unknown = err;
  for (let depth = 0; typeof e === 'object' && e !== null && depth < 16; depth++, e = (e as { cause?: unknown }).cause) {
    if (NO_SPACE_ERRNO.has(errorCodeOf(e) ?? '')) return EXIT.NO_SPACE;
  }
  return EXIT.FAILURE;
}

/** 128 + the signal number, as shells report a command ended by that signal (SIGINT 130, SIGTERM 143). */
export function exitCodeForSignal(sig: NodeJS.Signals): number {
  return 128 + (constants.signals[sig] ?? 0);
}

/** What each exit status means: the --help text and the man pages are made from this one table. */
export const EXIT_STATUS_TABLE: readonly (readonly [number, string])[] = [
  [EXIT.OK, 'success; also when the confirmation is answered "no" (nothing done)'],
  [EXIT.FAILURE, 'failure (I/O or internal error; also a run stopped by --stall-timeout)'],
  [EXIT.USAGE, 'usage error: bad option, unknown VM, not a Qubes backup, plan problems (conflicts, missing templates)'],
  [EXIT.PARTIAL, 'partial: some VMs failed, the others completed (also an archive cut short after its first VMs were whole: those are restored)'],
  [EXIT.AUTH, 'wrong passphrase or corrupted backup header'],
  [EXIT.INTEGRITY, 'integrity failure: a chunk failed authentication, the archive is corrupt or truncated (or a --source-command or the qubes.Restore of a VM failed), over a limit, or holds refused content'],
  [EXIT.NO_SPACE, 'not enough free space'],
  [EXIT.TAR, 'GNU tar or a compression program failed (or is missing)'],
  [EXIT.LOCKED, 'another run holds the host lock (<qubes-root>/qubes.xml.lock)'],
  [EXIT.HANGUP, 'its terminal went away (SIGHUP: a closed window or ssh session; also a write to it that fails); partial output removed'],
  [EXIT.INTERRUPTED, 'interrupted by SIGINT (Ctrl-C); partial output removed'],
  [EXIT.PIPE, 'its own output went away (stdout or stderr closed: a --json reader that stopped, a pipe into head; as SIGPIPE); partial output removed'],
  [EXIT.TERMINATED, 'terminated by SIGTERM; partial output removed'],
];
