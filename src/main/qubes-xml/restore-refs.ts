// The template, netvm and default_dispvm of a VM being added to the host: each resolved through
// the restore's renames to a VM on the host and checked as Qubes R4 checks it (template: a
// TemplateVM, or for a DispVM an AppVM/StandaloneVM with template_for_dispvms; netvm: a VM with
// provides_network and no loop; default_dispvm: a disposable template), never the VM itself.
import { fail } from '../errors.js';
import { findDomain } from './document.js';
import type { DomainInfo, QubesXml } from './types.js';
import { isValidVmName } from './vm-name.js';
import { legacyDispvmNote } from './read-r2r3.js';
import { aClass, canBeTemplateOf, hasTemplate, isDispvmTemplate, providesNetwork, shown } from './vm-kinds.js';

export interface RefOptions {
  newName: string;
  /** backup name → host name: the VMs of this restore, and the references the plan chose */
  renames: ReadonlyMap<string, string>;
  hostDefaults?: { template?: string; netvm?: string };
  /** true if the new VM is itself a disposable template (its default_dispvm may name itself) */
  selfIsDispvmTemplate: boolean;
  /** a default_dispvm naming a VM of this restore that is not installed yet is left unset (the
   *  caller sets it with setRestoredDefaultDispvm once that VM is there) instead of dangling */
  deferDefaultDispvm?: boolean;
}

/** Property values to write: undefined = not set (the host default applies); '' = none. */
export interface Refs {
  template?: string;
  netvm?: string;
  defaultDispvm?: string;
  /** the default_dispvm left for later (deferDefaultDispvm) */
  deferredDefaultDispvm?: string;
  warnings: string[];
}

/** True if following netvm properties from `start` on the host reaches `target`. */
function netvmReaches(host: QubesXml, start: string, target: string): boolean {
  const seen = new Set<string>();
  for (let at: string | undefined = start; at !== undefined && !seen.has(at); ) {
    if (at === target) return true;
    seen.add(at);
    const n: string | null | undefined = findDomain(host, at)?.netvm;
    at = typeof n === 'string' && n !== '' ? n : undefined;
  }
  return false;
}

function resolveTemplate(host: QubesXml, from: DomainInfo, klass: string, o: RefOptions, refs: Refs): void {
  const kind = klass === 'DispVM' ? 'a disposable template (template_for_dispvms)' : 'a TemplateVM';
  const usable = (name: string | undefined): name is string => {
    const d = name === undefined ? undefined : findDomain(host, name);
    return d !== undefined && name !== o.newName && canBeTemplateOf(klass, d);
  };
  if (typeof from.template !== 'string') {
    if (usable(o.hostDefaults?.template)) refs.template = o.hostDefaults!.template;
    else fail('ERR_PLAN', `${klass} ${from.name} has no template`, { vm: from.name });
    return;
  }
  const t = o.renames.get(from.template) ?? from.template;
  if (t === o.newName) fail('ERR_PLAN', `VM ${from.name} names itself as its template`, { vm: from.name });
  const target = findDomain(host, t);
  if (target !== undefined) {
    if (!canBeTemplateOf(klass, target)) fail('ERR_PLAN', `template ${shown(t)} of VM ${from.name} is ${aClass(target.klass)}, not ${kind}`, { vm: from.name });
    refs.template = t;
  } else if (o.renames.has(from.template) && isValidVmName(t)) {
    // planned: a VM of this restore not installed yet, or a missing one kept (--ignore-missing)
    refs.template = t;
    refs.warnings.push(`template ${shown(t)} is not on the host yet: restore or create it before starting this VM`);
  } else if (usable(o.hostDefaults?.template)) {
    refs.template = o.hostDefaults!.template;
  } else {
    fail('ERR_PLAN', `template ${shown(from.template)} of VM ${from.name} is missing`, { vm: from.name });
  }
}

function resolveNetvm(host: QubesXml, from: DomainInfo, o: RefOptions, refs: Refs): void {
  if (from.netvm === null) refs.netvm = '';
  if (typeof from.netvm !== 'string') return;
  const n = o.renames.get(from.netvm) ?? from.netvm;
  const target = findDomain(host, n);
  const fits = (d: DomainInfo | undefined, name: string) => d !== undefined && name !== o.newName && providesNetwork(d) && !netvmReaches(host, name, o.newName);
  if (fits(target, n)) {
    refs.netvm = n;
    return;
  }
  if (target === undefined && n !== o.newName && o.renames.has(from.netvm) && isValidVmName(n)) {
    refs.netvm = n;
    refs.warnings.push(`netVM ${shown(n)} is not on the host yet: restore or create it before starting this VM`);
    return;
  }
  const fallback = o.hostDefaults?.netvm;
  if (fallback === '' || (fallback !== undefined && fits(findDomain(host, fallback), fallback))) refs.netvm = fallback;
  if (target !== undefined || n === o.newName) {
    const why = n === o.newName ? 'the VM itself' : !providesNetwork(target!) ? 'it does not provide network' : 'it would make a network loop';
    refs.warnings.push(`netvm ${shown(n)} not restored (${why}): ${fallback !== undefined && refs.netvm === fallback ? `${fallback || 'none'} is used` : 'the default netVM applies'}`);
  }
}

function resolveDefaultDispvm(host: QubesXml, from: DomainInfo, o: RefOptions, refs: Refs): void {
  if (from.defaultDispvm === null) refs.defaultDispvm = '';
  if (typeof from.defaultDispvm !== 'string') return;
  const d = o.renames.get(from.defaultDispvm) ?? from.defaultDispvm;
  if (d === o.newName) {
    if (o.selfIsDispvmTemplate) refs.defaultDispvm = d;
    else {
      refs.defaultDispvm = '';
      refs.warnings.push('default_dispvm (the VM itself) set to none: it is not a disposable template');
    }
    return;
  }
  const target = findDomain(host, d);
  const legacy = legacyDispvmNote(from);
  if (legacy !== undefined && !(target !== undefined ? isDispvmTemplate(target) : o.renames.has(from.defaultDispvm))) {
    // the R4 client's disp-<netvm> template is not created: no DispVMs rather than other network
    refs.defaultDispvm = '';
    refs.warnings.push(legacy);
    return;
  }
  if (target !== undefined) {
    if (isDispvmTemplate(target)) refs.defaultDispvm = d;
    else {
      refs.defaultDispvm = '';
      refs.warnings.push(`default_dispvm ${shown(d)} set to none: it is ${aClass(target.klass)} without template_for_dispvms (set it with qvm-prefs)`);
    }
  } else if (o.renames.has(from.defaultDispvm) && isValidVmName(d)) {
    if (o.deferDefaultDispvm) {
      refs.deferredDefaultDispvm = d;
      return;
    }
    refs.defaultDispvm = d;
    refs.warnings.push(`default_dispvm ${shown(d)} is not on the host yet: restore or create it`);
  } else {
    // Qubes' restore fails to set it and leaves the host's default_dispvm, whose disposables may
    // have another network than the one named: none instead (fail closed), said
    refs.defaultDispvm = '';
    refs.warnings.push(`default_dispvm ${shown(d)} set to none: it is neither restored nor on the host (set it with qvm-prefs)`);
  }
}

/**
 * References of backed-up VM `from`, restored as class `klass`. A template that cannot be used
 * fails the VM (ERR_PLAN); an unusable netvm or default_dispvm is dropped (host default) with a
 * warning. A name the plan put in `renames` that is not on the host (a VM of this restore not yet
 * installed, or a missing one kept under --ignore-missing) is kept as named, with a warning.
 */
export function restoredRefs(host: QubesXml, from: DomainInfo, klass: string, o: RefOptions): Refs {
  const refs: Refs = { warnings: [] };
  if (hasTemplate(klass)) resolveTemplate(host, from, klass, o, refs);
  else if (typeof from.template === 'string') refs.warnings.push(`template ${shown(from.template)} not restored: ${aClass(klass)} has none`);
  resolveNetvm(host, from, o, refs);
  resolveDefaultDispvm(host, from, o, refs);
  return refs;
}
