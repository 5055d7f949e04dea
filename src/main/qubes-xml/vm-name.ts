// Qubes VM name rules (qubes-core-admin `validate_name`), used to check names read from
// untrusted backups and names chosen for restored VMs.

/** Options of isValidVmName. */
export interface VmNameOptions {
  /**
   * Allow '.' after the first character, as Qubes R3 and R4.0 did. Current qubes-core-admin
   * (R4.1+) rejects it, so a restore onto a current host should pass false. Default true.
   */
  allowDot?: boolean;
}

/**
 * True if `name` is a valid Qubes VM name: a letter, then letters, digits, `_`, `-` (and `.`
 * unless allowDot is false); at most 31 characters; not `none`, `default` or `Domain-0`; not
 * ending in `-dm`.
 */
export function isValidVmName(name: string, opts: VmNameOptions = {}): boolean {
  if (typeof name !== 'string' || name.length === 0 || name.length > 31) return false;
  const re = opts.allowDot === false ? /^[a-zA-Z][a-zA-Z0-9_-]*$/ : /^[a-zA-Z][a-zA-Z0-9_.-]*$/;
  if (!re.test(name)) return false;
  if (name === 'none' || name === 'default' || name === 'Domain-0') return false;
  return !name.endsWith('-dm');
}
