// Checks of the references among the VMs of one restore that the per-VM resolution cannot see:
// cycles through template / netvm (the install order waits on each of them, so a cycle would
// never install), and default_dispvm values the restore will drop.
import type { DomainInfo } from '../../qubes-xml/index.js';
import { aClass, hasTemplate, isDispvmTemplate, legacyDispvmNote, shown } from '../../qubes-xml/index.js';

/** The backup names a VM waits for: its template and netVM (itself excluded). A default_dispvm
 *  between VMs of one restore is set after both are installed, so it makes no cycle. */
function refsOf(d: DomainInfo): string[] {
  const out: string[] = [];
  for (const r of [hasTemplate(d.klass) ? d.template : undefined, d.netvm]) {
    if (typeof r === 'string' && r !== d.name && !out.includes(r)) out.push(r);
  }
  return out;
}

/**
 * The VMs of `vms` (backup domains of the VMs to restore) that lie on a reference cycle, each with
 * the cycle as text (`a → b → a`). A default_dispvm naming the VM itself is no cycle (a disposable
 * template may use itself); a template or netVM naming itself is reported by the resolution.
 */
export function referenceCycles(vms: readonly DomainInfo[]): Map<string, string> {
  const byName = new Map(vms.map((d) => [d.name, d]));
  const next = (n: string) => refsOf(byName.get(n)!).filter((r) => byName.has(r));
  const out = new Map<string, string>();
  for (const d of vms) {
    // breadth-first from d's references, remembering how each VM was reached
    const parent = new Map<string, string>();
    const queue = next(d.name);
    for (const q of queue) parent.set(q, d.name);
    for (let i = 0; i < queue.length && !parent.has(d.name); i++) {
      for (const r of next(queue[i]!)) {
        if (parent.has(r)) continue;
        parent.set(r, queue[i]!);
        queue.push(r);
      }
    }
    if (!parent.has(d.name)) continue;
    const path = [d.name];
    for (let at = parent.get(d.name)!; at !== d.name; at = parent.get(at)!) path.unshift(at);
    path.unshift(d.name);
    out.set(d.name, path.join(' → '));
  }
  return out;
}

/**
 * Why the default_dispvm of `d` will not be restored (undefined: it will be, or it names a VM that
 * is nowhere, which is dropped silently as Qubes does): `target(name)` is the VM it names, restored
 * in this run or on the host.
 */
export function defaultDispvmWarning(d: DomainInfo, target: (name: string) => DomainInfo | undefined): string | undefined {
  const dd = d.defaultDispvm;
  if (typeof dd !== 'string') return undefined;
  const t = dd === d.name ? d : target(dd);
  // R2/R3: the disp-<netvm> template Qubes' restore would create (see legacyDispvmNote)
  const legacy = legacyDispvmNote(d);
  if (legacy !== undefined && !(t !== undefined && isDispvmTemplate(t))) return legacy;
  if (t === undefined) return `default_dispvm ${shown(dd)} set to none: it is neither restored nor on the host`;
  if (isDispvmTemplate(t)) return undefined;
  if (dd === d.name) return `default_dispvm ${shown(dd)} set to none: the VM itself without template_for_dispvms is no disposable template`;
  return `default_dispvm ${shown(dd)} set to none: ${aClass(t.klass)} without template_for_dispvms is no disposable template`;
}
