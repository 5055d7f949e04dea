// The restore plan (pure, no I/O): which VMs of a backup are restored, under which names, with which
// template/netVM, in which order, and why the restore cannot proceed (FORMAT.md §8.4, §9.1, §10.2).
import { fail } from '../../errors.js';
import type { DomainInfo, QubesXml } from '../../qubes-xml/index.js';
import { emptyR4Host, isValidVmName, RESTORABLE_CLASSES, restoredDomainWarnings, shown } from '../../qubes-xml/index.js';
import { DOM0_HOME_SUBDIR, dom0UserOf, vmSubdirOf } from './backup-subdir.js';
import { findFreeName } from './conflict-rename.js';
import { backupPathOf, backupSizeOf, declaredBackupSizeOf, globalOf, isAdminVm, isIncluded } from './domain-view.js';
import { installOrder } from './install-order.js';
import { defaultDispvmWarning, referenceCycles } from './reference-checks.js';
import { resolveNetvm, resolveTemplate, type ResolveContext } from './resolve-deps.js';
import { blockingLines } from './restore-problems.js';
import { didYouMean } from '../../qubes-xml/similar-names.js';
import type { Dom0Plan, Problem, RestorePlan, RestoreSelection, VmPlan } from './plan-types.js';

export { formatRestoreTable } from './restore-table.js';
export type { Dom0Plan, Problem, RestorePlan, RestoreSelection, VmPlan } from './plan-types.js';

/**
 * Plan the restore of `backup` onto `host` (null: no qubes.xml yet) for `hostUser`, as selected by
 * `sel`. An R1–R3 host collection is refused (ERR_UNSUPPORTED) unless verifying only.
 */
export function planRestore(backup: QubesXml, host: QubesXml | null, hostUser: string, sel: RestoreSelection): RestorePlan {
  if (host !== null && host.schema !== 'r4' && !sel.verifyOnly) {
    fail('ERR_UNSUPPORTED', 'the host qubes.xml is a Qubes R1–R3 collection (<QubesVmCollection>): restoring into it is not supported');
  }
  const extra: string[] = [];
  const hostByName = new Map<string, DomainInfo>((host?.domains ?? []).map((d) => [d.name, d]));
  const backupNames = new Set(backup.domains.map((d) => d.name));
  const selected = (name: string): boolean =>
    !sel.exclude.includes(name) && (sel.vms.length === 0 || sel.vms.includes(name));

  // 1. The VMs whose data is in the backup.
  const plans: VmPlan[] = [];
  const seenNames = new Set<string>();
  const seenSubdirs = new Set<string>();
  for (const d of backup.domains) {
    if (isAdminVm(d) || !isIncluded(d)) continue;
    const p: VmPlan = {
      backupName: d.name, newName: d.name, domain: d, subdir: '', sizeBytes: backupSizeOf(d),
      action: 'restore', problems: [], notes: [], warnings: [], template: d.template, netvm: d.netvm,
    };
    const declared = declaredBackupSizeOf(d);
    if (declared !== undefined) p.declaredBytes = declared;
    plans.push(p);
    const path = backupPathOf(d);
    const subdir = path === undefined ? null : vmSubdirOf(path);
    if (!selected(d.name)) {
      skip(p, 'excluded');
    } else if (!isValidVmName(d.name) || seenNames.has(d.name)) {
      skip(p);
      extra.push(`${JSON.stringify(d.name)}: invalid or duplicate VM name in the backup's qubes.xml`);
    } else if (!RESTORABLE_CLASSES.includes(d.klass)) {
      skip(p);
      extra.push(`${d.name}: class ${shown(d.klass)} in the backup's qubes.xml cannot be restored (exclude it with -x ${d.name})`);
    } else if (path === undefined) {
      skip(p, 'not-in-backup');
      p.notes.push('marked as backed up, but qubes.xml gives no backup path: nothing to restore');
    } else if (subdir === null || seenSubdirs.has(subdir)) {
      skip(p);
      extra.push(`${d.name}: unsafe or duplicate backup path ${JSON.stringify(path)} in the backup's qubes.xml`);
    }
    if (subdir !== null) p.subdir = subdir;
    seenNames.add(d.name);
    if (subdir !== null) seenSubdirs.add(subdir);
  }

  // 2. Unknown positional names.
  const dom0 = planDom0(backup, hostUser, sel, selected, extra);
  const unknownNames: string[] = [];
  for (const name of sel.vms) {
    if (name === 'dom0' ? dom0 !== undefined : plans.some((p) => p.backupName === name)) continue;
    unknownNames.push(name);
    extra.push(
      backupNames.has(name)
        ? `${name}: listed in the backup's qubes.xml, but its data is not in the backup`
        : `${name}: no such VM in the backup${didYouMean(name, restorableNames(plans, dom0))}`,
    );
  }
  const unknownExcludes = sel.exclude.filter((n) => !backupNames.has(n) && !(n === 'dom0' && dom0 !== undefined));

  // 3. Name conflicts with the host (nothing is installed in verify-only mode).
  const reasons = new Map<VmPlan, Map<Problem, string>>();
  if (!sel.verifyOnly) resolveConflicts(plans, hostByName, backupNames, sel, reasons);

  // 4. Templates and netVMs, to a fixpoint: --skip-broken may skip a VM others depend on.
  // (a verification checks what the archive alone decides, as into an empty host that lets missing
  // VMs be: a non-template as template, a netVM without network, a cycle block it as a restore)
  resolveDependencies(plans, sel.verifyOnly ? null : host, sel.verifyOnly ? new Map() : hostByName, backupNames, sel, reasons);
  // a VM --skip-broken skipped after step 3 renamed it is shown under its own name: nothing is
  // restored under the new one
  for (const p of plans) {
    if (p.action !== 'skip' || p.newName === p.backupName) continue;
    p.notes = p.notes.filter((n) => n !== renamedNote(p.backupName, p.newName));
    p.newName = p.backupName;
  }

  if (!sel.verifyOnly) planWarnings(plans, hostByName, new Set((host ?? emptyR4Host()).labels.map((l) => l.name)));
  const ordered = installOrder(plans);
  const blocking = [...extra, ...blockingLines(ordered, dom0, hostUser, reasons)];
  let totalBytes = 0;
  for (const p of ordered) if (p.action === 'restore') totalBytes += p.sizeBytes;
  if (dom0?.action === 'restore') totalBytes += dom0.sizeBytes;
  const plan: RestorePlan = { vms: ordered, blocking, totalBytes, unknownNames, unknownExcludes, mode: sel.verifyOnly ? 'verify' : 'restore' };
  if (dom0 !== undefined) plan.dom0 = dom0;
  return plan;
}

/** The names a user can select in this backup: its VMs with data, and dom0 when it holds the home. */
export function restorableNames(plans: readonly VmPlan[], dom0: Dom0Plan | undefined): string[] {
  return [...plans.map((p) => p.backupName), ...(dom0 !== undefined ? ['dom0'] : [])];
}

/** The warning for a `-x` name that matches nothing in the backup. */
export function unknownExcludeWarning(name: string, plan: RestorePlan): string {
  return `-x ${name}: there is no VM ${name} in the backup, nothing excluded${didYouMean(name, restorableNames(plan.vms, plan.dom0))}`;
}

function skip(p: VmPlan, problem?: Problem): void {
  p.action = 'skip';
  if (problem !== undefined && !p.problems.includes(problem)) p.problems.push(problem);
}

function planDom0(
  backup: QubesXml, hostUser: string, sel: RestoreSelection, selected: (name: string) => boolean, extra: string[],
): Dom0Plan | undefined {
  const d = backup.domains.find((x) => isAdminVm(x) && isIncluded(x));
  if (d === undefined) return undefined;
  const path = backupPathOf(d) ?? '';
  const user = dom0UserOf(path);
  const plan: Dom0Plan = { subdir: DOM0_HOME_SUBDIR, user: user ?? '', sizeBytes: backupSizeOf(d), action: 'restore', problems: [] };
  const declared = declaredBackupSizeOf(d);
  if (declared !== undefined) plan.declaredBytes = declared;
  if (sel.skipDom0Home || !selected('dom0')) {
    plan.action = 'skip';
    plan.problems.push('excluded');
  } else if (user === null) {
    plan.action = 'skip';
    extra.push(`dom0 home: unsafe backup path ${JSON.stringify(path)} in the backup's qubes.xml (use --skip-dom0-home)`);
  } else if (!sel.verifyOnly && user !== hostUser && !sel.ignoreUsernameMismatch) {
    plan.problems.push('username-mismatch');
  }
  return plan;
}

const renamedNote = (name: string, to: string): string => `a VM named ${name} exists on the host: restored as ${to}`;

function resolveConflicts(
  plans: VmPlan[], hostByName: ReadonlyMap<string, DomainInfo>, backupNames: ReadonlySet<string>, sel: RestoreSelection,
  reasons: Map<VmPlan, Map<Problem, string>>,
): void {
  const assigned = new Set<string>();
  const occupied = sel.occupied ?? new Map<string, string>();
  const onHost = (n: string): boolean => hostByName.has(n) || occupied.has(n);
  const taken = (n: string): boolean => onHost(n) || backupNames.has(n) || assigned.has(n);
  for (const p of installOrder(plans)) {
    if (p.action !== 'restore' || !onHost(p.backupName)) continue;
    const free = sel.renameConflicting ? findFreeName(p.backupName, taken) : null;
    if (free !== null) {
      p.newName = free;
      assigned.add(free);
      p.notes.push(renamedNote(p.backupName, free));
      continue;
    }
    if (sel.renameConflicting) p.notes.push(`no free name ${p.backupName.slice(0, 29)}1 … ${p.backupName.slice(0, 29)}99 for renaming`);
    p.problems.push('already-exists');
    const dir = hostByName.has(p.backupName) ? undefined : occupied.get(p.backupName);
    if (dir !== undefined) reasons.set(p, new Map([['already-exists', `${dir} is already on the host, though its qubes.xml lists no VM ${p.backupName}`]]));
    if (sel.skipConflicting) p.action = 'skip';
  }
}

function resolveDependencies(
  plans: VmPlan[], host: QubesXml | null, hostByName: ReadonlyMap<string, DomainInfo>,
  backupNames: ReadonlySet<string>, sel: RestoreSelection, reasons: Map<VmPlan, Map<Problem, string>>,
): void {
  const hostDefault: ResolveContext['hostDefault'] = (name) => (host === null ? undefined : globalOf(host, name));
  const planOf = new Map(plans.map((p) => [p.backupName, p]));
  const notRestored: ResolveContext['notRestored'] = (name) => {
    const p = planOf.get(name);
    if (p === undefined) return backupNames.has(name) ? 'no-data' : undefined;
    return p.problems.includes('excluded') ? 'excluded' : 'skipped';
  };
  const candidates = plans.filter((p) => p.action === 'restore' && !p.problems.includes('already-exists'));
  const baseNotes = new Map(candidates.map((p) => [p, [...p.notes]]));
  for (;;) {
    const live = candidates.filter((p) => p.action === 'restore');
    const restoring = new Map(live.map((p) => [p.backupName, p.newName]));
    const backupVm = (name: string) => planOf.get(name)?.domain;
    const ctx: ResolveContext = { restoring, backupVm, host: hostByName, notRestored, hostDefault, ignoreMissing: sel.ignoreMissing, noHost: sel.verifyOnly, freshRoot: host === null };
    const cycles = referenceCycles(live.map((p) => p.domain));
    let changed = false;
    for (const p of live) {
      const t = resolveTemplate(p.domain, ctx);
      const n = resolveNetvm(p.domain, ctx);
      p.template = t.value;
      p.netvm = n.value;
      p.notes = [...(baseNotes.get(p) ?? [])];
      p.problems = [];
      const why = new Map<Problem, string>();
      const cycle = cycles.get(p.backupName);
      const found = [t, n, ...(cycle !== undefined ? [{ problem: 'reference-cycle' as const, reason: `its template/netVM/default_dispvm references form a cycle: ${cycle}` }] : [])];
      for (const r of found) {
        if ('note' in r && r.note !== undefined) p.notes.push(r.note);
        if (r.problem !== undefined && !why.has(r.problem)) {
          p.problems.push(r.problem);
          why.set(r.problem, r.reason ?? r.problem);
        } else if (r.problem !== undefined) {
          why.set(r.problem, `${why.get(r.problem)}; ${r.reason ?? ''}`);
        }
      }
      reasons.set(p, why);
      if (p.problems.length > 0 && sel.skipBroken) {
        p.action = 'skip';
        p.notes.push(...why.values());
        changed = true;
      }
    }
    if (!changed) return;
  }
}

/** Fill `warnings` of the VMs to restore: what of each will not be carried into the host qubes.xml. */
function planWarnings(plans: VmPlan[], hostByName: ReadonlyMap<string, DomainInfo>, hostLabels: ReadonlySet<string>): void {
  const restoring = new Map(plans.filter((p) => p.action === 'restore').map((p) => [p.backupName, p]));
  for (const p of plans) {
    if (p.action !== 'restore') continue;
    p.warnings = restoredDomainWarnings(p.domain, (b) => restoring.get(b)?.newName);
    // the install falls back to red (Qubes' restore fails such a VM)
    const label = p.domain.label;
    if (label !== undefined && !hostLabels.has(label)) p.warnings.push(`label ${shown(label)} is not one of the host's labels: restored as red`);
    const dd = defaultDispvmWarning(p.domain, (n) => restoring.get(n)?.domain ?? hostByName.get(n));
    if (dd !== undefined) p.warnings.push(dd);
  }
}
