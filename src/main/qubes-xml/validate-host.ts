// Does a host qubes.xml load as Qubes R4 would load it (qubes-core-admin app.py `load`)? Qubes
// reads every `<properties>` section of a domain (the last value wins), every `<features>` and
// `<devices>` section, refuses unknown classes, and fails on a template/netvm naming a missing or
// wrong VM. This checks the preserved tree, not only the model, so a second section or a `ref`
// attribute that the model does not show is found too. Pure: file checks are the caller's.
import { stateOf } from './document.js';
import type { DomainInfo, QubesXml } from './types.js';
import { isValidVmName } from './vm-name.js';
import { aClass, canBeTemplateOf, hasTemplate, isDispvmTemplate, providesNetwork, R4_CLASSES, shown } from './vm-kinds.js';
import { volumeProblem } from './volumes.js';
import { child, elements, getAttr, tagOf, type XNode } from './xml-tree.js';

/** Highest qid Qubes allocates (qubes.config.max_qid). */
const MAX_QID = 254;
/** Sections of `<domain>` that may appear at most once in what we accept. */
const SECTIONS = ['properties', 'features', 'tags', 'volume-config'];

function checkElement(dom: XNode, label: string, out: string[]): void {
  for (const s of SECTIONS) if (elements(dom, s).length > 1) out.push(`${label}: ${elements(dom, s).length} <${s}> sections`);
  const props = child(dom, 'properties');
  const seen = new Set<string>();
  for (const p of props ? elements(props, 'property') : []) {
    const name = getAttr(p, 'name') ?? '';
    if (seen.has(name)) out.push(`${label}: property ${shown(name)} set twice`);
    seen.add(name);
    if (getAttr(p, 'ref') !== undefined) out.push(`${label}: property ${shown(name)} has a ref attribute`);
  }
  for (const e of elements(dom)) {
    if (!['properties', 'features', 'devices', 'tags', 'volume-config'].includes(tagOf(e)!)) out.push(`${label}: unexpected element <${tagOf(e)}>`);
  }
}

/** Follows `step` from `start`; true if it comes back to `start`. */
function loops(start: string, step: (name: string) => string | undefined): boolean {
  const seen = new Set<string>();
  for (let at = step(start); at !== undefined; at = step(at)) {
    if (at === start) return true;
    if (seen.has(at)) return false;
    seen.add(at);
  }
  return false;
}

function checkRefs(d: DomainInfo, byName: Map<string, DomainInfo>, out: string[]): void {
  const label = `VM ${d.name}`;
  const t = d.template;
  if (hasTemplate(d.klass)) {
    const target = typeof t === 'string' ? byName.get(t) : undefined;
    if (typeof t !== 'string') out.push(`${label}: ${d.klass} without a template`);
    else if (target === undefined) out.push(`${label}: template ${shown(t)} does not exist`);
    else if (!canBeTemplateOf(d.klass, target)) out.push(`${label}: template ${t} is ${aClass(target.klass)}, which cannot be the template of ${aClass(d.klass)}`);
  } else if (t !== undefined) {
    out.push(`${label}: ${aClass(d.klass)} has no template property`);
  }
  if (typeof d.netvm === 'string') {
    const n = byName.get(d.netvm);
    if (n === undefined) out.push(`${label}: netvm ${shown(d.netvm)} does not exist`);
    else if (!providesNetwork(n)) out.push(`${label}: netvm ${d.netvm} does not provide network`);
    else if (loops(d.name, (x) => {
      const v = byName.get(x)?.netvm;
      return typeof v === 'string' ? v : undefined;
    })) out.push(`${label}: netvm loop`);
  }
  if (typeof d.defaultDispvm === 'string') {
    const dd = byName.get(d.defaultDispvm);
    if (dd === undefined) out.push(`${label}: default_dispvm ${shown(d.defaultDispvm)} does not exist`);
    else if (!isDispvmTemplate(dd)) out.push(`${label}: default_dispvm ${d.defaultDispvm} is not a disposable template`);
  }
}

/**
 * Problems that would stop Qubes R4 from loading `doc`, or make it load something else than the
 * model shows (empty = loads): unique names and qids, one properties section per domain, known
 * classes, existing labels, templates that are TemplateVMs (DispVMs: disposable templates), netvms
 * that provide network, no netvm loop, device backends that exist, and volumes of file pools with
 * the vids of the VM's own directory (`appvms/<name>/` or `vm-templates/<name>/`).
 */
export function validateHostCollection(doc: QubesXml): string[] {
  const out: string[] = [];
  if (doc.schema !== 'r4') return ['not an R4 qubes.xml (root <QubesVmCollection>)'];
  const root = stateOf(doc).root;
  const domNodes = elements(child(root, 'domains') ?? root, 'domain');
  for (const [i, dom] of domNodes.entries()) checkElement(dom, `domain #${i + 1} (${getAttr(dom, 'class') ?? '?'})`, out);
  const labelIds = new Set(doc.labels.map((l) => l.id));
  const byName = new Map<string, DomainInfo>();
  const qids = new Map<number, string>();
  let admins = 0;
  for (const d of doc.domains) {
    const label = `VM ${d.name}`;
    if (!R4_CLASSES.includes(d.klass)) out.push(`${label}: unknown class ${shown(d.klass)}`);
    if (d.klass === 'AdminVM') admins++;
    else if (!isValidVmName(d.name)) out.push(`invalid VM name ${shown(d.name)}`);
    if (byName.has(d.name)) out.push(`${label}: name used twice`);
    byName.set(d.name, d);
    if (d.qid < 0 || d.qid > MAX_QID || (d.qid === 0) !== (d.klass === 'AdminVM')) out.push(`${label}: invalid qid ${d.qid}`);
    if (qids.has(d.qid)) out.push(`${label}: qid ${d.qid} also used by ${qids.get(d.qid)}`);
    qids.set(d.qid, d.name);
    const l = d.properties['label'];
    if (d.klass !== 'AdminVM' && (l === undefined || !(labelIds.has(l) || doc.labels.some((x) => x.name === l)))) out.push(`${label}: label ${shown(l ?? '(none)')} is not a label of this host`);
  }
  if (admins !== 1) out.push(`${admins} AdminVM domains (expected 1)`);
  for (const d of doc.domains) {
    if (d.klass === 'AdminVM') continue;
    checkRefs(d, byName, out);
    for (const dev of d.devices) if (!byName.has(dev.backend)) out.push(`VM ${d.name}: device backend ${shown(dev.backend)} does not exist`);
    const names = new Set<string>();
    for (const v of d.volumes) {
      if (names.has(v.name)) out.push(`VM ${d.name}: volume ${shown(v.name)} defined twice`);
      names.add(v.name);
      const p = volumeProblem(doc, d, v, byName);
      if (p !== undefined) out.push(`VM ${d.name}: ${p}`);
    }
  }
  return out;
}
