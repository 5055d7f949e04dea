// Reads the R4 schema (root `<qubes>`, FORMAT.md §8.3) from the preserved tree into the model,
// following what the Qubes R4 restore client (`Core3Qubes`) makes of it: AdminVM is `dom0`,
// labels resolve through `<labels>`, a VM is in the backup iff feature backup-content is non-empty.
import { fail } from '../errors.js';
import type { DeviceInfo, DomainInfo, LabelInfo, VolumeInfo } from './types.js';
import { child, decodedAttrs, elements, getAttr, setKey, textOf, type XNode } from './xml-tree.js';

/** Qubes `property.bool`: the usual spellings, else `dflt`. */
export function qbool(value: string | undefined, dflt: boolean): boolean {
  if (value === undefined) return dflt;
  const v = value.toLowerCase();
  if (['1', 'yes', 'true', 'on'].includes(v)) return true;
  if (['0', 'no', 'false', 'off', ''].includes(v)) return false;
  return dflt;
}

/** Parse a non-negative integer size; undefined if absent or not a safe integer. */
export function parseSize(value: string | undefined): number | undefined {
  if (value === undefined || !/^[0-9]{1,16}$/.test(value.trim())) return undefined;
  const n = Number(value.trim());
  return Number.isSafeInteger(n) ? n : undefined;
}

/** Fail unless the backup size of an included VM is a valid integer. */
export function checkedBackupSize(vm: string, raw: string | undefined, content: boolean): number | undefined {
  const size = parseSize(raw);
  if (content && raw !== undefined && size === undefined) fail('ERR_QUBES_XML', `qubes.xml: VM ${vm}: invalid backup size ${JSON.stringify(raw)}`, { vm });
  return size;
}

/** Name → decoded text of `<property name=…>` children of `node` (a `<properties>` element). */
export function readProperties(node: XNode | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  if (!node) return out;
  for (const p of elements(node, 'property')) {
    const name = getAttr(p, 'name');
    if (name !== undefined) setKey(out, name, textOf(p));
  }
  return out;
}

/** The `<labels>` table (id, name, colour). */
export function readLabels(root: XNode): LabelInfo[] {
  const labels = child(root, 'labels');
  if (!labels) return [];
  return elements(labels, 'label').map((l) => ({ id: getAttr(l, 'id') ?? '', name: textOf(l), color: getAttr(l, 'color') ?? '' }));
}

function readVolumes(dom: XNode): VolumeInfo[] {
  const vc = child(dom, 'volume-config');
  if (!vc) return [];
  return elements(vc, 'volume').map((v) => {
    const attrs = decodedAttrs(v);
    const vol: VolumeInfo = {
      name: attrs['name'] ?? '',
      saveOnStop: qbool(attrs['save_on_stop'], false),
      snapToClone: qbool(attrs['snap_on_start'], false),
      attrs,
    };
    if (attrs['pool'] !== undefined) vol.pool = attrs['pool'];
    if (attrs['vid'] !== undefined) vol.vid = attrs['vid'];
    const size = parseSize(attrs['size']);
    if (size !== undefined) vol.size = size;
    return vol;
  });
}

function readDevices(dom: XNode): DeviceInfo[] {
  const out: DeviceInfo[] = [];
  for (const bus of elements(dom, 'devices')) {
    for (const d of elements(bus, 'device')) {
      const options: Record<string, string> = {};
      for (const o of elements(d, 'option')) setKey(options, getAttr(o, 'name') ?? '', textOf(o));
      out.push({ bus: getAttr(bus, 'class') ?? '', backend: getAttr(d, 'backend-domain') ?? '', port: getAttr(d, 'id') ?? '', options, attrs: decodedAttrs(d) });
    }
  }
  return out;
}

/** Model of one `<domain>` element. */
export function readR4Domain(dom: XNode, labels: LabelInfo[]): DomainInfo {
  const klass = getAttr(dom, 'class');
  if (!klass) fail('ERR_QUBES_XML', 'qubes.xml: <domain> without class');
  const properties = readProperties(child(dom, 'properties'));
  const has = (k: string) => Object.prototype.hasOwnProperty.call(properties, k);
  const name = klass === 'AdminVM' ? 'dom0' : properties['name'];
  if (!name) fail('ERR_QUBES_XML', `qubes.xml: ${klass} domain without a name`);
  let qid: number | undefined;
  const idm = /^domain-([0-9]{1,9})$/.exec(getAttr(dom, 'id') ?? '');
  if (has('qid')) qid = /^[0-9]{1,9}$/.test(properties['qid']!) ? Number(properties['qid']) : undefined;
  else if (idm) qid = Number(idm[1]);
  else if (klass === 'AdminVM') qid = 0;
  if (qid === undefined) fail('ERR_QUBES_XML', `qubes.xml: VM ${name} has no valid qid`, { vm: name });

  const features: Record<string, string> = {};
  const fnode = child(dom, 'features');
  if (fnode) for (const f of elements(fnode, 'feature')) setKey(features, getAttr(f, 'name') ?? '', textOf(f));
  const tnode = child(dom, 'tags');
  const tags = tnode ? elements(tnode, 'tag').map((t) => getAttr(t, 'name') ?? '') : [];

  const d: DomainInfo = {
    qid,
    name,
    klass,
    providesNetwork: qbool(properties['provides_network'], false),
    // R4's defaults: true, and for a disposable `not auto_cleanup` (a VM removed at its shutdown
    // is not backed up); dom0 has the property too (false: its home is left out)
    includeInBackups: qbool(properties['include_in_backups'], klass === 'DispVM' ? !qbool(properties['auto_cleanup'], false) : true),
    installedByRpm: qbool(properties['installed_by_rpm'], false),
    volumes: readVolumes(dom),
    properties,
    features,
    tags,
    devices: readDevices(dom),
  };
  const labelRef = properties['label'];
  if (labelRef !== undefined) {
    const l = labels.find((x) => x.id === labelRef) ?? labels.find((x) => x.name === labelRef);
    if (l) d.label = l.name;
  }
  const ref = (k: string) => (has(k) ? (properties[k] === '' ? null : properties[k]!) : undefined);
  if (has('template')) d.template = ref('template');
  if (has('netvm')) d.netvm = ref('netvm');
  if (has('default_dispvm')) d.defaultDispvm = ref('default_dispvm');
  if (['backup-content', 'backup-path', 'backup-size'].some((k) => Object.prototype.hasOwnProperty.call(features, k))) {
    // the R4 client tests Python truthiness of the text: '' (and a missing feature) mean False
    const content = (features['backup-content'] ?? '') !== '';
    d.backup = { content };
    if (features['backup-path'] !== undefined) d.backup.path = features['backup-path'];
    const size = checkedBackupSize(name, features['backup-size'], content);
    if (size !== undefined) d.backup.size = size;
  }
  return d;
}

/** Domains (with their elements), labels and global properties of an R4 document. */
export function readR4(root: XNode): { domains: { info: DomainInfo; node: XNode }[]; labels: LabelInfo[]; globals: Record<string, string> } {
  const labels = readLabels(root);
  const globals = readProperties(child(root, 'properties'));
  const domainsNode = child(root, 'domains');
  const domains = domainsNode ? elements(domainsNode, 'domain').map((node) => ({ info: readR4Domain(node, labels), node })) : [];
  return { domains, labels, globals };
}
