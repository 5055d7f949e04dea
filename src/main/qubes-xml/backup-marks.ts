// Backup-side edits of qubes.xml (FORMAT.md §8.2, §8.3): mark which VMs are in the archive,
// with their path and size, and stamp backup_timestamp after success.
import { fail } from '../errors.js';
import { refresh, stateOf } from './document.js';
import { setFeature, removeFeatures, setProperty } from './r4-edit.js';
import type { QubesXml } from './types.js';
import { appendChild } from './xml-layout.js';
import { childrenOf, isElement, makeElement, setAttr, type XNode } from './xml-tree.js';

function checkQids(doc: QubesXml, qids: Iterable<number>): void {
  const known = new Set(doc.domains.map((d) => d.qid));
  for (const q of qids) if (!known.has(q)) fail('ERR_PLAN', `qid ${q} is not in qubes.xml`);
}

/** Element of the domain with this qid; for R2/R3 creates the dom0 element if it was synthesised. */
function nodeFor(doc: QubesXml, qid: number): XNode | undefined {
  const st = stateOf(doc);
  const d = doc.domains.find((x) => x.qid === qid)!;
  const n = st.nodes.get(d);
  if (n || doc.schema !== 'r2r3' || qid !== 0) return n;
  const el = makeElement('QubesAdminVm', { qid: '0', name: 'dom0', label: 'black' });
  const kids = childrenOf(st.root);
  const firstEl = kids.findIndex((c) => isElement(c));
  appendChild(st.root, el, 0, st.pretty, firstEl >= 0 ? kids[firstEl] : undefined);
  st.nodes.set(d, el);
  return el;
}

/**
 * Backup side, on a COPY of the host's qubes.xml: mark every domain as not in the backup, then
 * the given qids as included with their archive path and size. R4: features backup-content
 * ('1'/''), backup-path (as given, `vmN/` keeps its slash), backup-size, and drop preload-dispvm*
 * features except preload-dispvm-max. R2/R3: attributes backup_content True/False, backup_path
 * (no trailing slash), backup_size.
 */
export function markBackupContent(doc: QubesXml, included: Map<number, { path: string; size: number }>): void {
  checkQids(doc, included.keys());
  const st = stateOf(doc);
  for (const [q, v] of included) {
    if (!Number.isSafeInteger(v.size) || v.size < 0) fail('ERR_INTERNAL', `invalid backup size ${v.size} for qid ${q}`);
  }
  for (const d of [...doc.domains]) {
    const inc = included.get(d.qid);
    const node = inc ? nodeFor(doc, d.qid) : st.nodes.get(d);
    if (!node) continue; // synthesised dom0 of an old R2 file, not included
    if (doc.schema === 'r4') {
      setFeature(node, 'backup-content', inc ? '1' : '', st.pretty);
      if (inc) {
        setFeature(node, 'backup-path', inc.path, st.pretty);
        setFeature(node, 'backup-size', String(inc.size), st.pretty);
      }
      removeFeatures(node, (n) => n.startsWith('preload-dispvm') && n !== 'preload-dispvm-max');
    } else {
      setAttr(node, 'backup_content', inc ? 'True' : 'False');
      if (inc) {
        setAttr(node, 'backup_path', inc.path.replace(/\/+$/, ''));
        setAttr(node, 'backup_size', String(inc.size));
      }
    }
  }
  refresh(doc);
}

/** After a successful backup: set backup_timestamp (R4 property, R2/R3 attribute) on the given qids. */
export function setBackupTimestamp(doc: QubesXml, qids: number[], epochSeconds: number): void {
  checkQids(doc, qids);
  if (!Number.isSafeInteger(epochSeconds) || epochSeconds < 0) fail('ERR_INTERNAL', `invalid timestamp ${epochSeconds}`);
  const st = stateOf(doc);
  for (const q of qids) {
    const node = nodeFor(doc, q);
    if (!node) continue;
    if (doc.schema === 'r4') setProperty(node, 'backup_timestamp', String(epochSeconds), st.pretty);
    else setAttr(node, 'backup_timestamp', String(epochSeconds));
  }
  refresh(doc);
}
