// Small read-only accessors over qubes-xml DomainInfo / QubesXml used by the restore planner, so the
// planner reads the parsed document in one place (backup flags, global defaults, DVM templates).
import type { DomainInfo, QubesXml } from '../../qubes-xml/index.js';

/** True if the domain's data is in the backup (`backup-content` / `backup_content`). */
export function isIncluded(d: DomainInfo): boolean {
  return d.backup?.content === true;
}

/** The domain's `backup-path` as stored (`vm3/`, `vm5`, `appvms/work`, `dom0-home/user`), if any. */
export function backupPathOf(d: DomainInfo): string | undefined {
  const p = d.backup?.path;
  return typeof p === 'string' && p !== '' ? p : undefined;
}

/** The domain's `backup-size` in bytes (0 when absent or not a safe non-negative integer). */
export function backupSizeOf(d: DomainInfo): number {
  const s = Number(d.backup?.size ?? 0);
  return Number.isSafeInteger(s) && s >= 0 ? s : 0;
}

/** The domain's `backup-size` as its qubes.xml states it; undefined when it states none. */
export function declaredBackupSizeOf(d: DomainInfo): number | undefined {
  const s = d.backup?.size;
  return s !== undefined && Number.isSafeInteger(Number(s)) && Number(s) >= 0 ? Number(s) : undefined;
}

/** True for an AdminVM (dom0) entry. */
export function isAdminVm(d: DomainInfo): boolean {
  return d.klass === 'AdminVM';
}

/** True for a TemplateVM (the only class that can be an AppVM's template; R2/R3 TemplateHVM too). */
export function isTemplateVm(d: DomainInfo): boolean {
  return d.klass === 'TemplateVM' || d.klass === 'TemplateHVM';
}

/** True for a DispVM, whose `template` is a disposable template (AppVM with template_for_dispvms). */
export function isDispVm(d: DomainInfo): boolean {
  return d.klass === 'DispVM';
}

/** True if the domain may serve as a template of a DispVM (property `template_for_dispvms`). */
export function isDispvmTemplate(d: DomainInfo): boolean {
  const v = propertyOf(d, 'template_for_dispvms');
  return v !== undefined && /^(true|1|yes)$/i.test(v);
}

/** A VM property as text, or undefined when unset. */
export function propertyOf(d: DomainInfo, name: string): string | undefined {
  const props = d.properties as unknown;
  const v = props instanceof Map ? props.get(name) : (props as Record<string, unknown> | undefined)?.[name];
  return typeof v === 'string' ? v : v === undefined || v === null ? undefined : String(v);
}

/** A global property of the document (`default_template`, `default_netvm`, …) or undefined. */
export function globalOf(doc: QubesXml, name: string): string | undefined {
  const g = doc.globalProperties as unknown;
  const v = g instanceof Map ? g.get(name) : (g as Record<string, unknown> | undefined)?.[name];
  return typeof v === 'string' && v !== '' && v.toLowerCase() !== 'none' ? v : undefined;
}
