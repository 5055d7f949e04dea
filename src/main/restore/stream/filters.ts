// How the inner (per-file) tar stream of a v3/v4 archive is decompressed on restore: in-process
// streaming gunzip for gzip/pigz and zstd/zstdmt (where node:zlib has zstd: Node >= 22.15),
// otherwise an allow-listed, installed program run by us (`PROG -d`: the decoder feeding the image
// writer for VM images, and tar's stdin for the other files).
import { fail } from '../../errors.js';
import type { BackupHeader } from '../../format/backup-header.js';
import { allowedFilter } from '../../../workers/compress.js';
import { zstdZlib } from '../../../workers/zstd-zlib.js';
import { filterAvailable } from '../../io/filter-program.js';

/** Decompression of an inner stream. */
export type InnerFilter = { kind: 'none' } | { kind: 'gunzip' } | { kind: 'zstd' } | { kind: 'program'; program: string };

/**
 * Decide the inner decompression for an authenticated v3/v4 header. Only names on the allow-list
 * that are installed are ever run; anything else is ERR_UNSUPPORTED. (v2 compresses per chunk.)
 * `zstdInProcess` overrides the runtime check (tests).
 */
export function innerFilterOf(header: BackupHeader, zstdInProcess = zstdZlib !== null): InnerFilter {
  if (header.version === 2 || !header.compressed) return { kind: 'none' };
  const name = header.compressionFilter ?? 'gzip';
  const allowed = allowedFilter(name);
  if (allowed === null) fail('ERR_UNSUPPORTED', `compression filter ${JSON.stringify(name.slice(0, 64))} is not on the allow-list`);
  if (allowed === 'gzip' || allowed === 'pigz') return { kind: 'gunzip' };
  if ((allowed === 'zstd' || allowed === 'zstdmt') && zstdInProcess) return { kind: 'zstd' };
  if (!filterAvailable(allowed)) fail('ERR_UNSUPPORTED', `compression filter ${allowed} is not installed`);
  return { kind: 'program', program: allowed };
}
