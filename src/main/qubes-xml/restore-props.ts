// The properties a restored VM may carry from an (untrusted) backup: an allow-list of the Qubes R4
// QubesVM/AppVM/StandaloneVM/DispVM value properties (qubes-core-admin qubes/vm/qubesvm.py,
// mix/net.py, mix/dvmtemplate.py, dispvm.py), each with the check its Qubes setter makes (or a
// stricter one). Identity and VM references are set by the caller, never copied.
import { legacyR4Properties } from './legacy-convert.js';
import type { DomainInfo } from './types.js';
import { aClass, shown } from './vm-kinds.js';

type Check = (value: string) => string | undefined;

const MAX_INT = 2 ** 31 - 1;

function bool(v: string): string | undefined {
  const l = v.toLowerCase();
  if (['1', 'yes', 'true', 'on'].includes(l)) return 'True';
  if (['0', 'no', 'false', 'off', ''].includes(l)) return 'False';
  return undefined;
}

const int = (min: number, max: number): Check => (v) => {
  if (!/^[0-9]{1,16}$/.test(v)) return undefined;
  const n = Number(v);
  return n >= min && n <= max ? String(n) : undefined;
};

const re = (pattern: RegExp, norm: (v: string) => string = (v) => v): Check => (v) => (pattern.test(v) ? norm(v) : undefined);

/** Printable text: no C0/C1 control characters (tabs and newlines included), DEL, line separators or bidi overrides. */
export const PRINTABLE = /^[^\p{Cc}\u2028\u2029\u202a-\u202e\u2066-\u2069]*$/u;

function ipv4(v: string): string | undefined {
  const parts = v.split('.');
  return parts.length === 4 && parts.every((p) => /^[0-9]{1,3}$/.test(p) && Number(p) <= 255) ? v : undefined;
}

function ipv6(v: string): string | undefined {
  if (v.length > 39 || !/^[0-9a-fA-F:]+$/.test(v)) return undefined;
  const halves = v.split('::');
  if (halves.length > 2) return undefined;
  const groups = halves.map((h) => (h === '' ? [] : h.split(':')));
  if (groups.some((g) => g.some((x) => !/^[0-9a-fA-F]{1,4}$/.test(x)))) return undefined;
  const n = groups.reduce((s, g) => s + g.length, 0);
  return (halves.length === 2 ? n <= 7 : n === 8) ? v.toLowerCase() : undefined;
}

/** Qubes `_setter_kbd_layout`: ASCII `layout+variant+options`. */
function keyboardLayout(v: string): string | undefined {
  const p = v.split('+');
  if (v.length > 128 || p.length !== 3) return undefined;
  const [layout, variant, options] = p as [string, string, string];
  return /^[A-Za-z]+$/.test(layout) && /^[A-Za-z0-9_-]*$/.test(variant) && /^[A-Za-z0-9_:,-]*$/.test(options) ? v : undefined;
}

/**
 * Kernel: '' (none) or a version-like directory name under vm-kernels (Qubes refuses '/'; we also
 * refuse '.', '..' and anything but letters, digits and `._+-`).
 */
export function checkKernel(v: string): string | undefined {
  if (v === '') return v;
  return /^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$/.test(v) ? v : undefined;
}

const ALL = ['AppVM', 'TemplateVM', 'StandaloneVM', 'DispVM'];

/** Property → (classes it exists on, check returning the normalised value or undefined). */
const ALLOWED: Record<string, [string[], Check]> = {
  autostart: [ALL, bool],
  debug: [ALL, bool],
  include_in_backups: [ALL, bool],
  provides_network: [ALL, bool],
  template_for_dispvms: [['AppVM', 'StandaloneVM'], bool],
  auto_cleanup: [['DispVM'], bool],
  memory: [ALL, int(1, MAX_INT)],
  maxmem: [ALL, int(0, MAX_INT)],
  vcpus: [ALL, int(1, 4096)],
  stubdom_mem: [ALL, int(1, MAX_INT)],
  qrexec_timeout: [ALL, int(1, MAX_INT)],
  shutdown_timeout: [ALL, int(1, MAX_INT)],
  backup_timestamp: [ALL, int(0, Number.MAX_SAFE_INTEGER)],
  virt_mode: [ALL, re(/^(hvm|pv|pvh)$/i, (v) => v.toLowerCase())],
  kernel: [ALL, checkKernel],
  kernelopts: [ALL, (v) => (v.length <= 512 && PRINTABLE.test(v) ? v : undefined)],
  default_user: [ALL, re(/^[A-Za-z0-9_+,.-]{1,64}$/)],
  mac: [ALL, re(/^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$/, (v) => v.toLowerCase())],
  ip: [ALL, ipv4],
  ip6: [ALL, ipv6],
  keyboard_layout: [ALL, keyboardLayout],
};

/** Never copied: set by the restore itself (identity, references) or meaningless on a new VM. */
const SET_BY_RESTORE = new Set(['name', 'qid', 'uuid', 'label', 'template', 'netvm', 'default_dispvm', 'installed_by_rpm', 'dispid']);

/** References to host VMs that the restore does not check: left to the host's defaults. */
const HOST_REFERENCES = new Set(['guivm', 'audiovm', 'management_dispvm']);

/** R4.3's boot modes (QubesVM.bootmode, TemplateVM.appvm_default_bootmode): not carried. */
const BOOT_MODES = new Set(['bootmode', 'appvm_default_bootmode']);

/** The names of the properties a restored VM may carry (for documentation and tests). */
export const ALLOWED_PROPERTIES: readonly string[] = Object.keys(ALLOWED);

/**
 * The value properties of a restored VM of class `klass`: the backup's properties (R2/R3: as the
 * Qubes R4 client converts them) that are on the allow-list for the class and pass its check,
 * normalised. Everything else is dropped; `warnings` names each drop (identity and references,
 * which the caller sets, silently).
 */
export function restoredProperties(from: DomainInfo, klass: string): { props: Record<string, string>; warnings: string[] } {
  const src = from.legacyClass !== undefined ? legacyR4Properties(from) : from.properties;
  const props: Record<string, string> = {};
  const warnings: string[] = [];
  for (const [name, value] of Object.entries(src)) {
    if (SET_BY_RESTORE.has(name)) continue;
    if (HOST_REFERENCES.has(name)) {
      warnings.push(`property ${name} (${shown(value)}) not restored: the host's default applies`);
      continue;
    }
    if (BOOT_MODES.has(name)) {
      warnings.push(`property ${name} (${shown(value)}) not restored: a boot mode names one of its template's boot-mode.* features, which the host's template may not have (set it with qvm-prefs)`);
      continue;
    }
    const rule = Object.prototype.hasOwnProperty.call(ALLOWED, name) ? ALLOWED[name] : undefined;
    if (rule === undefined || !rule[0].includes(klass)) {
      warnings.push(`property ${shown(name)} not restored: not a property Qubes knows for ${aClass(klass)}`);
      continue;
    }
    const ok = rule[1](value);
    if (ok === undefined) warnings.push(`property ${name} not restored: invalid value ${shown(value)}`);
    else props[name] = ok;
  }
  return { props, warnings };
}
