// R2/R3 → R4 property conversion for restore, as the Qubes R4 restore client (`Core2Qubes`)
// does it: only non-default simple attributes, kernel/kernelopts when not default, HVM extras.
import type { DomainInfo } from './types.js';

/** Simple attributes and their R3 defaults (a value equal to the default is not carried over). */
const SIMPLE: [string, string | undefined][] = [
  ['include_in_backups', 'True'],
  ['qrexec_timeout', '60'],
  ['vcpus', '2'],
  ['memory', '400'],
  ['maxmem', '4000'],
  ['default_user', 'user'],
  ['debug', 'False'],
  ['mac', undefined],
  ['autostart', 'False'],
];

/**
 * R4 properties of an R2/R3 domain, excluding the references (template, netvm, default_dispvm)
 * and identity (name, qid, label), which the caller sets.
 */
export function legacyR4Properties(d: DomainInfo): Record<string, string> {
  const a = d.properties;
  const out: Record<string, string> = {};
  if (d.klass === 'AdminVM') return out;
  for (const [k, dflt] of SIMPLE) {
    const v = a[k];
    if (v && v !== dflt) out[k] = v;
  }
  for (const k of ['kernel', 'kernelopts']) {
    const usesDefault = a[`uses_default_${k}`];
    if (usesDefault !== undefined && usesDefault.toLowerCase() !== 'true') {
      const v = a[k];
      out[k] = v === undefined || v.toLowerCase() === 'none' ? '' : v;
    }
  }
  const tag = d.legacyClass ?? '';
  if (tag.includes('HVm')) {
    out['virt_mode'] = 'hvm';
    out['kernel'] = '';
  }
  if (d.providesNetwork) out['provides_network'] = 'True';
  return out;
}
