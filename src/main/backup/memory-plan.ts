// Splits the --max-memory budget between chunk slots, compression blocks and concurrent scrypt
// derivations (each needs 128·r·N bytes: 512 MiB at logN 19). Pure.
import { formatBytes } from '../size-text.js';
import { SCRYPT_PREFIX, SCRYPT_SUFFIX } from './chunk-pipeline.js';

export interface MemoryPlanInput {
  maxMemory: number;
  threads: number;
  chunkSize: number;
  format: 2 | 3 | 4;
  scryptLogN: number;
  /** in-process block compression is used */
  compressBlocks: boolean;
}

export interface MemoryPlan {
  /** bytes of one chunk slot: the chunk and what encoding may add around it */
  chunkSlotBytes: number;
  chunkSlots: number;
  /** format 2: slots for the transformed copy of each volume */
  chunkOutSlots: number;
  blockBytes: number;
  blockSlots: number;
  kdfConcurrency: number;
  kdfBytes: number;
  /** what the plan will really use (may exceed maxMemory when the budget is below the minimum) */
  plannedBytes: number;
  warnings: string[];
}

export const BLOCK_BYTES = 4 * 1024 * 1024;
const clamp = (v: number, lo: number, hi: number) => Math.max(lo, Math.min(hi, v));

/** A chunk slot holds the chunk with the scrypt file's header and MAC around it (format 4), or its
 *  compressed/encrypted copy: a page for headers and padding, and 0.2 % for deflate's worst case
 *  on incompressible data. (The budget below counts chunkSize per slot: the rest is small.) */
function chunkSlotBytes(chunkSize: number): number {
  return chunkSize + SCRYPT_PREFIX + SCRYPT_SUFFIX + 4096 + Math.ceil(chunkSize / 500);
}

/** Decide how many buffers of each kind fit in the budget. */
export function planMemory(i: MemoryPlanInput): MemoryPlan {
  const warnings: string[] = [];
  const kdfBytes = i.format === 4 ? 128 * 8 * 2 ** i.scryptLogN : 0;
  const blockBytes = Math.min(BLOCK_BYTES, i.chunkSize);
  const blockSlots = i.compressBlocks ? i.threads + 2 : 1;
  const blockMem = blockSlots * 2 * blockBytes;
  const chunk = i.chunkSize;
  const perVolume = i.format === 2 ? 2 : 1; // format 2 keeps the volume and its transformed copy
  const minChunks = 2;
  let kdfConcurrency = 1;
  if (kdfBytes > 0) kdfConcurrency = clamp(Math.floor((i.maxMemory - blockMem - minChunks * chunk) / kdfBytes), 1, i.threads);
  const left = i.maxMemory - blockMem - (kdfBytes > 0 ? kdfConcurrency * kdfBytes : 0);
  const chunkSlots = clamp(Math.floor(left / (chunk * perVolume)), minChunks, i.threads + 2);
  const plannedBytes = blockMem + kdfConcurrency * kdfBytes + chunkSlots * chunk * perVolume;
  if (plannedBytes > i.maxMemory) {
    warnings.push(`--max-memory ${formatBytes(i.maxMemory)} is below the minimum for these settings; using ${formatBytes(plannedBytes)} (chunk size ${formatBytes(chunk)}${kdfBytes ? `, scrypt logN ${i.scryptLogN} needs ${formatBytes(kdfBytes)} per derivation` : ''})`);
  }
  return { chunkSlotBytes: chunkSlotBytes(i.chunkSize), chunkSlots, chunkOutSlots: i.format === 2 ? chunkSlots : 0, blockBytes, blockSlots, kdfConcurrency, kdfBytes, plannedBytes, warnings };
}
