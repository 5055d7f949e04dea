// The library: `import { backup, restore, verify, list } from 'qvm-backup'`. The same runs as the
// two commands (the same plan, checks, archives, errors and cleanup), driven by a program instead
// of a terminal: the passphrase is given (a string or a function), the plan is confirmed by a
// callback (default: yes), progress and messages arrive as events, an AbortSignal stops a run.
// Nothing here prints, reads the terminal, installs signal handlers or exits the process.
//
// A run rejects with a QvmBackupError (`code`: errors.ts; `exitStatusOf(e)` maps it to the
// commands' exit status); a signal that aborts it makes it end with ERR_CANCELLED once it has
// cleaned up (partial archive, staging directory, host lock), never before.
import { availableParallelism } from 'node:os';
import { runBackup } from './backup/run-backup.js';
import { runRestore } from './restore/run-restore.js';
import { listArchive, type ArchiveListing, type ListedVm } from './restore/list-archive.js';
import { restorePlanJson } from './restore/plan/plan-json.js';
import { QvmBackupError, isQvmBackupError, type ErrorCode, type ErrorContext } from './errors.js';
import { exitCodeFor } from './cli/exit-codes.js';
import { defaultDom0Home } from './cli/dom0-user.js';
import { validatePassphrase } from './cli/passphrase.js';
import { DEFAULT_SCRYPT_LOGN, MAX_THREADS } from './format/limits.js';
import { lastMoved } from './progress/activity.js';
import { watchStalls } from './progress/stall-watch.js';
import { statsFor } from './stats/make-stats.js';
import { didYouMean } from './qubes-xml/similar-names.js';
import type { Operation, ProgressReporter } from './progress/progress.js';
import type { StatsReport } from './stats/run-stats.js';

export { QvmBackupError, isQvmBackupError, type ErrorCode, type ErrorContext, type ArchiveListing, type ListedVm, type StatsReport };

/** What a run tells while it works (`onEvent`). Field names of plans and reports are those of the
 *  commands' --json output (docs/json.md). */
export type RunEvent =
  | { type: 'start'; operation: Operation; totalBytes: number }
  /** bytesDone: the part of the input whose work is finished (percent and ETA count it) */
  | { type: 'progress'; operation: Operation; bytesRead: number; bytesWritten: number; bytesDone: number; totalBytes: number; vm: string | null }
  /** what the run does while no bytes move ("deriving keys"); null: it moves again */
  | { type: 'phase'; operation: Operation; phase: string | null }
  /** the plan, before `confirm` is asked: `text` as the commands print it, `plan` as their --json */
  | { type: 'plan'; operation: Operation; text: string; plan: Record<string, unknown> }
  | { type: 'vm-done'; operation: Operation; vm: string; ok: boolean; detail: string | null }
  | { type: 'file-done'; operation: Operation; vm: string; file: string; bytes: number }
  | { type: 'settings'; operation: Operation; settings: Record<string, string | number | boolean | null> }
  | { type: 'info' | 'warning'; operation: Operation; text: string };

/** What every run takes. */
export interface RunRequest {
  /** the passphrase itself, or a function that gives it when it is needed (after the plan was
   *  confirmed, for a backup; after the location was found, for a restore). Refused when empty or
   *  holding CR, LF or NUL, as the commands refuse it. */
  passphrase: string | (() => string | Promise<string>);
  /** worker threads (default: the number of CPU cores) */
  threads?: number;
  /** bound on buffer memory in bytes (the commands' --max-memory; default as theirs) */
  maxMemory?: number;
  /** stops the run: it cleans up and rejects with ERR_CANCELLED (the reason is its `cause`) */
  signal?: AbortSignal;
  /** events while the run works; a listener that throws stops the run with its error as cause */
  onEvent?: (event: RunEvent) => unknown;
  /** seconds without a byte moving (waits for `passphrase` and `confirm` do not count) after
   *  which the run is stopped with ERR_STALLED (the commands' --stall-timeout; default: never, a
   *  warning event after a minute) */
  stallTimeout?: number;
  /** fill the result's `stats`: the stage profile (the commands' --stats) */
  stats?: boolean;
}

/** Runs that touch a Qubes collection. */
export interface CollectionRequest extends RunRequest {
  /** directory holding qubes.xml and the VM files (default: $QUBES_ROOT, else /var/lib/qubes) */
  qubesRoot?: string;
  /** the dom0 home (default: the home of the first member of group qubes, else $HOME) */
  dom0Home?: string;
  /** shown the plan (the --json shape, and the text the commands print); false stops the run
   *  with ERR_DECLINED before anything is written (default: go on) */
  confirm?: (plan: Record<string, unknown>, text: string) => boolean | Promise<boolean>;
}

export interface BackupRequest extends CollectionRequest {
  /** a directory (the archive is named qubes-<date> in it), a file path, or '-' for this
   *  process's stdout; with `destCommand` or `destVm`, what they are given */
  location: string;
  /** VMs to back up (default: every VM with include_in_backups, and dom0 = the dom0 home) */
  vms?: string[];
  /** VMs left out ('dom0': the dom0 home) */
  exclude?: string[];
  /** 4 (default), 3 or 2 */
  format?: 2 | 3 | 4;
  /** formats 2 and 3: false writes chunks only authenticated (default true) */
  encrypt?: boolean;
  /** formats 2 and 3: the openssl cipher (default aes-256-cbc) */
  cipher?: string;
  /** formats 2 and 3: the HMAC digest (default SHA512) */
  hmacAlgorithm?: string;
  /** default true */
  compress?: boolean;
  /** gzip (default), zstd, or one of the allow-listed programs (the commands' -Z) */
  compressFilter?: string;
  compressLevel?: number;
  /** format 4: scrypt cost N = 2^scryptLogN (default 19) */
  scryptLogN?: number;
  /** bytes per chunk (default: Qubes' 100 MiB; format 2: its tar volume size) */
  chunkSize?: number;
  /** pipe the archive into this shell command ($QVM_BACKUP_LOCATION = location) */
  destCommand?: string;
  /** send the archive to this VM's qubes.Backup service */
  destVm?: string;
}

export interface BackupReport {
  /** the archive's path (or what the destination command or VM was given) */
  path: string;
  bytesWritten: number;
  /** the VMs in the archive (the dom0 home apart) */
  vms: string[];
  /** the user whose dom0 home is in the archive, or null */
  dom0User: string | null;
  chunks: number;
  /** which compression path ran (the --json summary's `compression`) */
  compression: Record<string, unknown>;
  stats?: StatsReport;
}

/** Where a restore, verification or listing reads the archive. */
export interface ArchiveRequest extends RunRequest {
  /** a file, a format 1 directory, or '-' for this process's stdin (not with `sourceCommand`) */
  location?: string;
  /** run this shell command and read the archive from its output */
  sourceCommand?: string;
  /** replaces the header's compression filter (the commands' -Z, allow-listed) */
  compressionFilter?: string;
}

export interface RestoreRequest extends CollectionRequest, ArchiveRequest {
  /** restore only these (default: every VM of the archive, and the dom0 home) */
  vms?: string[];
  exclude?: string[];
  skipDom0Home?: boolean;
  ignoreUsernameMismatch?: boolean;
  renameConflicting?: boolean;
  skipConflicting?: boolean;
  skipBroken?: boolean;
  ignoreMissing?: boolean;
  /** a VM's data may unpack to more than its qubes.xml states */
  ignoreSizeLimit?: boolean;
  /** restore the VM images around the page cache (the commands' --direct-io) */
  directIo?: boolean;
}

/** A verification installs nothing: no host collection is read or written. */
export type VerifyRequest = Omit<RestoreRequest, 'skipConflicting' | 'renameConflicting' | 'ignoreMissing' | 'ignoreUsernameMismatch' | 'directIo' | 'qubesRoot'>;

export interface RestoreReport {
  /** restored VMs: `name` on the host, `from` in the archive (verify: `name` = `from`) */
  vms: { name: string; from: string }[];
  /** the directory the dom0 home went to, or null */
  dom0HomeDir: string | null;
  /** the user whose dom0 home was restored or verified, or null */
  dom0User: string | null;
  /** format 1: nothing in the archive is authenticated */
  unauthenticated: boolean;
  bytesRead: number;
  stats?: StatsReport;
}

/** The exit status the commands give for `error` (README, Exit status). */
export function exitStatusOf(error: unknown): number {
  return exitCodeFor(error);
}

/** Back up a collection into one archive. */
export async function backup(req: BackupRequest): Promise<BackupReport> {
  checkRequest(req, 'backup');
  const stats = statsFor('backup', req.stats === true);
  const r = await controlled(req, 'backup', async (signal, progress) => runBackup({
    location: req.location,
    ...(req.destCommand !== undefined ? { destCommand: req.destCommand } : {}),
    ...(req.destVm !== undefined ? { destVm: req.destVm } : {}),
    vms: req.vms ?? [],
    exclude: req.exclude ?? [],
    qubesRoot: req.qubesRoot ?? defaultQubesRoot(),
    dom0Home: req.dom0Home ?? defaultDom0Home(),
    format: req.format ?? 4,
    encrypt: req.encrypt ?? true,
    cipher: req.cipher ?? 'aes-256-cbc',
    hmacAlgorithm: req.hmacAlgorithm ?? 'SHA512',
    compress: req.compress ?? true,
    compressFilter: req.compressFilter ?? 'gzip',
    ...(req.compressLevel !== undefined ? { compressLevel: req.compressLevel } : {}),
    scryptLogN: req.scryptLogN ?? DEFAULT_SCRYPT_LOGN,
    ...(req.chunkSize !== undefined ? { chunkSize: req.chunkSize } : {}),
    threads: req.threads ?? availableParallelism(),
    ...(req.maxMemory !== undefined ? { maxMemory: req.maxMemory } : {}),
    getPassphrase: () => passphraseOf(req, signal),
    confirm: async (text, plan) => {
      progress.plan(text, plan);
      return confirmOf(req, plan, text, signal);
    },
    progress,
    signal,
    stats,
  }));
  return {
    path: r.path,
    bytesWritten: r.bytesWritten,
    vms: r.vms.filter((n) => n !== 'dom0'),
    dom0User: r.dom0User ?? null,
    chunks: r.chunks,
    compression: r.compression.json,
    ...(stats.enabled ? { stats: stats.report() } : {}),
  };
}

/** Restore VMs (and the dom0 home) from an archive into the collection. */
export async function restore(req: RestoreRequest): Promise<RestoreReport> {
  return restoreOrVerify(req, false);
}

/** Everything a restore checks, extracted into a scratch directory and removed: installs nothing. */
export async function verify(req: VerifyRequest): Promise<RestoreReport> {
  return restoreOrVerify(req, true);
}

/** What an archive holds, from its authenticated header and qubes.xml; reads nothing else. */
export async function list(req: ArchiveRequest): Promise<ArchiveListing> {
  checkRequest(req, 'list');
  return controlled(req, 'list', (signal) => listArchive({
    location: req.location ?? '',
    ...(req.sourceCommand !== undefined ? { sourceCommand: req.sourceCommand } : {}),
    ...(req.compressionFilter !== undefined ? { compressionFilter: req.compressionFilter } : {}),
    threads: req.threads ?? availableParallelism(),
    ...(req.maxMemory !== undefined ? { maxMemory: req.maxMemory } : {}),
    getPassphrase: () => passphraseOf(req, signal),
    signal,
  }));
}

async function restoreOrVerify(req: RestoreRequest, verifyOnly: boolean): Promise<RestoreReport> {
  const operation = verifyOnly ? 'verify' : 'restore';
  checkRequest(req, operation);
  const stats = statsFor(operation, req.stats === true);
  const r = await controlled(req, operation, (signal, progress) => runRestore({
    location: req.location ?? '',
    ...(req.sourceCommand !== undefined ? { sourceCommand: req.sourceCommand } : {}),
    vms: req.vms ?? [],
    exclude: req.exclude ?? [],
    skipDom0Home: req.skipDom0Home === true,
    ignoreUsernameMismatch: req.ignoreUsernameMismatch === true,
    renameConflicting: req.renameConflicting === true,
    skipConflicting: req.skipConflicting === true,
    skipBroken: req.skipBroken === true,
    ignoreMissing: req.ignoreMissing === true,
    ...(req.ignoreSizeLimit === true ? { ignoreSizeLimit: true } : {}),
    verifyOnly,
    // a verification plans against no host (it reads neither its qubes.xml nor its VMs)
    qubesRoot: req.qubesRoot ?? defaultQubesRoot(),
    dom0Home: req.dom0Home ?? defaultDom0Home(),
    ...(req.compressionFilter !== undefined ? { compressionFilter: req.compressionFilter } : {}),
    threads: req.threads ?? availableParallelism(),
    ...(req.maxMemory !== undefined ? { maxMemory: req.maxMemory } : {}),
    ...(req.directIo === true ? { directImageWrites: true } : {}),
    getPassphrase: () => passphraseOf(req, signal),
    // a passphrase given as a string asks no one (a function may)
    passphraseAsksNoOne: typeof req.passphrase === 'string',
    confirm: async (text, plan) => {
      const json = restorePlanJson(plan);
      progress.plan(text, json);
      return confirmOf(req, json, text, signal);
    },
    progress,
    signal,
    stats,
  }));
  return {
    vms: r.restored,
    dom0HomeDir: r.dom0HomeDir ?? null,
    dom0User: r.dom0User ?? null,
    unauthenticated: r.unauthenticated === true,
    bytesRead: r.bytesRead,
    ...(stats.enabled ? { stats: stats.report() } : {}),
  };
}

/** The longest stallTimeout (a week), as the commands' --stall-timeout. */
const MAX_STALL_SECONDS = 604_800;

function defaultQubesRoot(): string {
  return process.env['QUBES_ROOT'] ?? '/var/lib/qubes';
}

/**
 * What a caller's function gives, or its failure as ERR_USAGE; it does not hold the run past an
 * abort (its promise may never settle: the run cleans up and ends with ERR_CANCELLED meanwhile).
 */
async function callerGives<T>(what: string, fn: () => T | Promise<T>, signal: AbortSignal): Promise<T> {
  signal.throwIfAborted();
  let onAbort = (): void => {};
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
  });
  try {
    return await Promise.race([Promise.resolve().then(fn), aborted]);
  } catch (e) {
    if (signal.aborted) throw signal.reason;
    throw new QvmBackupError('ERR_USAGE', `the ${what} failed: ${e instanceof Error ? e.message : String(e)}`, {}, e);
  } finally {
    signal.removeEventListener('abort', onAbort);
  }
}

async function passphraseOf(req: RunRequest, signal: AbortSignal): Promise<string> {
  const given = req.passphrase;
  const pw = typeof given === 'function' ? await callerGives('passphrase function', given, signal) : given;
  if (typeof pw !== 'string') throw new QvmBackupError('ERR_USAGE', `the passphrase must be a string (got ${pw === null ? 'null' : typeof pw})`);
  validatePassphrase(pw, 'the passphrase option');
  return pw;
}

async function confirmOf(req: CollectionRequest, plan: Record<string, unknown>, text: string, signal: AbortSignal): Promise<boolean> {
  const { confirm } = req;
  if (confirm === undefined) return true;
  const go = await callerGives('confirm callback', () => confirm(plan, text), signal);
  if (typeof go !== 'boolean') throw new QvmBackupError('ERR_USAGE', `the confirm callback must give true or false (got ${go === null ? 'null' : typeof go})`);
  return go;
}

/** Every key each request takes (typed: a key added to an interface must be added here). A key
 *  outside them is refused: a misspelt `skipDom0home` would otherwise restore the home. */
const RUN_KEYS = { passphrase: true, threads: true, maxMemory: true, signal: true, onEvent: true, stallTimeout: true, stats: true } as const;
const ARCHIVE_KEYS = { ...RUN_KEYS, location: true, sourceCommand: true, compressionFilter: true } as const satisfies Record<keyof ArchiveRequest, true>;
const RESTORE_KEYS = {
  ...ARCHIVE_KEYS,
  qubesRoot: true,
  dom0Home: true,
  confirm: true,
  vms: true,
  exclude: true,
  skipDom0Home: true,
  ignoreUsernameMismatch: true,
  renameConflicting: true,
  skipConflicting: true,
  skipBroken: true,
  ignoreMissing: true,
  ignoreSizeLimit: true,
  directIo: true,
} as const satisfies Record<keyof RestoreRequest, true>;
const { skipConflicting: _sc, renameConflicting: _rc, ignoreMissing: _im, ignoreUsernameMismatch: _ium, directIo: _dio, qubesRoot: _qr, ...VERIFY_KEYS_ } = RESTORE_KEYS;
const VERIFY_KEYS = VERIFY_KEYS_ satisfies Record<keyof VerifyRequest, true>;
const BACKUP_KEYS = {
  ...RUN_KEYS,
  qubesRoot: true,
  dom0Home: true,
  confirm: true,
  location: true,
  vms: true,
  exclude: true,
  format: true,
  encrypt: true,
  cipher: true,
  hmacAlgorithm: true,
  compress: true,
  compressFilter: true,
  compressLevel: true,
  scryptLogN: true,
  chunkSize: true,
  destCommand: true,
  destVm: true,
} as const satisfies Record<keyof BackupRequest, true>;
// and none more than the interface has (a spread brings keys `satisfies` does not look at)
type OnlyKeysOf<Keys, Request> = [Exclude<Keys, keyof Request>] extends [never] ? true : never;
const ONLY_THEIR_KEYS: [OnlyKeysOf<keyof typeof ARCHIVE_KEYS, ArchiveRequest>, OnlyKeysOf<keyof typeof RESTORE_KEYS, RestoreRequest>, OnlyKeysOf<keyof typeof VERIFY_KEYS, VerifyRequest>, OnlyKeysOf<keyof typeof BACKUP_KEYS, BackupRequest>] = [true, true, true, true];
void ONLY_THEIR_KEYS;
const KEYS: Record<string, Record<string, true>> = { backup: BACKUP_KEYS, restore: RESTORE_KEYS, verify: VERIFY_KEYS, list: ARCHIVE_KEYS };

/** The request's shape, checked before anything runs (a program in JavaScript can pass anything). */
function checkRequest(req: unknown, what: string): void {
  if (typeof req !== 'object' || req === null) throw new QvmBackupError('ERR_USAGE', `${what}: expected an options object`);
  const r = req as Record<string, unknown>;
  const bad = (name: string, expected: string): never => {
    throw new QvmBackupError('ERR_USAGE', `${what}: ${name} must be ${expected}`);
  };
  const known = KEYS[what] ?? {};
  // (every enumerable key, also one an options object inherits: the values are read through it)
  for (const k in r) {
    // (a key left undefined asks for nothing: a request built from shared parts may carry one)
    if (r[k] === undefined || Object.hasOwn(known, k)) continue;
    // a verification installs nothing: what only an install uses is said as such
    if (what === 'verify' && Object.hasOwn(RESTORE_KEYS, k)) throw new QvmBackupError('ERR_USAGE', `verify: option ${JSON.stringify(k)} is restore's: a verification installs nothing (leave it out)`);
    throw new QvmBackupError('ERR_USAGE', `${what}: unknown option ${JSON.stringify(k)}${didYouMean(k, Object.keys(known))}`);
  }
  if (typeof r['passphrase'] !== 'string' && typeof r['passphrase'] !== 'function') bad('passphrase', 'a string or a function');
  // a passphrase given as a string is checked now, before any plan is shown
  if (typeof r['passphrase'] === 'string') validatePassphrase(r['passphrase'], 'the passphrase option');
  for (const k of ['location', 'sourceCommand', 'destCommand', 'destVm', 'qubesRoot', 'dom0Home', 'cipher', 'hmacAlgorithm', 'compressFilter', 'compressionFilter']) {
    if (r[k] !== undefined && typeof r[k] !== 'string') bad(k, 'a string');
  }
  for (const k of ['vms', 'exclude']) {
    if (r[k] !== undefined && (!Array.isArray(r[k]) || !(r[k] as unknown[]).every((x) => typeof x === 'string'))) bad(k, 'an array of strings');
  }
  for (const k of ['vms', 'exclude']) {
    // (a sparse array has holes every() does not visit)
    if (Array.isArray(r[k]) && Object.keys(r[k] as unknown[]).length !== (r[k] as unknown[]).length) bad(k, 'an array of strings');
  }
  for (const k of ['threads', 'maxMemory', 'compressLevel', 'scryptLogN', 'chunkSize', 'format']) {
    if (r[k] !== undefined && !Number.isSafeInteger(r[k])) bad(k, 'an integer');
  }
  if (r['threads'] !== undefined && !((r['threads'] as number) >= 1 && (r['threads'] as number) <= MAX_THREADS)) bad('threads', `an integer from 1 to ${MAX_THREADS}`);
  for (const k of ['encrypt', 'compress', 'skipDom0Home', 'ignoreUsernameMismatch', 'renameConflicting', 'skipConflicting', 'skipBroken', 'ignoreMissing', 'ignoreSizeLimit', 'directIo', 'stats']) {
    if (r[k] !== undefined && typeof r[k] !== 'boolean') bad(k, 'true or false');
  }
  const stall = r['stallTimeout'];
  if (stall !== undefined && !(Number.isSafeInteger(stall) && (stall as number) >= 1 && (stall as number) <= MAX_STALL_SECONDS)) bad('stallTimeout', `a whole number of seconds from 1 to ${MAX_STALL_SECONDS}`);
  if (r['destCommand'] !== undefined && r['destVm'] !== undefined) bad('destCommand', 'not given together with destVm');
  for (const k of ['onEvent', 'confirm']) if (r[k] !== undefined && typeof r[k] !== 'function') bad(k, 'a function');
  if (r['signal'] !== undefined && !(r['signal'] instanceof AbortSignal)) bad('signal', 'an AbortSignal');
  if (what === 'backup' && (typeof r['location'] !== 'string' || r['location'] === '')) bad('location', 'the destination (a directory, a file path or -)');
  if (what !== 'backup' && (r['location'] === undefined || r['location'] === '') === (r['sourceCommand'] === undefined)) bad('location', 'given, or sourceCommand, and not both');
}

/**
 * Run `body` with the request's controls: one AbortSignal for the caller's signal, a stall and a
 * throwing listener; events to `onEvent`. The run's error is kept, but a run the caller aborted
 * ends with ERR_CANCELLED and one stopped for a stall or a listener with that reason.
 */
async function controlled<T>(req: RunRequest, operation: Operation | 'list', body: (signal: AbortSignal, progress: EventProgress) => Promise<T>): Promise<T> {
  const ac = new AbortController();
  let stoppedFor: QvmBackupError | undefined;
  const stop = (why: QvmBackupError): void => {
    if (ac.signal.aborted) return;
    stoppedFor = why;
    ac.abort(why);
  };
  const onCaller = (): void => {
    const reason: unknown = req.signal?.reason;
    const text = reasonText(reason);
    if (!ac.signal.aborted) ac.abort(new QvmBackupError('ERR_CANCELLED', `aborted${text !== undefined ? `: ${text}` : ''}`, {}, reason));
  };
  if (req.signal?.aborted === true) onCaller();
  else req.signal?.addEventListener('abort', onCaller, { once: true });
  const progress = new EventProgress(operation === 'list' ? 'restore' : operation, req.onEvent, stop);
  const unwatch = operation === 'list' ? () => {} : watchStalls(progress, stop, req.stallTimeout, 'stallTimeout');
  try {
    ac.signal.throwIfAborted();
    return await body(ac.signal, progress);
  } catch (e) {
    const said = e instanceof Error ? e.message : String(e);
    if (stoppedFor !== undefined) {
      // the reason it was stopped, and what the run says of where it stopped (the VMs it had
      // installed by then)
      throw said === stoppedFor.message || !isQvmBackupError(e) ? stoppedFor : new QvmBackupError(stoppedFor.code, `${stoppedFor.message}; ${said}`, { ...e.context }, e);
    }
    if (req.signal?.aborted === true) {
      // ERR_CANCELLED whatever the abort made fail on the way (a killed tar, a closed pipe), with
      // the caller's reason in the message and what the run said of where it stopped
      const reason: unknown = req.signal.reason;
      const text = reasonText(reason);
      const why = text !== undefined && !said.includes(text) ? ` (${text})` : '';
      throw new QvmBackupError('ERR_CANCELLED', `${isQvmBackupError(e) && e.code === 'ERR_CANCELLED' ? said : `aborted: ${said}`}${why}`, isQvmBackupError(e) ? { ...e.context } : {}, e);
    }
    if (isQvmBackupError(e)) throw e;
    // every rejection is a QvmBackupError: a file system error keeps its errno code as the cause
    const code = (e as NodeJS.ErrnoException | undefined)?.code;
    const errno = typeof code === 'string' && /^E[A-Z0-9]+$/.test(code) && !code.startsWith('ERR');
    throw new QvmBackupError(errno ? 'ERR_IO' : 'ERR_INTERNAL', said, {}, e);
  } finally {
    unwatch();
    progress.end();
    req.signal?.removeEventListener('abort', onCaller);
  }
}

/** What a caller's abort reason says: an Error's message (not the default AbortError's), or a
 *  string given as the reason; undefined for anything else. */
function reasonText(reason: unknown): string | undefined {
  if (reason instanceof Error) return reason.name !== 'AbortError' && reason.message !== '' ? reason.message : undefined;
  return typeof reason === 'string' && reason !== '' ? reason : undefined;
}

/** The runs' progress reporter as events. */
class EventProgress implements ProgressReporter {
  readonly #operation: Operation;
  readonly #listener: ((e: RunEvent) => unknown) | undefined;
  readonly #stop: (why: QvmBackupError) => void;
  #moved = Date.now();
  #waiting = false;
  #ended = false;
  #line = '';
  #total = 0;

  constructor(operation: Operation, listener: ((e: RunEvent) => unknown) | undefined, stop: (why: QvmBackupError) => void) {
    this.#operation = operation;
    this.#listener = listener;
    this.#stop = stop;
    this.#line = `${operation}: starting`;
  }

  /** No event after the run has ended. */
  end(): void {
    this.#ended = true;
  }

  get stillMs(): number {
    return this.#waiting || this.#ended ? 0 : Date.now() - Math.max(this.#moved, lastMoved());
  }

  line(): string {
    return this.#line;
  }

  #emit(e: RunEvent): void {
    if (this.#ended || this.#listener === undefined) return;
    const threw = (err: unknown): void => this.#stop(new QvmBackupError('ERR_INTERNAL', `the onEvent listener threw: ${err instanceof Error ? err.message : String(err)}`, {}, err));
    try {
      // an async listener's rejection stops the run too (it is never an unhandled rejection)
      const r: unknown = this.#listener(e);
      if (r instanceof Promise) r.catch(threw);
    } catch (err) {
      threw(err);
    }
  }

  start(what: Operation, totalBytes: number): void {
    this.#moved = Date.now();
    this.#total = totalBytes;
    this.#emit({ type: 'start', operation: what, totalBytes });
  }

  update(bytesIn: number, bytesOut: number, currentVm?: string, bytesDone?: number): void {
    this.#moved = Date.now();
    this.#line = `${this.#operation}: ${bytesIn} bytes read, ${bytesOut} written${currentVm !== undefined ? `, ${currentVm}` : ''}`;
    this.#emit({ type: 'progress', operation: this.#operation, bytesRead: bytesIn, bytesWritten: bytesOut, bytesDone: bytesDone ?? bytesIn, totalBytes: this.#total, vm: currentVm ?? null });
  }

  phase(text: string | null): void {
    this.#moved = Date.now();
    if (text !== null) this.#line = `${this.#operation}: ${text}`;
    this.#emit({ type: 'phase', operation: this.#operation, phase: text });
  }

  waitingForUser(waiting: boolean): void {
    this.#waiting = waiting;
    if (!waiting) this.#moved = Date.now();
  }

  vmDone(name: string, ok: boolean, detail?: string): void {
    this.#emit({ type: 'vm-done', operation: this.#operation, vm: name, ok, detail: detail ?? null });
  }

  info(text: string): void {
    this.#emit({ type: 'info', operation: this.#operation, text });
  }

  warn(text: string): void {
    this.#emit({ type: 'warning', operation: this.#operation, text });
  }

  finish(): void {}

  plan(text: string, fields: Record<string, unknown>): void {
    this.#emit({ type: 'plan', operation: this.#operation, text, plan: fields });
  }

  settings(fields: Record<string, string | number | boolean | null>): void {
    this.#emit({ type: 'settings', operation: this.#operation, settings: fields });
  }

  fileDone(vm: string, file: string, bytes: number): void {
    this.#emit({ type: 'file-done', operation: this.#operation, vm, file, bytes });
  }
}
