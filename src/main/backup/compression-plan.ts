// How a backup compresses its inner archives, decided once from -Z / --compress-level and the
// runtime: independent blocks in the worker pool (gzip always; zstd where node:zlib has it, Node
// >= 22.15), or an allow-listed program (zstd on older runtimes, with -T<threads>; the other
// filters) reading the inner archives we make (program-compressor.ts), or GNU tar's. The header
// names the filter the user chose; every path writes a stream that `<filter> -d` reads.
import { fail } from '../errors.js';
import { ALLOWED_FILTERS, allowedFilter, blockCodecAvailable, type BlockCodec } from '../../workers/compress.js';
import { filterAvailable } from '../io/filter-program.js';

/** The --compress-level range and default per filter (the programs' own: gzip -6, zstd -3). */
export const LEVELS: Record<BlockCodec, { min: number; max: number; default: number }> = {
  gzip: { min: 1, max: 9, default: 6 },
  zstd: { min: 1, max: 19, default: 3 },
};

export type BackupCompression =
  | { kind: 'none' }
  /** in-process, in the worker pool */
  | { kind: 'blocks'; filter: string; codec: BlockCodec; level: number }
  /** `program args…` over each inner archive: ours (program-compressor.ts), or GNU tar's where tar
   *  makes it (directories, the dom0 home, …); once per in-memory file */
  | { kind: 'program'; filter: string; program: string; args: string[]; level: number | null };

export interface CompressionInput {
  compress: boolean;
  filter: string;
  /** --compress-level, if given */
  level: number | undefined;
  format: 2 | 3 | 4;
  threads: number;
  /** override of the runtime check (tests, benchmarks): whether node:zlib has zstd */
  zstdInProcess?: boolean;
}

/** zstd and its multi-threaded alias take zstd levels; the header keeps the name the user chose. */
function codecOf(filter: string): BlockCodec | null {
  if (filter === 'gzip') return 'gzip';
  return filter === 'zstd' || filter === 'zstdmt' ? 'zstd' : null;
}

/** Validate the options (ERR_USAGE, before anything is written) and choose the path. */
export function planCompression(i: CompressionInput): BackupCompression {
  if (!i.compress) {
    if (i.level !== undefined) fail('ERR_USAGE', '--compress-level has no effect with --no-compress');
    return { kind: 'none' };
  }
  const filter = allowedFilter(i.filter);
  if (filter === null) fail('ERR_USAGE', `compression filter '${i.filter}' is not allowed (allowed: ${ALLOWED_FILTERS.join(', ')})`);
  if (i.format === 2 && filter !== 'gzip') fail('ERR_USAGE', 'format 2 compresses each volume with gzip only');
  const codec = codecOf(filter);
  if (codec === null) {
    if (i.level !== undefined) fail('ERR_USAGE', `--compress-level applies to gzip (1-9) and zstd (1-19) only, not to ${filter}`);
    if (!filterAvailable(filter)) fail('ERR_USAGE', `compression filter '${filter}' is not installed`);
    return { kind: 'program', filter, program: filter, args: [], level: null };
  }
  const range = LEVELS[codec];
  const level = i.level ?? range.default;
  if (!Number.isInteger(level) || level < range.min || level > range.max) fail('ERR_USAGE', `--compress-level ${level}: ${filter} takes ${range.min} to ${range.max}`);
  if (codec === 'gzip' || (i.zstdInProcess ?? blockCodecAvailable('zstd'))) return { kind: 'blocks', filter, codec, level };
  if (!filterAvailable(filter)) fail('ERR_USAGE', `compression filter '${filter}': this Node.js (${process.version}) has no zstd in node:zlib (Node >= 22.15 has) and the ${filter} program is not installed`);
  return { kind: 'program', filter, program: filter, args: [`-${level}`, `-T${i.threads}`], level };
}

/** For the summary line, e.g. "compressed with zstd -3 in 2 worker threads with node:zlib". */
export function describeCompression(c: BackupCompression, threads: number): string {
  if (c.kind === 'none') return 'not compressed';
  if (c.kind === 'blocks') return `compressed with ${c.filter} -${c.level} in ${threads} worker thread${threads === 1 ? '' : 's'} with node:zlib`;
  const why = codecOf(c.filter) === 'zstd' ? ` (Node.js ${process.version} has no zstd in node:zlib)` : '';
  return `compressed by the ${c.program} program: ${[c.program, ...c.args].join(' ')}${why}`;
}

/** The same for the --json summary. */
export function compressionJson(c: BackupCompression, threads: number): Record<string, unknown> {
  if (c.kind === 'none') return { filter: null, level: null, engine: 'none' };
  if (c.kind === 'blocks') return { filter: c.filter, level: c.level, engine: 'node-zlib-workers', threads };
  return { filter: c.filter, level: c.level, engine: 'program', command: [c.program, ...c.args].join(' ') };
}
