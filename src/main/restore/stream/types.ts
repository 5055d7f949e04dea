// Option, selection and result types of the streaming restore reader (archive head, data pass,
// format 1 directories).
import type { QvmBackupError } from '../../errors.js';
import type { RunStats } from '../../stats/run-stats.js';
import type { BackupHeader } from '../../format/backup-header.js';
import type { WorkerPool } from '../../pipeline/worker-pool.js';
import type { QubesXml } from '../../qubes-xml/types.js';
import type { OuterMember } from './outer-source.js';
import type { EarlyKey } from './chunk-decoder.js';
import type { SizeLimit } from './size-limit.js';

/** Options of `readArchiveHead`. */
export interface ReadHeadOptions {
  /** worker pool for the scrypt KDFs (v4 header and qubes.xml) */
  pool: WorkerPool;
  /** `--compression-filter`: replaces the header's value (the user's choice, checked for installation) */
  forcedCompressionFilter?: string;
  /** --max-memory in bytes: bounds each scrypt derivation the archive asks for and how many run at
   *  once (kdf-budget.ts); default RESTORE_MIN_MAX_MEMORY */
  maxMemory?: number;
  /** headerless R2-beta3 archives only (`-e` / `-z`); auto-detected when absent */
  headerless?: { encrypted?: boolean; compressed?: boolean };
  signal?: AbortSignal;
}

/** What the head of an archive holds, after authentication. */
export interface ArchiveHead {
  /** authenticated header (synthesised for headerless R2-beta3 archives) */
  header: BackupHeader;
  /** the extracted, verified `qubes.xml` (untrusted content: parse strictly) */
  qubesXmlBytes: Buffer;
  version: 2 | 3 | 4;
  /** true for an R2-beta3 archive without `backup-header` */
  headerless: boolean;
  /** the compression filter came from --compression-filter (trusted user input), not the header */
  filterForced: boolean;
  /** v4: memory one scrypt derivation of this backup needs (scryptCost of the header's scrypt copy); 0 otherwise */
  kdfBytes?: number;
  /** v4: the scrypt parameters of the header's scrypt copy (shown by --list and -v) */
  kdf?: { logN: number; r: number; p: number };
}

/** What to restore from one archive subdir (`vm3/`, `appvms/work/`, `dom0-home/`). */
export interface SelectionEntry {
  /** VM name (for messages, progress and results); `dom0` for the home */
  vm: string;
  /** directory tar extracts into: files land at `<stagingDir>/<subdir>…` (inner names keep the subdir) */
  stagingDir: string;
  /** what its inner archives may unpack to (stream/size-limit.ts); none: no limit */
  sizeLimit?: SizeLimit;
}

/** Map from archive subdir (with trailing slash) to what to do with it. */
export type RestoreSelection = ReadonlyMap<string, SelectionEntry>;

/** Progress as it really happened: bytes read from the archive, bytes handed to tar. */
export interface RestoreProgressEvent {
  bytesRead: number;
  /** archive bytes read and finished with (chunks authenticated, decoded and written, or skipped) */
  bytesDone: number;
  bytesRestored: number;
  currentVm?: string;
}

/** Context of the data pass. */
export interface RestoreDataContext {
  head: Pick<ArchiveHead, 'header' | 'version' | 'kdfBytes'>;
  passphrase: string;
  pool: WorkerPool;
  /** verify only: authenticate, decrypt and decompress everything, tar in list mode, nothing extracted */
  verifyOnly?: boolean;
  /** parsed qubes.xml: lets verification know which files each included VM must have */
  qubesXml?: QubesXml;
  /** bound of the chunk memory in flight (slots × slot size); default: the restore's memory plan
   *  (restore-memory.ts) for `maxMemory` */
  maxMemoryBytes?: number;
  /** slot size override (tests; must hold the largest chunk plus, for some layouts, its output) */
  slotBytes?: number;
  /** --max-memory in bytes (chunks + derivations): bounds each scrypt derivation a chunk asks for;
   *  derivations share what the chunk slots leave (kdf-budget.ts); default RESTORE_MIN_MAX_MEMORY */
  maxMemory?: number;
  signal?: AbortSignal;
  onProgress?: (e: RestoreProgressEvent) => void;
  onVmDone?: (vm: string, ok: boolean, err?: unknown) => void;
  /** every inner archive of the VM so far was extracted into its staging directory and a member of
   *  another VM followed: its files may be checked while the rest is read (onVmDone comes at the
   *  end). onVmReopened: a later member started another inner archive of it after all (a hostile
   *  or odd archive): what was checked before is not all it holds. */
  onVmExtracted?: (vm: string) => void;
  onVmReopened?: (vm: string) => void;
  /** one inner archive (`vm3/private.img`) was restored or verified completely; bytes = its decrypted bytes */
  onFileDone?: (vm: string, file: string, bytes: number) => void;
  /** how v3/v4 image members and a VM's small files are extracted: in-process (default) or by GNU tar (benchmarks, tests) */
  imageExtraction?: 'in-process' | 'tar';
  /** prepare the page cache ahead of the in-process image writes (default true) */
  prefaultImages?: boolean;
  /** hand the pages of large in-process images back to the kernel once flushed (default true; io/drop-behind.ts) */
  dropBehind?: boolean;
  /** --direct-io: write the in-process images with O_DIRECT where the filesystem allows (io/direct-writer.ts) */
  directImageWrites?: boolean;
  /** warnings that do not fail anything (e.g. repaired whole-directory symlinks) */
  onWarning?: (message: string) => void;
  /** the run's stage profile */
  stats?: RunStats;
  /** format 4: the first chunk's key, derived while the plan was confirmed (first-chunk-key.ts; the
   *  reader handed to restoreData must be the same object, and its memory the one it was derived in) */
  firstChunk?: { take(member: OuterMember, name: string): EarlyKey | undefined; release(): void; abandon(): void };
}

/** Outcome for one selected subdir. */
export interface VmRestoreResult {
  vm: string;
  subdir: string;
  ok: boolean;
  error?: QvmBackupError;
  /** inner archives (chunk bases) that were restored or verified completely */
  files: string[];
  /** verified plaintext bytes handed to tar for this VM */
  bytesRestored: number;
}

/** Outcome of the data pass: per subdir; `archiveError` when the archive itself broke (truncated, unsafe name). */
export interface RestoreDataResult {
  ok: boolean;
  vms: Map<string, VmRestoreResult>;
  archiveError?: QvmBackupError;
  bytesRead: number;
  bytesRestored: number;
}
