// Qubes VM name rules (qubes-core-admin `validate_name`), used to check names read from
// untrusted backups and names chosen for restored VMs.

/** Options of isValidVmName. */
export interface VmNameOptions {
  /**
   * Allow '.' after the first character, as Qubes R1–R3 did. Qubes R4 (qubes-core-admin
   * `validate_name`) rejects it and would refuse to load a qubes.xml holding such a name, so the
   * default is false.
   */
  allowDot?: boolean;
}

/**
 * True if `name` is a valid Qubes VM name: a letter, then letters, digits, `_`, `-` (and `.`
 * with allowDot); at most 31 characters; not `none`, `default` or `Domain-0`; not ending in `-dm`.
 */
export function isValidVmName(name: string, opts: VmNameOptions = {}): boolean {
  if (typeof name !== 'string' || name.length === 0 || name.length > 31) return false;
  const re = opts.allowDot === true ? /^[a-zA-Z][a-zA-Z0-9_.-]*$/ : /^[a-zA-Z][a-zA-Z0-9_-]*$/;
  if (!re.test(name)) return false;
  if (name === 'none' || name === 'default' || name === 'Domain-0') return false;
  return !name.endsWith('-dm');
}
