// Where a chunk and its decoded bytes live inside one shared slot, per format version, and the
// default slot size and count for a memory budget.
import type { BackupHeader } from '../../format/backup-header.js';
import { maxChunkSize } from '../../format/limits.js';

/** Bytes kept free before the chunk: room for a v3 carry (< one cipher block) in front of it. */
export const SLOT_PREFIX = 64;
const PAGE = 4096;
const MAX_SLOTS = 8;

/** Chunk placement in a slot: input at `SLOT_PREFIX`; decoded output in place or in the upper half. */
export interface SlotLayout {
  slotBytes: number;
  /** largest chunk member that fits */
  maxChunkBytes: number;
  /** separate output region (v2 decompression), else decoding happens in place */
  output?: { offset: number; length: number };
}

/** True when a v2 chunk decodes into a separate region (decompression grows it). */
function needsOutputRegion(header: BackupHeader): boolean {
  return header.version === 2 && header.compressed;
}

/** Default slot size for a header: the largest legitimate chunk (plus its output when separate). */
export function defaultSlotBytes(header: BackupHeader): number {
  const max = maxChunkSize(header.version); // the same limit the backup's --chunk-size obeys
  let bytes: number;
  if (header.version === 4) bytes = SLOT_PREFIX + max + 128 + 1024;
  else if (header.version === 3) bytes = SLOT_PREFIX + max + 1024;
  else if (needsOutputRegion(header)) bytes = SLOT_PREFIX + 2 * (max + 1024 * 1024);
  else bytes = SLOT_PREFIX + max + 64 * 1024;
  return Math.ceil(bytes / PAGE) * PAGE;
}

/** Layout of a slot of `slotBytes` for this header. */
export function slotLayout(header: BackupHeader, slotBytes: number): SlotLayout {
  const usable = slotBytes - SLOT_PREFIX;
  if (!needsOutputRegion(header)) return { slotBytes, maxChunkBytes: usable };
  const half = Math.floor(usable / 2);
  return { slotBytes, maxChunkBytes: half, output: { offset: SLOT_PREFIX + half, length: usable - half } };
}

/**
 * Number of chunk slots for a memory budget: one per worker thread, at least two (one chunk read
 * while another is decoded or fed to tar), fewer if the budget is smaller, at least 1.
 * Not more: each slot is touched for the first time by the read into it, and fresh memory is the
 * most expensive thing a restore touches (LIMITS §0; on this VM ~2.5 CPU-s per GB when the host
 * took the pages back). With threads + 2 slots (before 2026-12-03) a restore of five 100 MiB chunks
 * read every chunk into a fresh slot; two slots at two threads made the same restore ~15 % faster
 * and used ~0.5 CPU-s less, and the reader still stays ahead: a chunk is read in less time than the
 * workers take to decode one (a logN 19 archive restored in the same time).
 */
export function slotCount(slotBytes: number, threads: number, maxMemoryBytes: number): number {
  return Math.max(1, Math.min(MAX_SLOTS, Math.max(2, threads), Math.floor(maxMemoryBytes / slotBytes)));
}

/** Small slots (chunks-in-flight.ts): a few, each for a chunk of up to ~1 MiB, beside the large ones. */
const SMALL_SLOTS = 8;
const SMALL_SLOT_BYTES = SLOT_PREFIX + 1024 * 1024;

/** The small slots for this header beside large slots of `slotBytes`, or undefined: none for format
 *  2 (a compressed chunk decodes into a region of its own, as large as its chunk size allows), nor
 *  where the large slots are not much larger (tests that make them small). */
export function smallSlots(header: BackupHeader, slotBytes: number): { slotBytes: number; slots: number; maxChunkBytes: number } | undefined {
  if (header.version < 3 || 4 * SMALL_SLOT_BYTES > slotBytes) return undefined;
  return { slotBytes: SMALL_SLOT_BYTES, slots: SMALL_SLOTS, maxChunkBytes: SMALL_SLOT_BYTES - SLOT_PREFIX };
}
