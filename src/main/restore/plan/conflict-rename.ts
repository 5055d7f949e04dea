// `--rename-conflicting`: pick `<name>-1` … `<name>-99` for a VM whose name is taken on the host,
// truncating the base so the result stays a valid (≤ 31 character) Qubes VM name.
import { isValidVmName } from '../../qubes-xml/index.js';

/** Longest Qubes VM name. */
export const MAX_VM_NAME_LENGTH = 31;

/** Highest numeric suffix tried by --rename-conflicting (as in Qubes R4). */
export const MAX_RENAME_SUFFIX = 99;

/**
 * First free `<base>-<n>` (n = 1…99) for `name`, where base is `name` cut so the result has at most
 * 31 characters; `taken(candidate)` says whether a name is in use. Null when all are taken.
 */
export function findFreeName(name: string, taken: (candidate: string) => boolean): string | null {
  for (let n = 1; n <= MAX_RENAME_SUFFIX; n++) {
    const suffix = `-${n}`;
    const candidate = name.slice(0, MAX_VM_NAME_LENGTH - suffix.length) + suffix;
    if (!isValidVmName(candidate)) continue;
    if (!taken(candidate)) return candidate;
  }
  return null;
}
