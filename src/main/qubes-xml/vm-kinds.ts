// What a VM may be used for, as Qubes R4 decides it (qubes-core-admin: AppVM.template must be a
// TemplateVM; DispVM.template must have template_for_dispvms; netvm must have provides_network),
// and the one safe way to quote untrusted text in a message.
import { qbool } from './read-r4.js';
import type { DomainInfo } from './types.js';

/** The VM classes a restore creates (R2/R3 classes are converted to these by the reader). */
export const RESTORABLE_CLASSES: readonly string[] = ['AppVM', 'TemplateVM', 'StandaloneVM', 'DispVM'];

/** Every class a host R4 qubes.xml may hold. */
export const R4_CLASSES: readonly string[] = ['AdminVM', ...RESTORABLE_CLASSES];

/** Classes that have a `template` property (and need one). */
export function hasTemplate(klass: string): boolean {
  return klass === 'AppVM' || klass === 'DispVM';
}

/** True for a VM that can be an AppVM's template. */
export function isTemplateVm(d: DomainInfo): boolean {
  return d.klass === 'TemplateVM';
}

/** True for a VM that can be a DispVM's template (AppVM or StandaloneVM with template_for_dispvms). */
export function isDispvmTemplate(d: DomainInfo): boolean {
  return (d.klass === 'AppVM' || d.klass === 'StandaloneVM') && qbool(d.properties['template_for_dispvms'], false);
}

/** True if `target` can be the template of a VM of class `klass`. */
export function canBeTemplateOf(klass: string, target: DomainInfo): boolean {
  return klass === 'DispVM' ? isDispvmTemplate(target) : klass === 'AppVM' && isTemplateVm(target);
}

/** True for a VM that can be another VM's netvm. */
export function providesNetwork(d: DomainInfo): boolean {
  return d.klass !== 'AdminVM' && d.providesNetwork;
}

/** `a TemplateVM`, `an AppVM`, with the class name shown safely. */
export function aClass(klass: string): string {
  const k = RESTORABLE_CLASSES.includes(klass) || klass === 'AdminVM' ? klass : shown(klass);
  return `${/^[AEIOU]/.test(k) ? 'an' : 'a'} ${k}`;
}

/**
 * Untrusted text for a message: JSON-quoted, with every control or format character (C0, DEL, C1
 * such as the 8-bit CSI, bidi overrides, line separators) as `\uXXXX` so that none reaches the
 * terminal, and cut to `max` characters.
 */
export function shown(untrusted: string, max = 48): string {
  const s = untrusted.length > max ? `${untrusted.slice(0, max)}…` : untrusted;
  return JSON.stringify(s).replace(/[\p{Cc}\p{Cf}\u2028\u2029]/gu, (c) => {
    const cp = c.codePointAt(0)!;
    return cp > 0xffff ? `\\u{${cp.toString(16)}}` : `\\u${cp.toString(16).padStart(4, '0')}`;
  });
}
