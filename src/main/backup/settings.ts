// Everything a backup run needs that follows from its options alone, decided and validated once
// before anything is read, asked or written: threads, the compression path, the header, the
// per-chunk stream settings (all but the passphrase), the memory plan and the chunk slot size.
// Frozen afterwards. Pure apart from the host facts it is given (CPUs, RAM, which programs exist).
import { availableParallelism, totalmem } from 'node:os';
import { fail } from '../errors.js';
import { exactSize } from '../size-text.js';
import { encodeBackupHeader, type BackupHeader } from '../format/backup-header.js';
import { CHUNK_SIZE_BYTES, DEFAULT_SCRYPT_LOGN, MAX_SCRYPT_LOGN, MAX_THREADS, MIN_SCRYPT_LOGN, MIN_CHUNK_SIZE_BYTES, V2_VOLUME_BYTES, chunkSizeMultiple, maxChunkSize } from '../format/limits.js';
import { nodeDigestName } from '../../workers/hmac.js';
import { cipherParams } from '../../workers/openssl-enc.js';
import { defaultMaxMemory } from '../pipeline/memory-default.js';
import type { WriteFormat } from './backup-plan.js';
import type { StreamSettings } from './chunk-pipeline.js';
import { planCompression, type BackupCompression } from './compression-plan.js';
import { planMemory, type MemoryPlan } from './memory-plan.js';

/** The backup's choices as the command line (or a profile) gives them; unset = the default. */
export interface BackupChoices {
  format: WriteFormat;
  encrypt: boolean;
  cipher: string;
  hmacAlgorithm: string;
  compress: boolean;
  compressFilter: string;
  /** --compress-level if given (default per filter: gzip 6, zstd 3) */
  compressLevel?: number;
  /** default DEFAULT_SCRYPT_LOGN */
  scryptLogN?: number;
  /** default: the size Qubes uses (100 MiB chunks, 100000 KiB tar volumes for format 2) */
  chunkSize?: number;
  /** default (also 0): the number of CPUs */
  threads?: number;
  /** default: defaultMaxMemory (1 GiB + one derivation per thread, at most 1/4 of the RAM) */
  maxMemory?: number;
}

/** What the host adds to the defaults (injectable for tests). */
export interface BackupHost {
  cpus: number;
  ramBytes: number;
  /** override of the runtime check whether node:zlib has zstd */
  zstdInProcess?: boolean;
}

export interface BackupSettings {
  readonly format: WriteFormat;
  readonly threads: number;
  readonly chunkSize: number;
  readonly scryptLogN: number;
  readonly maxMemory: number;
  readonly compression: BackupCompression;
  readonly header: BackupHeader;
  readonly headerBytes: Uint8Array;
  /** StreamSettings without the passphrase (asked only after the plan was confirmed) */
  readonly stream: Readonly<Omit<StreamSettings, 'passphrase'>>;
  readonly memory: MemoryPlan;
}

const hostNow = (): BackupHost => ({ cpus: availableParallelism(), ramBytes: totalmem() });

/**
 * Resolve and validate `c` (ERR_USAGE for a refused option or combination, ERR_UNSUPPORTED for an
 * unknown cipher or digest). `backupId` is the format 4 header's id (makeBackupId).
 */
export function resolveBackupSettings(c: BackupChoices, backupId: string, host: BackupHost = hostNow()): BackupSettings {
  const { format } = c;
  // the command line's parsers check these too; a program calling the library gets the same rules
  if (format !== 2 && format !== 3 && format !== 4) fail('ERR_USAGE', `--format ${String(format)}: expected 2, 3 or 4`);
  if (format === 4 && !c.encrypt) fail('ERR_USAGE', '--no-encrypt is not possible with format 4 (R4 backups are always encrypted)');
  if (format === 2 && c.encrypt && c.compress) fail('ERR_USAGE', 'format 2 cannot be both compressed and encrypted (the R2 writer refused it too): use --no-compress or --no-encrypt');
  const threads = c.threads || host.cpus;
  if (!Number.isInteger(threads) || threads < 1 || threads > MAX_THREADS) fail('ERR_USAGE', `--threads ${threads}: expected an integer from 1 to ${MAX_THREADS}`);
  const chunkSize = c.chunkSize ?? (format === 2 ? V2_VOLUME_BYTES : CHUNK_SIZE_BYTES);
  checkChunkSize(chunkSize, format);
  const scryptLogN = c.scryptLogN ?? DEFAULT_SCRYPT_LOGN;
  if (!Number.isInteger(scryptLogN) || scryptLogN < MIN_SCRYPT_LOGN || scryptLogN > MAX_SCRYPT_LOGN) fail('ERR_USAGE', `--scrypt-logn ${scryptLogN}: expected an integer from ${MIN_SCRYPT_LOGN} to ${MAX_SCRYPT_LOGN}`);
  if (c.maxMemory !== undefined && (!Number.isSafeInteger(c.maxMemory) || c.maxMemory <= 0)) fail('ERR_USAGE', `--max-memory ${c.maxMemory}: expected a positive number of bytes`);
  if (format !== 4) {
    // the header names them and every chunk uses them: an unknown one is refused before anything is written
    if (nodeDigestName(c.hmacAlgorithm) === null) fail('ERR_UNSUPPORTED', `HMAC digest '${c.hmacAlgorithm}' is not supported by this OpenSSL`);
    if (c.encrypt) {
      try {
        cipherParams(c.cipher);
      } catch (e) {
        fail('ERR_UNSUPPORTED', (e as Error).message, {}, e);
      }
    }
  }
  const compression = planCompression({ compress: c.compress, filter: c.compressFilter, level: c.compressLevel, format, threads, ...(host.zstdInProcess !== undefined ? { zstdInProcess: host.zstdInProcess } : {}) });
  const maxMemory = c.maxMemory ?? defaultMaxMemory(threads, format === 4 ? scryptLogN : null, host.ramBytes);
  const memory = planMemory({ maxMemory, threads, chunkSize, format, scryptLogN, compressBlocks: compression.kind === 'blocks' && format !== 2 });
  const header = headerOf(c, backupId);
  const stream: Omit<StreamSettings, 'passphrase'> = {
    format,
    chunkSize,
    blocks: compression.kind === 'blocks' ? { codec: compression.codec, level: compression.level } : null,
    encrypted: format === 4 ? true : c.encrypt,
    cipher: c.cipher,
    hmacAlgorithm: c.hmacAlgorithm,
    backupId,
    // a worker keeps its derivation memory between chunks (no fresh pages per derivation) when the
    // plan holds one derivation per thread anyway
    scrypt: { logN: scryptLogN, r: 8, p: 1, keepKdfMemory: memory.kdfConcurrency >= threads },
  };
  return deepFreeze({ format, threads, chunkSize, scryptLogN, maxMemory, compression, header, headerBytes: encodeBackupHeader(header), stream, memory });
}

/** The backup-header of these choices (FORMAT.md §3). */
function headerOf(c: BackupChoices, backupId: string): BackupHeader {
  if (c.format === 4) return { version: 4, encrypted: true, compressed: c.compress, compressionFilter: c.compressFilter, hmacAlgorithm: 'scrypt', backupId };
  if (c.format === 3) return { version: 3, hmacAlgorithm: c.hmacAlgorithm, cryptoAlgorithm: c.cipher, encrypted: c.encrypt, compressed: c.compress, ...(c.compress ? { compressionFilter: c.compressFilter } : {}) };
  return { version: 2, hmacAlgorithm: c.hmacAlgorithm, cryptoAlgorithm: c.cipher, encrypted: c.encrypt, compressed: c.compress };
}

/** One chunk-size rule for the backup, from the limits the restore's chunk slots use as well. */
function checkChunkSize(size: number, format: WriteFormat): void {
  const max = maxChunkSize(format);
  const multiple = chunkSizeMultiple(format);
  // the smallest size that is both allowed and a multiple (format 2: 70 KiB, not 64)
  const min = Math.ceil(MIN_CHUNK_SIZE_BYTES / multiple) * multiple;
  if (!Number.isInteger(size) || size < min || size > max || size % multiple !== 0) {
    const what = format === 2 ? 'tar volume' : 'chunk';
    fail('ERR_USAGE', `--chunk-size ${exactSize(size)}: format ${format} needs ${exactSize(min)} to ${exactSize(max)} (the largest ${what} Qubes writes and qvm-backup-restore reads), a multiple of ${multiple} bytes`);
  }
}

/** The settings as --verbose and --json show them at the start of the run. */
export function settingsReport(s: BackupSettings): Record<string, string | number | boolean | null> {
  const c = s.compression;
  return {
    format: s.format,
    encryption: s.format === 4 ? 'scrypt' : s.stream.encrypted ? s.stream.cipher : 'none',
    integrity: s.format === 4 ? 'scrypt' : `HMAC-${s.stream.hmacAlgorithm}`,
    compression: c.kind === 'none' ? 'none' : c.filter,
    compress_level: c.kind === 'none' ? null : c.level,
    compress_engine: c.kind === 'none' ? null : c.kind === 'blocks' ? 'node:zlib in the worker threads' : `program: ${[c.program, ...c.args].join(' ')}`,
    chunk_size: s.chunkSize,
    threads: s.threads,
    // the budget in effect: a --max-memory below the minimum for these settings is raised (with
    // a warning saying so), and this line says what is used, not what was asked
    max_memory: Math.max(s.maxMemory, s.memory.plannedBytes),
    kdf: s.format === 4 ? `scrypt N=2^${s.scryptLogN} r=8 p=1` : null,
    kdf_at_once: s.format === 4 ? s.memory.kdfConcurrency : null,
  };
}

/** Freeze `o` and every object in it (the settings are read by every stage, changed by none). */
export function deepFreeze<T>(o: T): T {
  if (o !== null && typeof o === 'object' && !Object.isFrozen(o) && !ArrayBuffer.isView(o)) {
    for (const v of Object.values(o)) deepFreeze(v);
    Object.freeze(o);
  }
  return o;
}
