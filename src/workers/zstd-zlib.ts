// zstd in `node:zlib` (Node >= 22.15), seen through a typed view: the project builds against the
// Node 20 type definitions, which do not know it, and must run on Node 20, which does not have it.
// `zstdZlib` is null where the runtime lacks it; callers then use the `zstd` program instead.
import * as zlib from 'node:zlib';
import type { Transform } from 'node:stream';

export interface ZstdOptions {
  chunkSize?: number;
  maxOutputLength?: number;
  /** ZSTD_c_* / ZSTD_d_* parameter number -> value */
  params?: Record<number, number>;
  /** the exact input size: recorded in the frame header, and the window is sized to it */
  pledgedSrcSize?: number;
}

export interface ZstdZlib {
  createZstdCompress(o?: ZstdOptions): Transform;
  createZstdDecompress(o?: ZstdOptions): Transform;
  zstdCompressSync(data: Uint8Array, o?: ZstdOptions): Buffer;
  zstdDecompressSync(data: Uint8Array, o?: ZstdOptions): Buffer;
  /** the constants this code uses */
  c: { compressionLevel: number; checksumFlag: number; flushEnd: number; windowLogMax: number };
}

function load(): ZstdZlib | null {
  const z = zlib as unknown as Partial<Omit<ZstdZlib, 'c'>>;
  const k = zlib.constants as unknown as Record<string, number | undefined>;
  const compressionLevel = k['ZSTD_c_compressionLevel'];
  const checksumFlag = k['ZSTD_c_checksumFlag'];
  const flushEnd = k['ZSTD_e_end'];
  const windowLogMax = k['ZSTD_d_windowLogMax'];
  if (
    typeof z.createZstdCompress !== 'function' ||
    typeof z.createZstdDecompress !== 'function' ||
    typeof z.zstdCompressSync !== 'function' ||
    typeof z.zstdDecompressSync !== 'function' ||
    compressionLevel === undefined ||
    checksumFlag === undefined ||
    flushEnd === undefined ||
    windowLogMax === undefined
  ) {
    return null;
  }
  return {
    createZstdCompress: z.createZstdCompress.bind(zlib),
    createZstdDecompress: z.createZstdDecompress.bind(zlib),
    zstdCompressSync: z.zstdCompressSync.bind(zlib),
    zstdDecompressSync: z.zstdDecompressSync.bind(zlib),
    c: { compressionLevel, checksumFlag, flushEnd, windowLogMax },
  };
}

/** Largest zstd window accepted on restore (2^23 = 8 MiB): what levels 1-19 of the zstd program use at
 *  most (Qubes runs it at its default level 3: 2 MiB), so an archive cannot make a decoder allocate
 *  more; only `--ultra` levels and `--long` write frames that need more. */
export const ZSTD_WINDOW_LOG_MAX = 23;

/** The runtime's zstd, or null (Node < 22.15). */
export const zstdZlib: ZstdZlib | null = load();

/** Compression parameters of one zstd frame: the level, and a content checksum as the `zstd`
 *  program writes by default (so `zstd -d` checks each frame, too). */
export function zstdCompressOptions(z: ZstdZlib, level: number, size: number): ZstdOptions {
  return { params: { [z.c.compressionLevel]: level, [z.c.checksumFlag]: 1 }, pledgedSrcSize: size };
}
