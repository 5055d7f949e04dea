// In-place edits of an R4 `<domain>` element (which sits at depth 2: qubes/domains/domain):
// properties, features and sections, keeping the element order Qubes writes.
import { appendChild, removeChild } from './xml-layout.js';
import { child, elements, getAttr, makeElement, setText, tagOf, type XNode } from './xml-tree.js';

const DOMAIN_DEPTH = 2;
/** Section order inside `<domain>` as written by Qubes. */
const SECTION_ORDER = ['properties', 'features', 'devices', 'tags', 'volume-config'];

/** The section child (`properties`, `features`, `tags`, `volume-config`), created in order if missing. */
export function ensureSection(dom: XNode, tag: string, pretty: boolean): XNode {
  const found = child(dom, tag);
  if (found) return found;
  const rank = SECTION_ORDER.indexOf(tag);
  const before = elements(dom).find((e) => SECTION_ORDER.indexOf(tagOf(e)!) > rank);
  const node = makeElement(tag);
  appendChild(dom, node, DOMAIN_DEPTH, pretty, before);
  return node;
}

function named(section: XNode | undefined, tag: string, name: string): XNode | undefined {
  return section ? elements(section, tag).find((e) => getAttr(e, 'name') === name) : undefined;
}

function setNamed(dom: XNode, section: string, tag: string, name: string, value: string, pretty: boolean): void {
  const sec = ensureSection(dom, section, pretty);
  const existing = named(sec, tag, name);
  if (existing) setText(existing, value);
  else appendChild(sec, makeElement(tag, { name }, [], value), DOMAIN_DEPTH + 1, pretty);
}

/** Set (or add) `<property name>`. */
export function setProperty(dom: XNode, name: string, value: string, pretty: boolean): void {
  setNamed(dom, 'properties', 'property', name, value, pretty);
}

/** Remove `<property name>` if present. */
export function removeProperty(dom: XNode, name: string): void {
  const sec = child(dom, 'properties');
  const p = named(sec, 'property', name);
  if (sec && p) removeChild(sec, p);
}

/** Set (or add) `<feature name>`. */
export function setFeature(dom: XNode, name: string, value: string, pretty: boolean): void {
  setNamed(dom, 'features', 'feature', name, value, pretty);
}

/** Remove the features whose name passes the test. */
export function removeFeatures(dom: XNode, test: (name: string) => boolean): void {
  const sec = child(dom, 'features');
  if (!sec) return;
  for (const f of elements(sec, 'feature')) if (test(getAttr(f, 'name') ?? '')) removeChild(sec, f);
}
