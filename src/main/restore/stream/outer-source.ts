// The slice of the outer tar reader the restore pass uses (OuterTarReader satisfies it), with
// error mapping: any failure of the outer stream (truncation, bad tar header) is ERR_CORRUPT.
import { QvmBackupError, fail, isQvmBackupError } from '../../errors.js';

/** One outer member as the reader hands it out. */
export interface OuterMember {
  untrustedName: string;
  size: number;
  /** typeflag character ('0' for a regular file), when the reader reports it */
  typeflag?: string;
  /** the first min(n, size) bytes now (once, before readInto or skip; readInto still fills all of dst) */
  readHead(n: number): Promise<Uint8Array>;
  readInto(dst: Uint8Array): Promise<void>;
  skip(): Promise<void>;
}

/** A sequential outer-archive reader (it cannot seek). */
export interface OuterSource {
  next(): Promise<OuterMember | null>;
  readonly bytesRead: number;
  /** the first non-zero block, before the first member (to say what a non-backup input is) */
  readonly startBlock?: { offset: number; bytes: Uint8Array } | undefined;
}

/** Printable, bounded rendering of an untrusted name for messages. */
export function shownName(untrusted: string): string {
  const clean = untrusted.replace(/[^\x20-\x7e]/g, '?');
  return JSON.stringify(clean.length > 120 ? `${clean.slice(0, 120)}…` : clean);
}

/** Run one outer-stream step; failures that are not already classified become ERR_CORRUPT. */
export async function outerStep<T>(p: Promise<T>, what: string): Promise<T> {
  try {
    return await p;
  } catch (e) {
    if (isQvmBackupError(e)) throw e;
    const msg = e instanceof Error ? e.message : String(e);
    throw new QvmBackupError('ERR_CORRUPT', `archive is truncated or corrupted (${what}): ${msg}`, {}, e);
  }
}

/** Read a whole small member into a fresh buffer, refusing more than `cap` bytes. */
export async function readSmallMember(m: OuterMember, cap: number, what: string): Promise<Buffer> {
  if (!Number.isSafeInteger(m.size) || m.size < 0) fail('ERR_CORRUPT', `${what}: bad member size`);
  if (m.size > cap) fail('ERR_TOO_LARGE', `${what} is ${m.size} bytes, limit ${cap}`, { file: what });
  const buf = Buffer.alloc(m.size);
  await outerStep(m.readInto(buf), `reading ${what}`);
  return buf;
}
