// How a restore splits --max-memory once the archive's head states what one key derivation costs:
// every worker may run a derivation at once, the chunks in flight get the rest, but never less than
// two of the largest chunks with their outputs (then fewer derivations run at once). Pure.

const MiB = 1024 * 1024;
/** Chunk memory never planned below this: two 100 MiB chunks plus their outputs, at least. */
export const MIN_CHUNK_MEMORY_BYTES = 256 * MiB;

export interface RestoreMemoryPlan {
  /** bound of the chunk slots (slots × slot size) */
  chunkMemory: number;
  /** said when --max-memory is below what every thread deriving at once plus two chunks need */
  warning?: string;
}

function mib(n: number): string {
  return n < MiB ? `${(n / 1024).toFixed(1)} KiB` : `${(n / MiB).toFixed(n < 10 * MiB ? 1 : 0)} MiB`;
}

/** The plan for `maxMemory` with `threads` workers and derivations of `kdfBytes` (0: none). */
export function planRestoreMemory(maxMemory: number, threads: number, kdfBytes: number): RestoreMemoryPlan {
  const left = maxMemory - threads * kdfBytes;
  if (left >= MIN_CHUNK_MEMORY_BYTES) return { chunkMemory: left };
  return {
    chunkMemory: MIN_CHUNK_MEMORY_BYTES,
    warning: `--max-memory ${mib(maxMemory)} is below what ${threads} concurrent scrypt derivations (${mib(kdfBytes)} each) plus two chunks need; using ${mib(MIN_CHUNK_MEMORY_BYTES)} for chunks and running fewer derivations at once (raise it to use every thread)`,
  };
}
