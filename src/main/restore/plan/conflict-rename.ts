// `--rename-conflicting`, as Qubes names a VM whose name is taken on the host: the name cut to 29
// characters (so that the result stays a valid, at most 31 character, Qubes VM name), as it is if
// that is free, else with a number appended: `work1`, `work2`, … `work99`.
import { isValidVmName } from '../../qubes-xml/index.js';

/** Longest Qubes VM name. */
export const MAX_VM_NAME_LENGTH = 31;

/** Highest number appended by --rename-conflicting (Qubes R4 tries up to 99 too). */
export const MAX_RENAME_SUFFIX = 99;

/** Qubes cuts a name to this length before it appends a number. */
const RENAME_BASE_LENGTH = MAX_VM_NAME_LENGTH - 2;

/**
 * The name Qubes' restore gives a VM called `name` that conflicts: `name` cut to 29 characters if
 * that is free, else the first free `<cut><n>` (n = 1…99); `taken(candidate)` says whether a name
 * is in use. Null when all are taken.
 */
export function findFreeName(name: string, taken: (candidate: string) => boolean): string | null {
  const base = name.slice(0, RENAME_BASE_LENGTH);
  if (base !== name && isValidVmName(base) && !taken(base)) return base;
  for (let n = 1; n <= MAX_RENAME_SUFFIX; n++) {
    const candidate = `${base}${n}`;
    if (!isValidVmName(candidate)) continue;
    if (!taken(candidate)) return candidate;
  }
  return null;
}
