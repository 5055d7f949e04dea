// The only table from error code to process exit status. Listed in both commands' --help.
import { isQvmBackupError, type ErrorCode } from '../errors.js';

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
  INTERRUPTED: 130,
} as const;

const byCode: Partial<Record<ErrorCode, number>> = {
  ERR_USAGE: EXIT.USAGE,
  ERR_PLAN: EXIT.USAGE,
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
  ERR_LOCKED: EXIT.LOCKED,
};

/** Exit status for an error thrown out of a command. */
export function exitCodeFor(err: unknown): number {
  if (isQvmBackupError(err)) return byCode[err.code] ?? EXIT.FAILURE;
  if (typeof err === 'object' && err !== null && (err as { code?: unknown }).code === 'ENOSPC') return EXIT.NO_SPACE;
  return EXIT.FAILURE;
}

export const EXIT_STATUS_HELP = `
Exit status:
  0    success
  1    failure (I/O or internal error)
  2    usage error: bad option, unknown VM, plan problems (conflicts, missing templates)
  3    partial: some VMs failed, the others completed
  4    wrong passphrase or corrupted backup header
  5    integrity failure: a chunk failed authentication, or the archive is corrupt or truncated
  6    not enough free space
  7    GNU tar or a compression program failed (or is missing)
  8    another run holds the host lock (<qubes-root>/qubes.xml.lock)
  130  interrupted (Ctrl-C / SIGTERM); partial output removed`;
