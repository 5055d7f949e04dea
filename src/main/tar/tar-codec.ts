// Header decoding shared by the three tar readers (outer-tar-reader.ts, single-member-reader.ts,
// restore/stream/inner-tar-member.ts): the checksum test, the typeflag, which headers only extend
// the next one, GNU long names and pax decimal values. The field layout and the writers' side are
// in tar-header.ts.
import { headerChecksum, parseNumeric } from './tar-header.js';

/** Whether the stored checksum matches the block: GNU tar accepts the unsigned or the signed sum. */
export function checksumMatches(block: Uint8Array): boolean {
  const stored = parseNumeric(block, 'chksum');
  if (stored === null) return false;
  const sum = headerChecksum(block);
  return stored === sum.unsigned || stored === sum.signed;
}

/** The typeflag as a one-character string (NUL, the pre-POSIX regular file, kept as '\0'). */
export function typeflagOf(block: Uint8Array): string {
  return String.fromCharCode(block[156] ?? 0);
}

/** Headers whose data describes the next member: pax 'x' / global 'g', GNU long name 'L' / link 'K'. */
export function isExtensionHeader(type: string): boolean {
  return type === 'x' || type === 'g' || type === 'L' || type === 'K';
}

/** A GNU long-name ('L') payload as text: the bytes before the first NUL, as UTF-8. */
export function longNameText(payload: Uint8Array): string {
  return Buffer.from(payload).toString('utf8').replace(/\0.*$/s, '');
}

/** A GNU long-name payload without its trailing NUL padding (bytes, for a strict decoder). */
export function trimTrailingNuls(payload: Uint8Array): Uint8Array {
  let end = payload.length;
  while (end > 0 && payload[end - 1] === 0) end--;
  return payload.subarray(0, end);
}

/** A pax decimal value (size): 1 to `maxDigits` ASCII digits and a safe integer, else null. */
export function paxDecimal(text: string, maxDigits = 16): number | null {
  if (!new RegExp(`^[0-9]{1,${maxDigits}}$`).test(text)) return null;
  const n = Number(text);
  return Number.isSafeInteger(n) ? n : null;
}
