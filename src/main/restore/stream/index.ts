// Public surface of the streaming restore reader: archive head (header + qubes.xml), the data pass
// into staging (or verification), and format 1 directories.
export { readArchiveHead, QUBES_XML_CHUNK_MAX_BYTES } from './archive-head.js';
export { restoreData, dataPassMemory, type DataPassMemory } from './restore-data.js';
export { FirstChunkKey } from './first-chunk-key.js';
export { isV1BackupDir, readV1, restoreV1 } from './read-v1.js';
export { checkBackupDirectory } from './not-a-backup.js';
export { DEFAULT_MAX_KDF_WORK, RESTORE_MIN_MAX_MEMORY, kdfLimitsFor } from './kdf-budget.js';
export { defaultSlotBytes } from './slot-layout.js';
export { includedDomainsBySubdir, subdirOfDomain } from './verify-expect.js';
export type { OuterMember, OuterSource } from './outer-source.js';
export type {
  ArchiveHead,
  ReadHeadOptions,
  RestoreDataContext,
  RestoreDataResult,
  RestoreProgressEvent,
  RestoreSelection,
  SelectionEntry,
  VmRestoreResult,
} from './types.js';
