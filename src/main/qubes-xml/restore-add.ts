// Restore side: add a VM from a backup's qubes.xml (either schema) to the host's qubes.xml with a
// new qid and name, references remapped through the restore's renames, label by name, the
// backup-* features dropped, and an R4 volume-config (carried over or synthesised).
import { randomUUID } from 'node:crypto';
import { fail } from '../errors.js';
import { findDomain, originOf, refresh, stateOf } from './document.js';
import { legacyR4Properties } from './legacy-convert.js';
import { ensureSection, removeFeatures, removeProperty, setProperty } from './r4-edit.js';
import type { DomainInfo, QubesXml } from './types.js';
import { isValidVmName } from './vm-name.js';
import { carryVolumes, synthesizeVolumes, type VolumePlan } from './volumes.js';
import { appendChild, removeChild, stripIndentation } from './xml-layout.js';
import { child, decodedAttrs, elements, getAttr, makeElement, removeAttr, setAttr, textOf, type XNode } from './xml-tree.js';

export interface AddRestoredOptions {
  newName: string;
  /** every VM restored in this run: backup name → host name (identity entries included) */
  renames: Map<string, string>;
  /** used when a referenced template / netvm is neither on the host nor being restored */
  hostDefaults?: { template?: string; netvm?: string };
}

/** Highest qid Qubes allocates (qubes.config.max_qid). */
const MAX_QID = 254;
const NOT_COPIED = new Set(['name', 'qid', 'uuid', 'label', 'template', 'netvm', 'default_dispvm', 'installed_by_rpm', 'dispid']);

function freeQid(host: QubesXml): number {
  const used = new Set(host.domains.map((d) => d.qid));
  for (let q = 1; q <= MAX_QID; q++) if (!used.has(q)) return q;
  return fail('ERR_PLAN', 'no free qid left on the host');
}

interface Refs {
  template?: string;
  /** undefined = default (property absent); '' = none */
  netvm?: string;
  defaultDispvm?: string;
}

/**
 * Where a reference of the backed-up VM points on the host: a VM restored in this run (through
 * renames), else a host VM of that name, else nothing.
 */
function resolveRefs(host: QubesXml, from: DomainInfo, opts: AddRestoredOptions): Refs {
  const onHost = (n: string) => findDomain(host, n) !== undefined;
  const resolve = (n: string): string | undefined => (opts.renames.has(n) ? opts.renames.get(n)! : onHost(n) ? n : undefined);
  const refs: Refs = {};
  if (typeof from.template === 'string') {
    const t = resolve(from.template) ?? opts.hostDefaults?.template;
    if (t === undefined) fail('ERR_PLAN', `template ${from.template} of VM ${from.name} is missing`, { vm: from.name });
    refs.template = t;
  }
  if (from.netvm === null) refs.netvm = '';
  else if (typeof from.netvm === 'string') {
    const fallback = opts.hostDefaults?.netvm;
    const n = resolve(from.netvm) ?? (fallback !== undefined && (fallback === '' || onHost(fallback)) ? fallback : undefined);
    if (n !== undefined) refs.netvm = n;
  }
  if (from.defaultDispvm === null) refs.defaultDispvm = '';
  else if (typeof from.defaultDispvm === 'string') {
    const d = resolve(from.defaultDispvm);
    if (d !== undefined) refs.defaultDispvm = d;
  }
  return refs;
}

function labelId(host: QubesXml, name: string | undefined): string {
  const l = host.labels.find((x) => x.name === name) ?? host.labels.find((x) => x.name === 'red') ?? host.labels[0];
  if (!l) fail('ERR_QUBES_XML', 'host qubes.xml has no labels');
  return l.id;
}

function setRefs(dom: XNode, refs: Refs, pretty: boolean): void {
  for (const [prop, v] of [['template', refs.template], ['netvm', refs.netvm], ['default_dispvm', refs.defaultDispvm]] as const) {
    if (v === undefined) removeProperty(dom, prop);
    else setProperty(dom, prop, v, pretty);
  }
}

function setVolumes(host: QubesXml, dom: XNode, from: DomainInfo, plan: VolumePlan, newTemplate: string | undefined, pretty: boolean): void {
  const old = child(dom, 'volume-config');
  const vols = old ? elements(old, 'volume').map((v) => decodedAttrs(v)) : from.volumes.map((v) => v.attrs);
  if (old) removeChild(dom, old);
  const els = vols.length > 0 ? carryVolumes(host, vols, from.name, plan, {
    ...(typeof from.template === 'string' ? { old: from.template } : {}),
    ...(newTemplate !== undefined ? { new: newTemplate } : {}),
  }) : synthesizeVolumes(host, plan);
  if (els.length === 0) return;
  const vc = ensureSection(dom, 'volume-config', pretty);
  for (const e of els) appendChild(vc, e, 3, pretty);
}

/** The new `<domain>` made by copying the backed-up R4 element. */
function copyR4Domain(host: QubesXml, src: XNode, from: DomainInfo, qid: number, o: AddRestoredOptions, refs: Refs): XNode {
  // edit without whitespace; appendChild re-indents the whole element in the host's style
  const pretty = false;
  const dom = structuredClone(src);
  stripIndentation(dom);
  setAttr(dom, 'id', `domain-${qid}`);
  setProperty(dom, 'name', o.newName, pretty);
  setProperty(dom, 'qid', String(qid), pretty);
  setProperty(dom, 'uuid', randomUUID(), pretty);
  setProperty(dom, 'label', labelId(host, from.label), pretty);
  setRefs(dom, refs, pretty);
  removeProperty(dom, 'installed_by_rpm');
  removeProperty(dom, 'dispid');
  removeFeatures(dom, (n) => n.startsWith('backup-'));
  const kernel = findProp(dom, 'kernel');
  setVolumes(host, dom, from, { name: o.newName, klass: from.klass, ...(kernel !== undefined ? { kernel } : {}) }, refs.template, pretty);
  return dom;
}

function findProp(dom: XNode, name: string): string | undefined {
  const p = child(dom, 'properties');
  const el = p ? elements(p, 'property').find((e) => getAttr(e, 'name') === name) : undefined;
  return el ? textOf(el) : undefined;
}

/** The new `<domain>` built from the model (R2/R3 VMs, synthetic DVM templates, foreign objects). */
function buildR4Domain(host: QubesXml, from: DomainInfo, qid: number, o: AddRestoredOptions, refs: Refs): XNode {
  const props: Record<string, string> = { label: labelId(host, from.label), name: o.newName, qid: String(qid), uuid: randomUUID() };
  const extra = from.legacyClass !== undefined ? legacyR4Properties(from) : from.properties;
  for (const [k, v] of Object.entries(extra)) if (!NOT_COPIED.has(k)) props[k] = v;
  if (refs.template !== undefined) props['template'] = refs.template;
  if (refs.netvm !== undefined) props['netvm'] = refs.netvm;
  if (refs.defaultDispvm !== undefined) props['default_dispvm'] = refs.defaultDispvm;
  const kids: XNode[] = [makeElement('properties', {}, Object.entries(props).map(([name, v]) => makeElement('property', { name }, [], v)))];
  const feats = Object.entries(from.features).filter(([k]) => !k.startsWith('backup-'));
  kids.push(makeElement('features', {}, feats.map(([name, v]) => makeElement('feature', { name }, [], v))));
  const buses = [...new Set(from.devices.map((d) => d.bus))];
  for (const bus of buses) {
    const devs = from.devices.filter((d) => d.bus === bus);
    const els = devs.map((d) => {
      const opts = Object.entries(d.options).map(([name, v]) => makeElement('option', { name }, [], v));
      return makeElement('device', { ...d.attrs, 'backend-domain': d.backend, id: d.port }, opts);
    });
    kids.push(makeElement('devices', { class: bus }, els));
  }
  kids.push(makeElement('tags', {}, from.tags.map((name) => makeElement('tag', { name }))));
  const dom = makeElement('domain', { id: `domain-${qid}`, class: from.klass }, kids);
  const plan: VolumePlan = { name: o.newName, klass: from.klass, ...(props['kernel'] !== undefined ? { kernel: props['kernel'] } : {}) };
  setVolumes(host, dom, from, plan, refs.template, false);
  return dom;
}

/** R2/R3 VM into an R2/R3 host: copy the element, renumber and rename, remap qid references. */
function copyLegacyDomain(host: QubesXml, src: XNode, from: DomainInfo, qid: number, o: AddRestoredOptions): XNode {
  const el = structuredClone(src);
  const byName = (n: string | undefined) => (n === undefined ? undefined : findDomain(host, n));
  const map = (n: string) => o.renames.get(n) ?? n;
  setAttr(el, 'qid', String(qid));
  setAttr(el, 'name', o.newName);
  if (typeof from.template === 'string') {
    const t = byName(map(from.template)) ?? byName(o.hostDefaults?.template);
    if (!t) fail('ERR_PLAN', `template ${map(from.template)} of VM ${from.name} is not on the host`, { vm: from.name });
    setAttr(el, 'template_qid', String(t.qid));
  }
  if (typeof from.netvm === 'string') {
    const n = byName(map(from.netvm)) ?? byName(o.hostDefaults?.netvm);
    if (n) setAttr(el, 'netvm_qid', String(n.qid));
    else setAttr(el, 'uses_default_netvm', 'True');
  }
  for (const a of ['dispvm_netvm', 'dispvm_netvm_qid']) removeAttr(el, a);
  if (getAttr(el, 'uses_default_dispvm_netvm') !== undefined) setAttr(el, 'uses_default_dispvm_netvm', 'True');
  const dir = getAttr(el, 'dir_path');
  const tail = dir?.replace(/\/+$/, '');
  if (tail !== undefined && tail.endsWith(`/${from.name}`)) setAttr(el, 'dir_path', `${tail.slice(0, -from.name.length)}${o.newName}`);
  if (getAttr(el, 'conf_file') === `${from.name}.conf`) setAttr(el, 'conf_file', `${o.newName}.conf`);
  for (const a of ['backup_content', 'backup_path', 'backup_size']) removeAttr(el, a);
  if (getAttr(el, 'installed_by_rpm') !== undefined) setAttr(el, 'installed_by_rpm', 'False');
  if (getAttr(el, 'label') === undefined) setAttr(el, 'label', 'red');
  return el;
}

/**
 * Add a VM taken from a backup's qubes.xml to the host document: new qid (lowest free ≥1), new
 * name, label by name (fallback red), template/netvm/default_dispvm remapped through `renames`,
 * features and tags kept except backup-*. R2/R3 VMs are converted to R4 (classes, services →
 * features, HVM → virt_mode=hvm, synthesised volumes). Returns the DomainInfo as added.
 */
export function addRestoredDomain(host: QubesXml, from: DomainInfo, opts: AddRestoredOptions): DomainInfo {
  const st = stateOf(host);
  if (from.klass === 'AdminVM') fail('ERR_PLAN', 'dom0 cannot be restored as a VM', { vm: from.name });
  if (from.klass === 'DispVM' && from.legacyClass) fail('ERR_PLAN', `R2/R3 DisposableVM ${from.name} cannot be restored`, { vm: from.name });
  if (!isValidVmName(opts.newName, { allowDot: host.schema === 'r2r3' })) fail('ERR_PLAN', `invalid VM name ${JSON.stringify(opts.newName)}`, { vm: from.name });
  if (findDomain(host, opts.newName)) fail('ERR_PLAN', `VM ${opts.newName} already exists on the host`, { vm: from.name });
  const origin = originOf(from);
  const qid = freeQid(host);
  let node: XNode;
  if (host.schema === 'r2r3') {
    if (from.legacyClass === undefined || origin?.node === undefined) fail('ERR_UNSUPPORTED', `cannot add R4 VM ${from.name} to an R2/R3 qubes.xml`, { vm: from.name });
    node = copyLegacyDomain(host, origin.node, from, qid, opts);
    appendChild(st.root, node, 0, st.pretty);
  } else {
    const refs = resolveRefs(host, from, opts);
    node =
      from.legacyClass === undefined && origin?.schema === 'r4' && origin.node
        ? copyR4Domain(host, origin.node, from, qid, opts, refs)
        : buildR4Domain(host, from, qid, opts, refs);
    const domains = child(st.root, 'domains') ?? (() => {
      const d = makeElement('domains');
      appendChild(st.root, d, 0, st.pretty);
      return d;
    })();
    appendChild(domains, node, 1, st.pretty);
  }
  refresh(host);
  return [...stateOf(host).nodes].find(([, n]) => n === node)![0];
}
