// Install order of the restore plan: templates first, then netVMs (provides_network), then the
// rest; within that, every VM comes after the restored VMs it references (template, netVM).
import { isTemplateVm } from './domain-view.js';
import type { VmPlan } from './plan-types.js';

function rank(p: VmPlan): number {
  if (isTemplateVm(p.domain)) return 0;
  if (p.domain.providesNetwork) return 1;
  return 2;
}

/**
 * Stable order by (rank, original position), moved later where needed so that a VM follows the
 * restored VMs named as its template/netVM. Reference cycles (possible only in a hand-made
 * qubes.xml) are broken by rank order.
 */
export function installOrder(plans: readonly VmPlan[]): VmPlan[] {
  const indexed = plans.map((p, i) => ({ p, i }));
  indexed.sort((a, b) => rank(a.p) - rank(b.p) || a.i - b.i);
  const remaining = indexed.map((x) => x.p);
  const restoringNames = new Set(plans.filter((p) => p.action === 'restore').map((p) => p.newName));
  const placed = new Set<string>();
  const out: VmPlan[] = [];
  while (remaining.length > 0) {
    let at = remaining.findIndex((p) => depsOf(p, restoringNames).every((d) => d === p.newName || placed.has(d)));
    if (at < 0) at = 0;
    const [next] = remaining.splice(at, 1);
    if (next === undefined) break;
    out.push(next);
    if (next.action === 'restore') placed.add(next.newName);
  }
  return out;
}

function depsOf(p: VmPlan, restoring: ReadonlySet<string>): string[] {
  if (p.action !== 'restore') return [];
  const deps: string[] = [];
  for (const ref of [p.template, p.netvm]) {
    if (typeof ref === 'string' && restoring.has(ref)) deps.push(ref);
  }
  return deps;
}
