// The preserved XML tree: fast-xml-parser's ordered form (`preserveOrder`), with every text and
// attribute value kept escaped as in the source, so writing it back is lossless. Parsing refuses
// DOCTYPE/ENTITY, oversize input and malformed XML; helpers read and edit elements in place.
import { XMLParser, XMLValidator } from 'fast-xml-parser';
import { fail } from '../errors.js';
import { QUBES_XML_MAX_BYTES } from '../format/limits.js';
import { checkXmlChars, decodeAttr, decodeText, encodeAttr, encodeText } from './xml-text.js';

/** A node of the ordered tree: `{ tag: children, ':@'?: attrs }`, `{ '#text': s }`, `{ '#comment': [...] }`. */
export type XNode = Record<string, unknown>;
export type XAttrs = Record<string, string>;

export const TEXT = '#text';
export const COMMENT = '#comment';
export const CDATA = '#cdata';
const ATTRS = ':@';

const COMMON = {
  preserveOrder: true,
  ignoreAttributes: false,
  attributeNamePrefix: '',
  commentPropName: COMMENT,
  cdataPropName: CDATA,
  // entity handling is done by xml-text.ts: fast-xml-parser 5 leaves numeric character references
  // undecoded (its builder would then double-escape them) and accepts undefined entities
  processEntities: false,
} as const;

const parser = new XMLParser({
  ...COMMON,
  allowBooleanAttributes: false,
  parseTagValue: false,
  parseAttributeValue: false,
  trimValues: false,
  htmlEntities: false,
  ignoreDeclaration: false,
  ignorePiTags: false,
  removeNSPrefix: false,
});

const ENCODINGS = new Set(['utf-8', 'utf8', 'us-ascii', 'ascii']);

/** Parse untrusted qubes.xml into the ordered tree; returns the top-level node list. */
export function parseTree(untrusted: string | Uint8Array): XNode[] {
  const size = typeof untrusted === 'string' ? Buffer.byteLength(untrusted, 'utf8') : untrusted.byteLength;
  if (size > QUBES_XML_MAX_BYTES) fail('ERR_TOO_LARGE', `qubes.xml is ${size} bytes, more than the ${QUBES_XML_MAX_BYTES} allowed`);
  let text: string;
  if (typeof untrusted === 'string') {
    text = untrusted;
  } else {
    try {
      text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false }).decode(untrusted);
    } catch (e) {
      fail('ERR_QUBES_XML', 'qubes.xml is not valid UTF-8', {}, e);
    }
  }
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  if (/<!DOCTYPE|<!ENTITY/i.test(text)) fail('ERR_QUBES_XML', 'qubes.xml contains a DOCTYPE or ENTITY declaration');
  checkXmlChars(text);
  text = text.replace(/\r\n?/g, '\n'); // XML end-of-line normalisation
  const valid = XMLValidator.validate(text, { allowBooleanAttributes: false });
  if (valid !== true) {
    const e = valid.err;
    // the validator's words for elements still open at the end: "Invalid '[ "qubes", … ]' found"
    const open = /^Invalid '\[([\s\S]*)\]' found\.?$/.exec(e.msg);
    if (open !== null) {
      const names = [...open[1]!.matchAll(/"([^"]*)"/g)].map((m) => m[1]!.slice(0, 64));
      // (at most the first three and the last two of a deep nest)
      const shown = names.length > 6 ? [...names.slice(0, 3), `… ${names.length - 5} more …`, ...names.slice(-2)] : names;
      fail('ERR_QUBES_XML', `qubes.xml is malformed: it ends with element${names.length > 1 ? 's' : ''} ${shown.map((n) => (n.startsWith('…') ? n : `<${n}>`)).join(' > ')} still open (cut short?)`);
    }
    if (text.trim() === '') fail('ERR_QUBES_XML', 'qubes.xml is empty');
    fail('ERR_QUBES_XML', `qubes.xml is malformed: ${e.msg.slice(0, 200)} (line ${e.line}${e.col !== undefined ? `, column ${e.col}` : ''})`);
  }
  let top: XNode[];
  try {
    top = parser.parse(text) as XNode[];
  } catch (e) {
    fail('ERR_QUBES_XML', `qubes.xml cannot be parsed: ${(e as Error).message}`, {}, e);
  }
  const roots = top.filter((n) => isElement(n));
  if (roots.length !== 1) fail('ERR_QUBES_XML', `qubes.xml must have exactly one root element, found ${roots.length}`);
  for (const n of top) {
    if (TEXT in n && String(n[TEXT]).trim() !== '') fail('ERR_QUBES_XML', 'qubes.xml has text outside the root element');
    if (tagOf(n) === '?xml') {
      const enc = attrsOf(n)['encoding'];
      if (enc !== undefined && !ENCODINGS.has(enc.toLowerCase())) fail('ERR_QUBES_XML', `qubes.xml declares unsupported encoding ${enc}`);
    }
  }
  checkValues(top);
  return top;
}

// Decode every text and attribute value once so that bad references fail at parse time.
function checkValues(nodes: XNode[]): void {
  for (const n of nodes) {
    if (TEXT in n) {
      const t = String(n[TEXT]);
      if (t.includes(']]>') || t.includes('<')) fail('ERR_QUBES_XML', 'qubes.xml is malformed: "]]>" or "<" in text');
      decodeText(t);
      continue;
    }
    const tag = tagOf(n);
    if (tag === COMMENT) {
      const c = String((childrenOf(n)[0] ?? {})[TEXT] ?? '');
      if (c.includes('--') || c.endsWith('-')) fail('ERR_QUBES_XML', 'qubes.xml is malformed: "--" in a comment');
      continue;
    }
    if (tag === undefined || tag === CDATA) continue;
    for (const v of Object.values(attrsOf(n))) {
      if (v.includes('<')) fail('ERR_QUBES_XML', 'qubes.xml is malformed: "<" in an attribute value');
      decodeAttr(v);
    }
    checkValues(childrenOf(n));
  }
}

/**
 * Write the tree back as XML text (top-level nodes one per line, trailing newline). Values are
 * already escaped in the tree, so they are written as they are; an attribute that came from a
 * single-quoted source value gets its `"` escaped. (fast-xml-parser's XMLBuilder would rewrite
 * every `'` in attributes as `&apos;`, noise in R2/R3 files full of Python literals.)
 */
export function buildTree(top: XNode[]): string {
  const parts: string[] = [];
  for (const n of top) {
    if (TEXT in n) continue; // whitespace between top-level nodes
    parts.push(writeNode(n));
  }
  return parts.join('\n') + '\n';
}

function writeAttrs(n: XNode): string {
  let s = '';
  for (const [k, v] of Object.entries(attrsOf(n))) s += ` ${k}="${v.replace(/"/g, '&quot;')}"`;
  return s;
}

function writeNode(n: XNode): string {
  if (TEXT in n) return String(n[TEXT]);
  const tag = tagOf(n)!;
  const inner = (): string => String((childrenOf(n)[0] ?? {})[TEXT] ?? '');
  if (tag === COMMENT) return `<!--${inner()}-->`;
  if (tag === CDATA) return `<![CDATA[${inner()}]]>`;
  if (tag.startsWith('?')) return `<${tag}${writeAttrs(n)}?>`;
  const kids = childrenOf(n);
  if (kids.length === 0) return `<${tag}${writeAttrs(n)}/>`;
  return `<${tag}${writeAttrs(n)}>${kids.map(writeNode).join('')}</${tag}>`;
}

/** Tag of an element (or `#comment`/`#cdata`/`?xml`); undefined for text nodes. */
export function tagOf(n: XNode): string | undefined {
  for (const k of Object.keys(n)) if (k !== ATTRS) return k === TEXT ? undefined : k;
  return undefined;
}

/** True for element nodes (not text, comment, CDATA or processing instructions). */
export function isElement(n: XNode): boolean {
  const t = tagOf(n);
  return t !== undefined && t !== COMMENT && t !== CDATA && !t.startsWith('?');
}

/** The child list of an element (live array). */
export function childrenOf(n: XNode): XNode[] {
  const t = tagOf(n);
  const c = t === undefined ? undefined : n[t];
  return Array.isArray(c) ? (c as XNode[]) : [];
}

/** Raw (escaped) attributes of a node (live object; empty object when none). */
export function attrsOf(n: XNode): XAttrs {
  return (n[ATTRS] as XAttrs | undefined) ?? {};
}

/** Element children, optionally only those with the given tag. */
export function elements(n: XNode, tag?: string): XNode[] {
  return childrenOf(n).filter((c) => isElement(c) && (tag === undefined || tagOf(c) === tag));
}

/** First element child with the tag. */
export function child(n: XNode, tag: string): XNode | undefined {
  return childrenOf(n).find((c) => tagOf(c) === tag);
}

/** Decoded attribute value. */
export function getAttr(n: XNode, name: string): string | undefined {
  const raw = attrsOf(n)[name];
  return raw === undefined ? undefined : decodeAttr(raw);
}

/** Decoded copy of all attributes. */
export function decodedAttrs(n: XNode): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(attrsOf(n))) setKey(out, k, decodeAttr(v));
  return out;
}

/** Set (or add at the end) an attribute. */
export function setAttr(n: XNode, name: string, value: string): void {
  if (n[ATTRS] === undefined) n[ATTRS] = {};
  setKey(n[ATTRS] as XAttrs, name, encodeAttr(value));
}

/** Remove an attribute if present. */
export function removeAttr(n: XNode, name: string): void {
  const a = n[ATTRS] as XAttrs | undefined;
  if (a && Object.prototype.hasOwnProperty.call(a, name)) delete a[name];
}

/** Decoded text content (text and CDATA children concatenated). */
export function textOf(n: XNode): string {
  let s = '';
  for (const c of childrenOf(n)) {
    if (TEXT in c) s += decodeText(String(c[TEXT]));
    else if (tagOf(c) === CDATA) s += String((childrenOf(c)[0] ?? {})[TEXT] ?? '');
  }
  return s;
}

/** Replace the content of an element by a text value ('' = empty element). */
export function setText(n: XNode, value: string): void {
  const t = tagOf(n)!;
  n[t] = value === '' ? [] : [{ [TEXT]: encodeText(value) }];
}

/** Make a new element; attribute and text values are given decoded. */
export function makeElement(tag: string, attrs: Record<string, string> = {}, kids: XNode[] = [], text?: string): XNode {
  const n: XNode = { [tag]: text !== undefined && text !== '' ? [{ [TEXT]: encodeText(text) }] : kids };
  for (const [k, v] of Object.entries(attrs)) setAttr(n, k, v);
  return n;
}

/** Set an own property safely even for names like `__proto__`. */
export function setKey<T>(obj: Record<string, T>, key: string, value: T): void {
  Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
}
