// Features, tags and device assignments of a restored VM, from an untrusted backup: names and
// values string-checked and bounded; device assignments carried only between VMs of the same
// restore (an archive cannot hand a restored VM a device of dom0 or of another host VM).
import { PRINTABLE } from './restore-props.js';
import type { DeviceInfo, DomainInfo } from './types.js';
import { shown } from './vm-kinds.js';

/** Bounds on what one restored VM may carry (far above what Qubes itself writes). */
export const EXTRAS_LIMITS = { features: 512, tags: 256, nameLength: 128, featureValueLength: 16384, devices: 64, optionLength: 256 } as const;

/** Feature and tag names: what qrexec arguments (and so the Admin API) allow. */
const NAME = /^[A-Za-z0-9_][A-Za-z0-9_.+-]*$/;

const nameOk = (n: string) => n.length <= EXTRAS_LIMITS.nameLength && NAME.test(n);

/** Features to carry (backup-* dropped as Qubes does), in order, and warnings for the others. */
export function restoredFeatures(from: DomainInfo): { features: [string, string][]; warnings: string[] } {
  const features: [string, string][] = [];
  const warnings: string[] = [];
  let over = 0;
  for (const [name, value] of Object.entries(from.features)) {
    if (name.startsWith('backup-')) continue;
    if (!nameOk(name)) warnings.push(`feature ${shown(name)} not restored: invalid name`);
    else if (value.length > EXTRAS_LIMITS.featureValueLength || !PRINTABLE.test(value)) warnings.push(`feature ${name} not restored: invalid or too long value ${shown(value)}`);
    else if (features.length >= EXTRAS_LIMITS.features) over++;
    else features.push([name, value]);
  }
  if (over > 0) warnings.push(`${over} features not restored: more than ${EXTRAS_LIMITS.features}`);
  return { features, warnings };
}

/** Tags to carry (deduplicated) and warnings for the others. */
export function restoredTags(from: DomainInfo): { tags: string[]; warnings: string[] } {
  const tags: string[] = [];
  const warnings: string[] = [];
  let over = 0;
  for (const t of from.tags) {
    if (!nameOk(t)) warnings.push(`tag ${shown(t)} not restored: invalid name`);
    else if (tags.includes(t)) continue;
    else if (tags.length >= EXTRAS_LIMITS.tags) over++;
    else tags.push(t);
  }
  if (over > 0) warnings.push(`${over} tags not restored: more than ${EXTRAS_LIMITS.tags}`);
  return { tags, warnings };
}

/** Device class names (pci, usb, block, mic, …) and port ids (`00_19.0`, `2-1`, `loop12`, `sda`). */
const BUS = /^[a-z][a-z0-9_-]{0,31}$/;
const PORT = /^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,63}$/;
/** `<device>` attributes Qubes writes besides backend-domain and id (R4.3: mode, identity; older: required). */
const DEVICE_ATTRS: Record<string, RegExp> = {
  mode: /^(required|auto-attach|ask-to-attach)$/,
  required: /^(yes|no|True|False)$/,
  identity: /^[A-Za-z0-9_:.+ -]{0,128}$/,
};

export interface CarriedDevice {
  device: DeviceInfo;
  /** extra `<device>` attributes that passed their check */
  attrs: Record<string, string>;
}

/**
 * The device assignments to carry: well-formed ones whose backend is a VM restored in this run
 * (`restoredBackend(backupName)` gives its name on the host, or undefined). A backend that is dom0
 * or another host VM would give the restored VM a device of the host: dropped with a warning that
 * says how to re-assign it by hand.
 */
export function restoredDevices(from: DomainInfo, restoredBackend: (backupName: string) => string | undefined): { devices: CarriedDevice[]; warnings: string[] } {
  const devices: CarriedDevice[] = [];
  const warnings: string[] = [];
  for (const d of from.devices) {
    const what = `device ${shown(`${d.bus}:${d.backend}:${d.port}`, 80)}`;
    const optsOk = Object.entries(d.options).every(([k, v]) => nameOk(k) && v.length <= EXTRAS_LIMITS.optionLength && PRINTABLE.test(v));
    if (!BUS.test(d.bus) || !PORT.test(d.port) || !optsOk || Object.keys(d.options).length > 32) {
      warnings.push(`${what} not restored: invalid device, port or options`);
      continue;
    }
    const backend = restoredBackend(d.backend);
    if (backend === undefined) {
      warnings.push(`${what} not restored: devices of dom0 or of VMs already on the host are never assigned from a backup (re-assign it with qvm-device ${d.bus} attach --persistent if you trust it)`);
      continue;
    }
    if (devices.length >= EXTRAS_LIMITS.devices) {
      warnings.push(`${what} not restored: more than ${EXTRAS_LIMITS.devices} devices`);
      continue;
    }
    const attrs: Record<string, string> = {};
    for (const [k, re] of Object.entries(DEVICE_ATTRS)) {
      const v = d.attrs[k];
      if (v !== undefined && re.test(v)) attrs[k] = v;
    }
    devices.push({ device: { ...d, backend }, attrs });
  }
  return { devices, warnings };
}
