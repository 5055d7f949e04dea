// Everything a restore (or --verify-only, --list) needs that follows from its options alone, decided
// and validated once, frozen: threads, --max-memory and its default, and, once the archive's head
// states its key derivation cost, how that memory is split between chunks and derivations.
// One memory rule for the whole restore: the default is the backup's (1 GiB + one logN 19
// derivation per thread, at most 1/4 of the RAM) but at least RESTORE_MIN_MAX_MEMORY; the stream
// code falls back to the same plan when called without one (tests).
import { availableParallelism, totalmem } from 'node:os';
import { fail } from '../errors.js';
import { DEFAULT_SCRYPT_LOGN, MAX_THREADS } from '../format/limits.js';
import { defaultMaxMemory } from '../pipeline/memory-default.js';
import { RESTORE_MIN_MAX_MEMORY } from './stream/kdf-budget.js';
import { planRestoreMemory } from './stream/restore-memory.js';

export { planRestoreMemory, type RestoreMemoryPlan } from './stream/restore-memory.js';

/** The restore's choices as the command line gives them; unset = the default. */
export interface RestoreChoices {
  /** default (also 0): the number of CPUs */
  threads?: number;
  /** default: defaultRestoreMaxMemory */
  maxMemory?: number;
  /** -Z: replaces the header's filter (checked against the allow-list where it is run, filters.ts) */
  compressionFilter?: string;
  /** how VM images and small files are extracted (benchmarks: tar, every inner archive by GNU tar); default in-process */
  imageExtraction?: 'in-process' | 'tar';
  /** prepare the page cache ahead of the in-process image writes (default true; off for comparisons) */
  prefaultImages?: boolean;
  /** hand the written pages of large in-process images back to the kernel once they are on disk
   *  (default true; off for comparisons) */
  dropBehind?: boolean;
  /** --direct-io: write the in-process images around the page cache (O_DIRECT) where the
   *  filesystem allows (default false) */
  directImageWrites?: boolean;
}

export interface RestoreHost {
  cpus: number;
  ramBytes: number;
}

export interface RestoreSettings {
  readonly threads: number;
  readonly maxMemory: number;
  readonly compressionFilter?: string;
  readonly imageExtraction: 'in-process' | 'tar';
  readonly prefaultImages: boolean;
  readonly dropBehind: boolean;
  readonly directImageWrites: boolean;
}

/** Default --max-memory of a restore: the backup's rule at logN 19, but at least
 *  RESTORE_MIN_MAX_MEMORY, so that an archive made at logN 21 (the largest the scrypt tool picks)
 *  restores without options. */
export function defaultRestoreMaxMemory(threads: number, ramBytes: number): number {
  return Math.max(defaultMaxMemory(threads, DEFAULT_SCRYPT_LOGN, ramBytes), RESTORE_MIN_MAX_MEMORY);
}

const hostNow = (): RestoreHost => ({ cpus: availableParallelism(), ramBytes: totalmem() });

/** Resolve and validate `c` (ERR_USAGE), frozen. */
export function resolveRestoreSettings(c: RestoreChoices, host: RestoreHost = hostNow()): RestoreSettings {
  const threads = c.threads || host.cpus;
  if (!Number.isInteger(threads) || threads < 1 || threads > MAX_THREADS) fail('ERR_USAGE', `--threads ${threads}: expected an integer from 1 to ${MAX_THREADS}`);
  const maxMemory = c.maxMemory ?? defaultRestoreMaxMemory(threads, host.ramBytes);
  if (!Number.isSafeInteger(maxMemory) || maxMemory <= 0) fail('ERR_USAGE', `--max-memory ${maxMemory}: expected a positive number of bytes`);
  return Object.freeze({ threads, maxMemory, ...(c.compressionFilter !== undefined ? { compressionFilter: c.compressionFilter } : {}), imageExtraction: c.imageExtraction ?? 'in-process', prefaultImages: c.prefaultImages ?? true, dropBehind: c.dropBehind ?? true, directImageWrites: c.directImageWrites ?? false });
}

/** The memory plan of a restore of `s` once the archive's head says what a derivation costs. */
export function restoreMemoryOf(s: RestoreSettings, kdfBytes: number) {
  return planRestoreMemory(s.maxMemory, s.threads, kdfBytes);
}
