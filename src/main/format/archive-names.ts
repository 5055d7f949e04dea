// Names in the outer archive (FORMAT.md §2.2, §4.1, §4.2): building chunk and .hmac names for the
// writer, and a strict parser that classifies untrusted member names for the reader.
import { fail } from '../errors.js';
import { MAX_CHUNK_INDEX, MAX_MEMBER_NAME_BYTES, MAX_PATH_DEPTH, USTAR_NAME_BYTES, USTAR_PREFIX_BYTES } from './limits.js';
import type { FormatVersion } from './backup-header.js';

export const HEADER_NAME = 'backup-header';
export const HEADER_HMAC_NAME = 'backup-header.hmac';

/** What an outer member is. `base` is the chunk base (`vm3/private.img`, `vm9/.`, `qubes.xml`, `dom0-home/user`). */
export type ParsedMember =
  | { kind: 'header' }
  | { kind: 'header-hmac' }
  | { kind: 'chunk'; base: string; index: number; /** v2/v3 `<chunk>.hmac` file */ hmac: boolean };

/** Chunk base name `<subdir><basename>`; a whole-directory archive uses basename `.` (→ `vm9/.`). */
export function chunkBaseName(subdir: string, basename: string): string {
  if (subdir !== '' && !subdir.endsWith('/')) fail('ERR_INTERNAL', `subdir must be empty or end in '/': ${JSON.stringify(subdir)}`);
  if (basename === '' || basename === '..' || basename.includes('/')) fail('ERR_INTERNAL', `bad basename ${JSON.stringify(basename)}`);
  return subdir + basename;
}

/** Name of chunk `index` of `base`: `base.NNN`, plus `.enc` in format 4. */
export function chunkName(base: string, index: number, version: FormatVersion): string {
  if (!Number.isInteger(index) || index < 0) fail('ERR_INTERNAL', `bad chunk index ${index}`);
  if (index > MAX_CHUNK_INDEX) fail('ERR_TOO_LARGE', `${base}: more than ${MAX_CHUNK_INDEX + 1} chunks (chunk names stop at .${MAX_CHUNK_INDEX})`, { file: base });
  const name = `${base}.${String(index).padStart(3, '0')}`;
  return version === 4 ? `${name}.enc` : name;
}

/** Name of the v2/v3 HMAC file of a chunk (or of `backup-header`). */
export function hmacName(chunk: string): string {
  return `${chunk}.hmac`;
}

/**
 * Classify an untrusted outer member name; throws ERR_UNSAFE_NAME for anything else. Rules:
 * - printable ASCII only (0x20–0x7e), no backslash; must not start with '-' (tar argv);
 * - ≤ MAX_MEMBER_NAME_BYTES and representable in ustar (name ≤ 100, or prefix ≤ 155 '/' name ≤ 100);
 * - relative: no leading '/', no empty component ('a//b', trailing '/'), no '.' or '..' component
 *   (`vm9/..000` is fine: its component is `..000`), at most MAX_PATH_DEPTH components;
 * - `backup-header` / `backup-header.hmac`, or a chunk `<base>.NNN` with exactly three digits:
 *   v4 requires `.NNN.enc`; v2/v3 forbid `.enc` and allow a trailing `.hmac`;
 * - the base may end in `/.` (whole-directory archive) but has no other '.'/'..' component.
 */
export function parseMemberName(untrustedName: string, version: FormatVersion): ParsedMember {
  const name = checkSafePath(untrustedName);
  if (name === HEADER_NAME) return { kind: 'header' };
  if (name === HEADER_HMAC_NAME) return { kind: 'header-hmac' };

  let rest = name;
  let hmac = false;
  if (version === 4) {
    if (!rest.endsWith('.enc')) unsafe(name, 'format 4 chunk names end in .NNN.enc');
    rest = rest.slice(0, -'.enc'.length);
  } else {
    if (rest.endsWith('.enc')) unsafe(name, `'.enc' chunks belong to format 4, this is format ${version}`);
    if (rest.endsWith('.hmac')) {
      hmac = true;
      rest = rest.slice(0, -'.hmac'.length);
    }
  }
  const m = /^(.*)\.([0-9]+)$/.exec(rest);
  if (m === null) unsafe(name, 'not a chunk name (<base>.NNN)');
  const base = m[1] ?? '';
  const digits = m[2] ?? '';
  const index = Number(digits);
  // canonical %03d form only: at least 3 digits, no extra leading zeros (.000, .999, .1000)
  if (digits !== String(index).padStart(3, '0')) unsafe(name, 'chunk index must be written as %03d (.000, .001, … .999, .1000)');
  if (index > MAX_CHUNK_INDEX) unsafe(name, 'chunk index out of range');

  const parts = base.split('/');
  for (const [i, part] of parts.entries()) {
    const last = i === parts.length - 1;
    if (part === '') unsafe(name, 'empty chunk base');
    if (part === '..') unsafe(name, "'..' in chunk base");
    if (part === '.' && !(last && i > 0)) unsafe(name, "'.' allowed only as the last component of a whole-directory base (vmN/.)");
  }
  return { kind: 'chunk', base, index, hmac };
}

/** The subdir part of a base, ending in '/' or empty: `vm3/private.img` → `vm3/`, `qubes.xml` → ''. */
export function subdirOfBase(base: string): string {
  return base.slice(0, base.lastIndexOf('/') + 1);
}

/** The last component of a base: `private.img`, `.` (whole directory), `user`, `qubes.xml`. */
export function basenameOfBase(base: string): string {
  return base.slice(base.lastIndexOf('/') + 1);
}

/** True for a whole-directory archive base (`vm9/.`), whose inner members are `vm9/./…`. */
export function isWholeDirBase(base: string): boolean {
  return base.endsWith('/.');
}

/**
 * Member name inside the inner tar of a base (writers prefix it via --xform): the base itself —
 * `vm3/private.img`, `vm9/.` (tar extracts `vm9/./…`), `qubes.xml`, `dom0-home/user`.
 * Unlike R2/R3 (`rstrip('.000')`), nothing is stripped character-wise.
 */
export function innerMemberName(base: string): string {
  return base;
}

/** True if `name` fits a ustar header without pax/GNU long-name records. */
export function fitsUstar(name: string): boolean {
  const len = Buffer.byteLength(name, 'utf8');
  if (len <= USTAR_NAME_BYTES) return true;
  for (let i = name.indexOf('/'); i >= 0; i = name.indexOf('/', i + 1)) {
    const prefix = Buffer.byteLength(name.slice(0, i), 'utf8');
    const rest = len - prefix - 1;
    if (prefix <= USTAR_PREFIX_BYTES && rest > 0 && rest <= USTAR_NAME_BYTES) return true;
  }
  return false;
}

/** Path-level rules shared by every member kind; returns the name unchanged. */
function checkSafePath(name: string): string {
  if (typeof name !== 'string' || name === '') unsafe(String(name), 'empty name');
  if (!/^[\x20-\x7e]+$/.test(name)) unsafe(name, 'only printable ASCII is allowed');
  if (name.includes('\\')) unsafe(name, 'backslash in name');
  if (name.length > MAX_MEMBER_NAME_BYTES) unsafe(name, `longer than ${MAX_MEMBER_NAME_BYTES} bytes`);
  if (!fitsUstar(name)) unsafe(name, 'does not fit a ustar header (prefix ≤ 155 + name ≤ 100)');
  if (name.startsWith('/')) unsafe(name, 'absolute path');
  if (name.startsWith('-')) unsafe(name, "starts with '-'");
  const parts = name.split('/');
  if (parts.length > MAX_PATH_DEPTH) unsafe(name, `deeper than ${MAX_PATH_DEPTH} components`);
  for (const part of parts) {
    if (part === '') unsafe(name, 'empty path component');
    if (part === '.' || part === '..') unsafe(name, `'${part}' path component`);
  }
  return name;
}

function unsafe(name: string, why: string): never {
  const shown = JSON.stringify(name.length > 120 ? `${name.slice(0, 120)}…` : name);
  fail('ERR_UNSAFE_NAME', `unsafe or unexpected archive member ${shown}: ${why}`, { file: shown });
}
