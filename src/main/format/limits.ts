// Size and shape limits of the Qubes backup format (FORMAT.md §2.2, §3.3, §4.2, §4.3) and the
// safety limits this implementation applies to untrusted archive input.

/** v3/v4 chunk size: 100 MiB of (v3: final encrypted, v4: plaintext) stream per chunk (§4.3). */
export const CHUNK_SIZE_BYTES = 104_857_600;

/** v2: GNU tar `--tape-length 100000`, in units of 1024 bytes (§4.1). */
export const V2_TAPE_LENGTH_KIB = 100_000;

/** v2: bytes of tar output per multi-volume volume (= one chunk before compression/encryption). */
export const V2_VOLUME_BYTES = V2_TAPE_LENGTH_KIB * 1024;

/** scrypt cost (N = 2^19, 512 MiB per derivation at r = 8) the backup writes by default and the
 *  restore's default --max-memory is sized for: what the scrypt tool and Qubes R4 pick on typical
 *  hardware. */
export const DEFAULT_SCRYPT_LOGN = 19;
/** The --scrypt-logn range a backup accepts (N = 2^10 … 2^22: 1 MiB … 4 GiB per derivation at r 8). */
export const MIN_SCRYPT_LOGN = 10;
export const MAX_SCRYPT_LOGN = 22;
/** The most worker threads a run takes (--threads). */
export const MAX_THREADS = 256;

/** Smallest --chunk-size accepted (tiny chunks would only multiply the per-chunk work). */
export const MIN_CHUNK_SIZE_BYTES = 64 * 1024;

/**
 * Largest chunk (v3/v4) or tar volume (v2) this tool writes and reads: the sizes Qubes itself uses.
 * The one limit shared by the backup's --chunk-size check and the restore's chunk slots, so that
 * every archive the backup writes is one the restore accepts.
 */
export function maxChunkSize(version: number): number {
  return version === 2 ? V2_VOLUME_BYTES : CHUNK_SIZE_BYTES;
}

/** --chunk-size must be a multiple of this: the page size (v3/v4), the tar record size (v2). */
export function chunkSizeMultiple(version: number): number {
  return version === 2 ? 10240 : 4096;
}

/** Largest `backup-header` we read; real headers are ~120 bytes (R4 client limit, §3.3). */
export const HEADER_MAX_BYTES = 4096;

/** Largest `.hmac` file we read (R4 client `HMAC_MAX_SIZE`, §3.3). */
export const HMAC_FILE_MAX_BYTES = 4096;

/** Largest qubes.xml we accept from an archive. */
export const QUBES_XML_MAX_BYTES = 1024 * 1024;

/**
 * Longest outer-archive member name in bytes. The name must also fit ustar: either the whole name
 * in the 100-byte `name` field, or a split at a '/' into prefix (≤155) + name (≤100), because the
 * VM-side extractor tar2qfile ignores pax/GNU long names (§2.2).
 */
export const MAX_MEMBER_NAME_BYTES = 255;

/** ustar `name` field width. */
export const USTAR_NAME_BYTES = 100;

/** ustar `prefix` field width. */
export const USTAR_PREFIX_BYTES = 155;

/** Most path components in an outer member name (real names have 1–3). */
export const MAX_PATH_DEPTH = 32;

/** Highest chunk number accepted. Names are `%03d` as Qubes writes them: `.000`–`.999`, then
 *  `.1000`, `.1001`… for files over ~97 GiB (Python's %03d only pads, it never truncates). */
export const MAX_CHUNK_INDEX = 99_999;

/** Room beside a VM's stated size (and its quarter) that a restore allows its inner archives. */
export const SIZE_LIMIT_SLACK = 64 * 1024 * 1024;

/** The most a VM's inner archives may hold, as a restore counts them (restore/stream/size-limit.ts),
 *  when its qubes.xml states `declared` bytes; the backup stops before it writes more. */
export function sizeLimitFor(declared: number): number {
  return declared + Math.floor(declared / 4) + SIZE_LIMIT_SLACK;
}
