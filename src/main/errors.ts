// The one error type of the tool: a stable `code`, the context it concerns (VM, file, chunk,
// command) and the original `cause`. Classify errors by `code`, never by `instanceof`: errors that
// cross a worker thread lose their class.

export type ErrorCode =
  | 'ERR_USAGE' // wrong command line
  | 'ERR_NOT_A_BACKUP' // the location is not a Qubes backup at all (empty, another kind of file, a Qubes root)
  | 'ERR_BAD_HEADER' // backup-header malformed or missing keys
  | 'ERR_HEADER_AUTH' // header HMAC/scrypt check failed: wrong passphrase or corrupted header
  | 'ERR_CHUNK_AUTH' // a chunk's HMAC or scrypt MAC failed
  | 'ERR_CORRUPT' // archive structure broken: truncated, bad tar header, chunk out of order
  | 'ERR_UNSAFE_NAME' // member name rejected (.., absolute, NUL, too long)
  | 'ERR_UNSAFE_CONTENT' // extracted content refused (device node, foreign hard link, symlink where a file belongs)
  | 'ERR_TOO_LARGE' // a size limit was exceeded (header, qubes.xml, scrypt parameters)
  | 'ERR_UNSUPPORTED' // unknown cipher, digest or compression filter
  | 'ERR_QUBES_XML' // qubes.xml cannot be parsed or is invalid
  | 'ERR_TAR_FAILED' // GNU tar exited non-zero or could not be started
  | 'ERR_FILTER_FAILED' // an external compression program failed
  | 'ERR_NO_SPACE' // destination has not enough free space
  | 'ERR_IO' // other filesystem error
  | 'ERR_PLAN' // restore/backup plan has problems (conflicts, missing templates)
  | 'ERR_PARTIAL' // some VMs failed, others succeeded
  | 'ERR_LOCKED' // another run holds the host lock (qubes.xml.lock)
  | 'ERR_CANCELLED' // SIGINT/SIGTERM or abort
  | 'ERR_STALLED' // nothing moved for --stall-timeout seconds: the run was stopped
  | 'ERR_DECLINED' // the user answered no to the confirmation: nothing was done (exit 0, as Qubes)
  | 'ERR_INTERNAL';

export interface ErrorContext {
  vm?: string;
  file?: string;
  chunk?: string;
  command?: string;
  exitCode?: number;
  stderrTail?: string;
  [key: string]: unknown;
}

const kQvmBackupError = Symbol.for('qvm-backup.error');

export class QvmBackupError extends Error {
  readonly code: ErrorCode;
  readonly context: ErrorContext;
  readonly [kQvmBackupError] = true;

  constructor(code: ErrorCode, message: string, context: ErrorContext = {}, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
    this.code = code;
    this.context = context;
  }
}
Object.defineProperty(QvmBackupError.prototype, 'name', { value: 'QvmBackupError', enumerable: false });

/** True for any QvmBackupError, across realms (checks a symbol, not the prototype chain). */
export function isQvmBackupError(e: unknown): e is QvmBackupError {
  return typeof e === 'object' && e !== null && kQvmBackupError in e;
}

/** Shorthand constructor used everywhere: `fail('ERR_CORRUPT', 'truncated chunk', { chunk })`. */
export function fail(code: ErrorCode, message: string, context: ErrorContext = {}, cause?: unknown): never {
  throw new QvmBackupError(code, message, context, cause);
}
