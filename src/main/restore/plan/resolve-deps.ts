// Template and netVM resolution for one VM of the restore plan (FORMAT.md §9.1 step 4): found among
// the VMs being restored (through renames), else on the host, else missing → host default
// (--ignore-missing; with no such default a missing template stays a problem and a missing netVM
// becomes the default, none — except in a new qubes root, where the reference is kept), or a
// problem that --skip-broken turns into a skip. A reference Qubes would
// refuse (a non-template as template, a netVM without provides_network, the VM itself, a name no VM
// can have) is a 'bad-reference' problem, whatever the options.
import type { DomainInfo } from '../../qubes-xml/index.js';
import { aClass, canBeTemplateOf, hasTemplate, isValidVmName, providesNetwork, shown } from '../../qubes-xml/index.js';

/** What the planner knows when resolving references. */
export interface ResolveContext {
  /** Backup name → new name, for the VMs that will be restored. */
  restoring: ReadonlyMap<string, string>;
  /** The backup's VM of that (backup) name. */
  backupVm: (name: string) => DomainInfo | undefined;
  /** Host domains by name (empty for a host without qubes.xml). */
  host: ReadonlyMap<string, DomainInfo>;
  /** Why a VM of the backup's qubes.xml is not among `restoring` (absent: not listed at all). */
  notRestored: (name: string) => NotRestored | undefined;
  /** Host global properties (default_template, default_dispvm, default_netvm), resolved to host VMs. */
  hostDefault: (name: 'default_template' | 'default_dispvm' | 'default_netvm') => string | undefined;
  ignoreMissing: boolean;
  /** a verification: there is no host, and what it lacks is not the archive's problem (no note) */
  noHost?: boolean;
  /** the qubes root has no qubes.xml yet (a new collection, which no qubesd loads): under
   *  --ignore-missing a reference with no host default to replace it is kept, with a warning */
  freshRoot?: boolean;
}

/** Why a VM of the backup is not restored: not selected / skipped by the plan / no data in the backup. */
export type NotRestored = 'excluded' | 'skipped' | 'no-data';

/** Outcome for one reference: the value to use, and a problem or a note. */
export interface Resolved {
  value: string | null | undefined;
  problem?: 'missing-template' | 'missing-netvm' | 'bad-reference';
  /** Human explanation of the problem (for the blocking list). */
  reason?: string;
  note?: string;
}

const bad = (reason: string): Resolved => ({ value: undefined, problem: 'bad-reference', reason });

/** Resolve the template of backup VM `d` (classes without a template: nothing to resolve). */
export function resolveTemplate(d: DomainInfo, ctx: ResolveContext): Resolved {
  const t = d.template;
  if (!hasTemplate(d.klass)) return { value: undefined };
  if (t === undefined || t === null) return bad(`it has no template (${aClass(d.klass)} needs one)`);
  if (!isValidVmName(t)) return bad(`template name ${shown(t)} is not a valid VM name`);
  if (t === d.name) return bad('it names itself as its template');
  const disp = d.klass === 'DispVM';
  const kind = disp ? 'disposable template' : 'template';
  const fits = (h: DomainInfo): boolean => canBeTemplateOf(d.klass, h);
  const restored = ctx.restoring.get(t);
  if (restored !== undefined) {
    const target = ctx.backupVm(t);
    if (target !== undefined && !fits(target)) return bad(`template ${t}, restored too, is ${aClass(target.klass)}${disp ? ' without template_for_dispvms' : ''}, not a ${disp ? 'disposable template' : 'TemplateVM'}`);
    return restored === t ? { value: t } : { value: restored, note: `template ${t} is restored as ${restored}` };
  }
  const onHost = ctx.host.get(t);
  if (onHost !== undefined && fits(onHost)) return { value: t };

  if (ctx.noHost === true) return { value: t };
  const reason = missingReason(kind, t, onHost !== undefined, ctx.notRestored(t));
  if (!ctx.ignoreMissing) return { value: t, problem: 'missing-template', reason };
  const defName = disp ? 'default_dispvm' : 'default_template';
  const def = ctx.hostDefault(defName);
  const defVm = def === undefined ? undefined : ctx.host.get(def);
  if (def !== undefined && defVm !== undefined && fits(defVm)) {
    return { value: def, note: `${kind} ${def} (host ${defName}) used instead of missing ${t}` };
  }
  if (ctx.freshRoot === true) return { value: t, note: `WARNING: ${reason}, and the new collection has no ${defName}: the reference to ${t} is kept; restore or create ${t} before this qubes.xml is used` };
  // as Qubes: with nothing to use instead the VM cannot be restored (a reference to a VM that
  // does not exist would make qubesd refuse the whole qubes.xml)
  return { value: t, problem: 'missing-template', reason: `${reason}, and the host has no ${defName} to use instead` };
}

/** Resolve the netVM of backup VM `d`; undefined means "the host's default netVM", null means none. */
export function resolveNetvm(d: DomainInfo, ctx: ResolveContext): Resolved {
  const n = d.netvm;
  if (n === undefined || n === null) return { value: n };
  if (!isValidVmName(n)) return bad(`netVM name ${shown(n)} is not a valid VM name`);
  if (n === d.name) return bad('it names itself as its netVM');
  const restored = ctx.restoring.get(n);
  if (restored !== undefined) {
    const target = ctx.backupVm(n);
    if (target !== undefined && !providesNetwork(target)) return bad(`netVM ${n}, restored too, does not provide network`);
    return restored === n ? { value: n } : { value: restored, note: `netVM ${n} is restored as ${restored}` };
  }
  const onHost = ctx.host.get(n);
  if (onHost !== undefined && providesNetwork(onHost)) return { value: n };

  if (ctx.noHost === true) return { value: n };
  const reason = missingReason('netVM', n, onHost !== undefined, ctx.notRestored(n));
  if (!ctx.ignoreMissing) return { value: n, problem: 'missing-netvm', reason };
  const def = ctx.hostDefault('default_netvm');
  const defVm = def === undefined ? undefined : ctx.host.get(def);
  if (def !== undefined && defVm !== undefined && providesNetwork(defVm)) {
    return { value: undefined, note: `netVM ${n} is missing: the host's default netVM (${def}) is used instead` };
  }
  if (ctx.freshRoot === true) return { value: n, note: `WARNING: ${reason}, and the new collection has no default_netvm: the reference to ${n} is kept; restore or create ${n} before this qubes.xml is used` };
  // as Qubes: the default netVM, which the host does not have: no network (never a reference to a
  // VM that does not exist, which would make qubesd refuse the whole qubes.xml)
  return { value: undefined, note: `WARNING: ${reason}, and the host has no default_netvm: restored without network (its netVM is the host's default_netvm, once there is one)` };
}

function missingReason(kind: string, name: string, onHostWrongKind: boolean, inBackup: NotRestored | undefined): string {
  if (onHostWrongKind) return `${kind} ${name} exists on the host but cannot serve as a ${kind}`;
  if (inBackup === 'excluded') return `${kind} ${name} is in the backup but not selected (select it too), and is not on the host`;
  if (inBackup === 'skipped') return `${kind} ${name} is in the backup but is not restored, and is not on the host`;
  return `${kind} ${name} is neither on the host nor in the backup`;
}
