// Parallel gunzip of an inner archive written by us: the units of parallel-units.ts are our gzip
// members, found by the size subfield our writer puts in each (src/workers/gzip-member.ts); the
// decoded size is the member's trailer (ISIZE). The first member without the subfield (Qubes-made
// archives, pigz, our older archives) or one too big for the slots hands the rest of the stream,
// from that member on, back to the streaming decoder.
import type { WorkerPool } from '../../pipeline/worker-pool.js';
import { gzipBound } from '../../../workers/compress.js';
import { MARKED_HEADER_BYTES, memberHead } from '../../../workers/gzip-member.js';
import { zlibDirectAvailable } from '../../../workers/zlib-into.js';
import { MAX_UNIT_OUT, UnitScanner, unitPoolBytes, unitPoolsFor, type UnitFormat, type UnitMeasure, type UnitOutput, type UnitPools } from './parallel-units.js';

/** Largest decompressed member decoded in parallel (ours hold 4 MiB). */
export const MAX_MEMBER_OUT = MAX_UNIT_OUT;
/** Largest compressed member decoded in parallel. */
export const MAX_MEMBER_IN = gzipBound(MAX_MEMBER_OUT);
/** Smallest possible marked member: header, an empty deflate block, the trailer. */
const MIN_MEMBER = MARKED_HEADER_BYTES + 2 + 8;

const OTHER: UnitMeasure = { kind: 'other' };

/** Our marked gzip members as units: the header names the size, the trailer the decoded size. */
export const gzipMembers: UnitFormat = {
  unit: 'gzip member',
  filter: 'gunzip',
  task: 'gunzipMember',
  maxIn: MAX_MEMBER_IN,
  available: zlibDirectAvailable,
  measure(b: Uint8Array): UnitMeasure {
    const head = memberHead(b, 0);
    if (head.kind === 'short') return { kind: 'short', need: MARKED_HEADER_BYTES, resume: 0 };
    if (head.kind === 'other' || head.size < MIN_MEMBER || head.size > MAX_MEMBER_IN) return OTHER;
    if (b.length < head.size) return { kind: 'short', need: head.size, resume: 0 };
    const isize = isizeOf(b, head.size);
    if (isize === 0 || isize > MAX_MEMBER_OUT) return OTHER;
    return { kind: 'unit', size: head.size, outSize: isize };
  },
};

/** The ISIZE field of the member ending at `end` (its last 4 bytes). */
function isizeOf(b: Uint8Array, end: number): number {
  return (b[end - 4]! | (b[end - 3]! << 8) | (b[end - 2]! << 16) | (b[end - 1]! << 24)) >>> 0;
}

// The member-specific names of the engine, for the callers and tests written against them.
export type MemberPools = UnitPools;
export type MemberOutput = UnitOutput;
export const MemberScanner = UnitScanner;
/** Pools for parallel gzip members, or undefined (one thread, or no zlib handle). */
export const memberPoolsFor = (pool: WorkerPool): MemberPools | undefined => unitPoolsFor(pool, gzipMembers);
export const memberPoolBytes = unitPoolBytes;
