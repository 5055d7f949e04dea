// Restore side: add a VM taken from a backup's qubes.xml (either schema) to the host's R4
// qubes.xml. The new `<domain>` is generated from the typed model, never copied from the backup's
// XML: a known class, one properties section with our qid/name/uuid/label, allow-listed and
// type-checked properties, checked references, bounded features and tags, devices only between
// VMs of this restore, and a volume-config generated for the file-pool layout.
import { randomUUID } from 'node:crypto';
import { fail } from '../errors.js';
import { appendedDomain, findDomain, refresh, stateOf } from './document.js';
import { restoredDevices, restoredFeatures, restoredTags } from './restore-extras.js';
import { restoredProperties } from './restore-props.js';
import { restoredRefs } from './restore-refs.js';
import type { DomainInfo, QubesXml } from './types.js';
import { isValidVmName } from './vm-name.js';
import { RESTORABLE_CLASSES, isDispvmTemplate, shown } from './vm-kinds.js';
import { setProperty } from './r4-edit.js';
import { restoredVolumes, saneSize, type SizedVolume } from './volumes.js';
import { appendChild } from './xml-layout.js';
import { child, makeElement, tagOf, type XNode } from './xml-tree.js';
import { readR4Domain } from './read-r4.js';

export interface AddRestoredOptions {
  newName: string;
  /** every VM restored in this run: backup name → host name (identity entries included) */
  renames: Map<string, string>;
  /** used when a referenced template / netvm is neither on the host nor being restored */
  hostDefaults?: { template?: string; netvm?: string };
  /**
   * Sizes in bytes of the VM's restored images (`root.img` → root, …): the volume sizes. Without
   * them the backup's size is used if it is a positive integer of at most 16 TiB, else Qubes'
   * default.
   */
  volumeSizes?: Partial<Record<SizedVolume, number>>;
  /** leave a default_dispvm naming a not-yet-installed VM of this restore unset (see setRestoredDefaultDispvm) */
  deferDefaultDispvm?: boolean;
}

/** Highest qid Qubes allocates (qubes.config.max_qid). */
const MAX_QID = 254;

function freeQid(host: QubesXml): number {
  const used = new Set(host.domains.map((d) => d.qid));
  for (let q = 1; q <= MAX_QID; q++) if (!used.has(q)) return q;
  return fail('ERR_PLAN', 'no free qid left on the host');
}

/** A DispVM's persistent dispid (Qubes assigns one when it creates a DispVM): lowest unused. */
function freeDispid(host: QubesXml): string {
  const used = new Set(host.domains.filter((d) => d.klass === 'DispVM').map((d) => d.properties['dispid']));
  let n = 1;
  while (used.has(String(n))) n++;
  return String(n);
}

function labelId(host: QubesXml, name: string | undefined): string {
  const l = host.labels.find((x) => x.name === name) ?? host.labels.find((x) => x.name === 'red') ?? host.labels[0];
  if (!l) fail('ERR_QUBES_XML', 'host qubes.xml has no labels');
  return l.id;
}

/** Class of the restored VM; refuses what a restore cannot create. */
function restoredClass(host: QubesXml, from: DomainInfo): string {
  if (host.schema !== 'r4') fail('ERR_UNSUPPORTED', `cannot add VM ${from.name} to an R2/R3 qubes.xml: restoring into a Qubes R1–R3 host is not supported`, { vm: from.name });
  if (from.klass === 'AdminVM') fail('ERR_PLAN', 'dom0 cannot be restored as a VM', { vm: from.name });
  if (from.klass === 'DispVM' && from.legacyClass) fail('ERR_PLAN', `R2/R3 DisposableVM ${from.name} cannot be restored`, { vm: from.name });
  if (!RESTORABLE_CLASSES.includes(from.klass)) fail('ERR_PLAN', `VM ${from.name} has class ${shown(from.klass)}, which cannot be restored`, { vm: from.name });
  return from.klass;
}

/**
 * What of backed-up VM `from` is not carried into the host whatever the host holds: properties,
 * features, tags and devices (`restoredBackend(backupName)`: host name of a VM restored in the
 * same run, for device backends). For the plan, before any data is read.
 */
export function restoredDomainWarnings(from: DomainInfo, restoredBackend: (backupName: string) => string | undefined): string[] {
  if (!RESTORABLE_CLASSES.includes(from.klass)) return [];
  return [
    ...restoredProperties(from, from.klass).warnings,
    ...restoredFeatures(from).warnings,
    ...restoredTags(from).warnings,
    ...restoredDevices(from, restoredBackend).warnings,
  ];
}

/** Qubes R4's default IPv4 address of a VM (not a disposable): from its qid. */
const defaultIpOf = (qid: number): string => `10.137.${(qid >> 8) & 0xff}.${qid & 0xff}`;

/** One spelling per address: an IPv6 address compressed and in lower case (URL's own rules),
 *  anything else in lower case. */
function canonicalAddress(a: string): string {
  if (a.includes(':') && !/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/i.test(a)) {
    try {
      return new URL(`http://[${a}]/`).hostname;
    } catch {
      // not an address URL takes: compared as it is
    }
  }
  return a.toLowerCase();
}

/** Whether host VM `d` has an address of its qid: a netVM, or a VM (not a template, dom0 or a
 *  disposable, whose addresses come from elsewhere) with a netVM of its own or the default one. */
function networked(host: QubesXml, d: DomainInfo): boolean {
  if (d.klass === 'AdminVM' || d.klass === 'DispVM') return false;
  if (d.providesNetwork) return true;
  if (d.klass === 'TemplateVM') return typeof d.netvm === 'string' && d.netvm !== '';
  return d.netvm === undefined ? (host.globalProperties['default_netvm'] ?? '') !== '' : typeof d.netvm === 'string' && d.netvm !== '';
}

/**
 * Drop from `props` an explicit `ip`, `ip6` or `mac` that a host VM has already (its own, or for
 * `ip` the default of its qid when it is networked): a netVM's firewall rules and anti-spoofing are keyed by address,
 * so two VMs with one would share them. The restored VM gets its default (from its new qid).
 */
function dropTakenAddresses(host: QubesXml, props: Record<string, string>): string[] {
  const warnings: string[] = [];
  for (const name of ['ip', 'ip6', 'mac']) {
    const given = props[name];
    if (given === undefined) continue;
    const v = canonicalAddress(given);
    const addressOf = (d: DomainInfo): string | undefined => d.properties[name] ?? (name === 'ip' && networked(host, d) ? defaultIpOf(d.qid) : undefined);
    const owner = host.domains.find((d) => {
      const a = addressOf(d);
      return a !== undefined && canonicalAddress(a) === v;
    });
    if (owner === undefined) continue;
    warnings.push(`property ${name} (${props[name]}) not restored: host VM ${owner.name} has that address; the default applies`);
    delete props[name];
  }
  return warnings;
}

/** The new `<domain>` element, built from the model. */
function buildDomain(host: QubesXml, from: DomainInfo, klass: string, qid: number, o: AddRestoredOptions): { node: XNode; warnings: string[] } {
  const { props, warnings: pw } = restoredProperties(from, klass);
  pw.push(...dropTakenAddresses(host, props));
  const refs = restoredRefs(host, from, klass, { ...o, selfIsDispvmTemplate: props['template_for_dispvms'] === 'True', ...(o.deferDefaultDispvm ? { deferDefaultDispvm: true } : {}) });
  const { features, warnings: fw } = restoredFeatures(from);
  const { tags, warnings: tw } = restoredTags(from);
  // devices only from VMs this restore added to this host (already installed)
  const added = stateOf(host).restored;
  const { devices, warnings: dw } = restoredDevices(from, (b) => {
    const n = o.renames.get(b);
    return n !== undefined && added.has(n) ? n : undefined;
  });

  const all: [string, string][] = [['label', labelId(host, from.label)], ['name', o.newName], ['qid', String(qid)], ['uuid', randomUUID()], ...Object.entries(props)];
  if (refs.template !== undefined) all.push(['template', refs.template]);
  if (refs.netvm !== undefined) all.push(['netvm', refs.netvm]);
  if (refs.defaultDispvm !== undefined) all.push(['default_dispvm', refs.defaultDispvm]);
  if (klass === 'DispVM') all.push(['dispid', freeDispid(host)]);
  const kids: XNode[] = [makeElement('properties', {}, all.map(([name, v]) => makeElement('property', { name }, [], v)))];
  kids.push(makeElement('features', {}, features.map(([name, v]) => makeElement('feature', { name }, [], v))));
  for (const bus of [...new Set(devices.map((d) => d.device.bus))]) {
    const els = devices.filter((d) => d.device.bus === bus).map(({ device: d, attrs }) => {
      const opts = Object.entries(d.options).map(([name, v]) => makeElement('option', { name }, [], v));
      return makeElement('device', { 'backend-domain': d.backend, id: d.port, ...attrs }, opts);
    });
    kids.push(makeElement('devices', { class: bus }, els));
  }
  kids.push(makeElement('tags', {}, tags.map((name) => makeElement('tag', { name }))));
  const sizes: Partial<Record<SizedVolume, number>> = {};
  for (const vol of ['root', 'private', 'volatile'] as const) {
    const s = saneSize(o.volumeSizes?.[vol]) ?? saneSize(from.volumes.find((v) => v.name === vol)?.size);
    if (s !== undefined) sizes[vol] = s;
  }
  const vols = restoredVolumes(host, {
    name: o.newName,
    klass,
    sizes,
    ...(props['kernel'] !== undefined ? { kernel: props['kernel'] } : {}),
    ...(refs.template !== undefined ? { template: refs.template } : {}),
  });
  kids.push(makeElement('volume-config', {}, vols));
  return { node: makeElement('domain', { id: `domain-${qid}`, class: klass }, kids), warnings: [...pw, ...refs.warnings, ...fw, ...tw, ...dw] };
}

/**
 * Add a VM taken from a backup's qubes.xml to the host document (R4 only): new qid (lowest free
 * ≥1), new name, label by name (fallback red), references remapped through `renames` and checked,
 * what may be carried (see restoredProperties, restoredFeatures, restoredTags, restoredDevices),
 * volumes generated for the file pool. R2/R3 VMs are converted to R4 (classes, services →
 * features, HVM → virt_mode=hvm). What was not carried is kept with the document for the caller:
 * restoreWarningsOf(host, newName). Returns the DomainInfo as added.
 */
export function addRestoredDomain(host: QubesXml, from: DomainInfo, opts: AddRestoredOptions): DomainInfo {
  const st = stateOf(host);
  const { node, warnings } = restoredElement(host, from, opts);
  const domains = child(st.root, 'domains') ?? (() => {
    const d = makeElement('domains');
    appendChild(st.root, d, 0, st.pretty);
    return d;
  })();
  appendChild(domains, node, 1, st.pretty);
  const added = appendedDomain(host, node);
  st.restored.set(opts.newName, warnings);
  return added;
}

/**
 * What addRestoredDomain would add, without adding it: the same checks and the same element,
 * read but not attached (an install's dry run: its volumes are checked before any file moves).
 */
export function previewRestoredDomain(host: QubesXml, from: DomainInfo, opts: AddRestoredOptions): DomainInfo {
  return readR4Domain(restoredElement(host, from, opts).node, host.labels);
}

/** The checks of an add and the element it adds (not attached to `host`). */
function restoredElement(host: QubesXml, from: DomainInfo, opts: AddRestoredOptions): { node: XNode; warnings: string[] } {
  stateOf(host);
  const klass = restoredClass(host, from);
  if (!isValidVmName(opts.newName)) fail('ERR_PLAN', `invalid VM name ${shown(opts.newName)}`, { vm: from.name });
  if (findDomain(host, opts.newName)) fail('ERR_PLAN', `VM ${opts.newName} already exists on the host`, { vm: from.name });
  return buildDomain(host, from, klass, freeQid(host), opts);
}

/**
 * A mark to roll `host` back to after addRestoredDomain: what it changes (the children of the root
 * and of `<domains>`, the restored VMs' warnings) is saved, and the returned function puts it back
 * and re-reads the model. A dry run or a failed install needs no copy of the whole document (one
 * copy per VM made each install cost grow with the number of VMs already on the host).
 */
export function markForRollback(host: QubesXml): () => void {
  const st = stateOf(host);
  const saved = [st.root, child(st.root, 'domains')].filter((n): n is XNode => n !== undefined).map((node) => {
    const tag = tagOf(node)!;
    const value = node[tag];
    return { node, tag, value: Array.isArray(value) ? [...(value as XNode[])] : value };
  });
  const restored = new Map(st.restored);
  return () => {
    for (const { node, tag, value } of saved) node[tag] = Array.isArray(value) ? [...(value as XNode[])] : value;
    st.restored = restored;
    refresh(host);
  };
}

/** The default_dispvm left unset by addRestoredDomain(deferDefaultDispvm) for VM `name`, if any. */
export function deferredDefaultDispvmOf(host: QubesXml, from: DomainInfo, opts: AddRestoredOptions): string | undefined {
  if (typeof from.defaultDispvm !== 'string') return undefined;
  const d = opts.renames.get(from.defaultDispvm);
  return d !== undefined && d !== opts.newName && findDomain(host, d) === undefined ? d : undefined;
}

/**
 * Set the default_dispvm of restored VM `name` to `target` once both are on the host (a reference
 * between two VMs of one restore, deferred so that qubes.xml never names a missing VM). When
 * `target` was not `restored` or is no disposable template, it is set to none, with a warning.
 */
export function setRestoredDefaultDispvm(host: QubesXml, name: string, target: string, restored = true): { changed: boolean; warning?: string } {
  const st = stateOf(host);
  const entry = [...st.nodes].find(([d, n]) => d.name === name && n !== undefined);
  // a target this restore did not install is not used even if the host has a VM of that name
  const t = restored ? findDomain(host, target) : undefined;
  if (entry === undefined) return { changed: false, warning: `${name}: not on the host, default_dispvm not set` };
  // fail closed: none, not the host's default_dispvm, whose disposables may have another network
  const usable = t !== undefined && isDispvmTemplate(t);
  setProperty(entry[1]!, 'default_dispvm', usable ? target : '', st.pretty);
  refresh(host);
  return usable ? { changed: true } : { changed: true, warning: `${name}: default_dispvm ${shown(target)} set to none: ${t === undefined ? 'it was not restored' : 'it is no disposable template'} (set it with qvm-prefs)` };
}
