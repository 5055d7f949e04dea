// A QubesXml document: the model plus its preserved XML tree (kept out of the model, in a
// WeakMap, so that models compare by content). Parse, serialise, clone and refresh live here.
import { fail } from '../errors.js';
import { readR2R3 } from './read-r2r3.js';
import { readR4, readR4Domain } from './read-r4.js';
import type { DomainInfo, QubesSchema, QubesXml } from './types.js';
import { isPretty } from './xml-layout.js';
import { buildTree, isElement, parseTree, tagOf, type XNode } from './xml-tree.js';

export interface DocState {
  top: XNode[];
  root: XNode;
  pretty: boolean;
  /** element of each domain of doc.domains (absent for a synthesised dom0) */
  nodes: Map<DomainInfo, XNode | undefined>;
  /** VMs a restore added to this document → what was not carried (kept by cloneQubesXml) */
  restored: Map<string, string[]>;
}

/** Where a DomainInfo came from, so a restore can copy its element. */
export interface DomainOrigin {
  schema: QubesSchema;
  node?: XNode;
}

const states = new WeakMap<QubesXml, DocState>();
const origins = new WeakMap<DomainInfo, DomainOrigin>();

/** Internal state of a document made by this module (fails for foreign objects). */
export function stateOf(doc: QubesXml): DocState {
  const s = states.get(doc);
  if (!s) fail('ERR_INTERNAL', 'not a QubesXml made by parseQubesXml/cloneQubesXml/emptyR4Host');
  return s;
}

/** Origin of a DomainInfo made by this module, if any. */
export function originOf(d: DomainInfo): DomainOrigin | undefined {
  return origins.get(d);
}

function schemaOf(root: XNode): QubesSchema {
  const t = tagOf(root);
  if (t === 'qubes') return 'r4';
  if (t === 'QubesVmCollection') return 'r2r3';
  return fail('ERR_QUBES_XML', `qubes.xml: unknown root element <${t}>`);
}

/** Re-derive the model from the tree; DomainInfo objects of unchanged elements keep their identity. */
export function refresh(doc: QubesXml): void {
  const st = stateOf(doc);
  const r4 = doc.schema === 'r4' ? readR4(st.root) : undefined;
  const fresh = r4 ?? readR2R3(st.root);
  const byNode = new Map<XNode | undefined, DomainInfo>();
  for (const [d, n] of st.nodes) byNode.set(n, d);
  const names = new Set<string>();
  const nodes = new Map<DomainInfo, XNode | undefined>();
  const domains: DomainInfo[] = [];
  for (const { info, node } of fresh.domains) {
    if (names.has(info.name)) fail('ERR_QUBES_XML', `qubes.xml: duplicate VM name ${info.name}`, { vm: info.name });
    names.add(info.name);
    const old = byNode.get(node);
    let d = info;
    if (old) {
      for (const k of Object.keys(old)) delete (old as unknown as Record<string, unknown>)[k];
      d = Object.assign(old, info);
    }
    nodes.set(d, node);
    origins.set(d, node ? { schema: doc.schema, node } : { schema: doc.schema });
    domains.push(d);
  }
  st.nodes = nodes;
  doc.domains.splice(0, doc.domains.length, ...domains);
  doc.labels.splice(0, doc.labels.length, ...(r4 ? r4.labels : []));
  for (const k of Object.keys(doc.globalProperties)) delete doc.globalProperties[k];
  Object.assign(doc.globalProperties, fresh.globals);
}

/**
 * The model after `node` was appended to `<domains>` of an R4 document and nothing else changed:
 * what refresh() would make, reading that one element instead of every domain again (a restore
 * of 100 VMs into a host of 100 read ~10 000 domains). Returns its DomainInfo.
 */
export function appendedDomain(doc: QubesXml, node: XNode): DomainInfo {
  const st = stateOf(doc);
  if (doc.schema !== 'r4') {
    refresh(doc);
    return [...st.nodes].find(([, n]) => n === node)![0];
  }
  const info = readR4Domain(node, doc.labels);
  if (doc.domains.some((d) => d.name === info.name)) fail('ERR_QUBES_XML', `qubes.xml: duplicate VM name ${info.name}`, { vm: info.name });
  st.nodes.set(info, node);
  origins.set(info, { schema: doc.schema, node });
  doc.domains.push(info);
  return info;
}

/** Make a document around an already-parsed tree. */
export function docFromTree(top: XNode[]): QubesXml {
  const root = top.find((n) => isElement(n))!;
  const doc: QubesXml = { schema: schemaOf(root), domains: [], labels: [], globalProperties: {} };
  states.set(doc, { top, root, pretty: isPretty(root), nodes: new Map(), restored: new Map() });
  refresh(doc);
  return doc;
}

/** Parse untrusted qubes.xml text or bytes (either schema). Errors: ERR_TOO_LARGE, ERR_QUBES_XML. */
export function parseQubesXml(untrustedText: string | Uint8Array): QubesXml {
  return docFromTree(parseTree(untrustedText));
}

/** Write the document; everything not changed through this module is kept. */
export function serializeQubesXml(doc: QubesXml): string {
  return buildTree(stateOf(doc).top);
}

/** Deep copy (model and tree). */
export function cloneQubesXml(doc: QubesXml): QubesXml {
  const copy = docFromTree(structuredClone(stateOf(doc).top));
  stateOf(copy).restored = new Map(stateOf(doc).restored);
  return copy;
}

/** Domain by name. */
export function findDomain(doc: QubesXml, name: string): DomainInfo | undefined {
  return doc.domains.find((d) => d.name === name);
}

/**
 * The warnings of a VM added by addRestoredDomain to this document (what of the backed-up VM was
 * not carried), or undefined for a VM no restore added to it.
 */
export function restoreWarningsOf(doc: QubesXml, name: string): string[] | undefined {
  const w = stateOf(doc).restored.get(name);
  return w === undefined ? undefined : [...w];
}
