// Validation of the untrusted `backup-path` values of qubes.xml (FORMAT.md §7.1): a VM's archive
// subdir (`vm<qid>/` or v1–v3 `appvms|servicevms|vm-templates/<name>/`) and the dom0 home path.

const VM_DIR_KINDS = new Set(['appvms', 'servicevms', 'vm-templates']);

/** Same shape as a Qubes VM name (letters, digits, `_.-`, starts with a letter), ≤ 31 chars. */
const NAME_LIKE = /^[A-Za-z][A-Za-z0-9_.-]{0,30}$/;

/** Unix user name as found as the basename of a dom0 home (`user`, `jane.doe`, `_svc`). */
const USER_LIKE = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$/;

/**
 * Normalize a VM's untrusted backup path to the archive subdir with a trailing slash
 * (`vm3` / `vm3/` → `vm3/`, `appvms/work` → `appvms/work/`); null when it has any other shape.
 */
export function vmSubdirOf(untrustedPath: string): string | null {
  const p = untrustedPath.endsWith('/') ? untrustedPath.slice(0, -1) : untrustedPath;
  if (/^vm(0|[1-9][0-9]{0,8})$/.test(p)) return `${p}/`;
  const parts = p.split('/');
  if (parts.length === 2) {
    const [kind, name] = parts as [string, string];
    if (VM_DIR_KINDS.has(kind) && NAME_LIKE.test(name)) return `${p}/`;
  }
  return null;
}

/** Parse a dom0 home backup path `dom0-home/<user>` (trailing slash tolerated); null if malformed. */
export function dom0UserOf(untrustedPath: string): string | null {
  const m = /^dom0-home\/([^/]+)\/?$/.exec(untrustedPath);
  const user = m?.[1];
  if (user === undefined || user === '.' || user === '..' || !USER_LIKE.test(user)) return null;
  return user;
}

/** The archive subdir of the dom0 home in every format version. */
export const DOM0_HOME_SUBDIR = 'dom0-home/';
