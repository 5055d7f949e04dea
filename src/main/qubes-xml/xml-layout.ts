// Layout of the preserved tree when elements are added or removed: keeps the document's
// indentation (pretty-printed files stay pretty, one-line files stay one line).
import { childrenOf, isElement, tagOf, TEXT, type XNode } from './xml-tree.js';

const isWs = (n: XNode | undefined) => n !== undefined && TEXT in n && String(n[TEXT]).trim() === '';
const ws = (s: string): XNode => ({ [TEXT]: s });

/**
 * Append an element child keeping the parent's indentation style. `depth` is the parent's
 * nesting level (root = 0); `pretty` false appends without whitespace.
 */
export function appendChild(parent: XNode, node: XNode, depth: number, pretty: boolean, before?: XNode): void {
  const kids = childrenOf(parent);
  const t = tagOf(parent)!;
  if (!Array.isArray(parent[t])) parent[t] = kids;
  if (!pretty) {
    const at = before ? kids.indexOf(before) : -1;
    kids.splice(at < 0 ? kids.length : at, 0, node);
    return;
  }
  const firstEl = kids.findIndex((c) => isElement(c));
  const prev = firstEl > 0 ? kids[firstEl - 1] : undefined;
  const inner = isWs(prev) ? String(prev![TEXT]) : '\n' + '  '.repeat(depth + 1);
  indentTree(node, inner);
  if (before) {
    const at = kids.indexOf(before);
    if (at >= 0) {
      kids.splice(at, 0, node, ws(inner));
      return;
    }
  }
  if (kids.length === 0) {
    kids.push(ws(inner), node, ws('\n' + '  '.repeat(depth)));
  } else if (isWs(kids[kids.length - 1])) {
    kids.splice(kids.length - 1, 0, ws(inner), node);
  } else {
    kids.push(ws(inner), node);
  }
}

/** Add indentation whitespace inside a newly made element whose own line starts with `indent`. */
export function indentTree(node: XNode, indent: string): void {
  const kids = childrenOf(node);
  if (kids.length === 0 || kids.some((c) => !isElement(c))) return;
  const inner = indent + '  ';
  const out: XNode[] = [];
  for (const c of kids) {
    indentTree(c, inner);
    out.push(ws(inner), c);
  }
  out.push(ws(indent));
  node[tagOf(node)!] = out;
}

/** Drop indentation whitespace inside element-only content (to re-indent a copied element). */
export function stripIndentation(node: XNode): void {
  const kids = childrenOf(node);
  if (kids.some((c) => TEXT in c && !isWs(c))) return;
  const t = tagOf(node)!;
  node[t] = kids.filter((c) => !isWs(c));
  for (const c of childrenOf(node)) if (isElement(c)) stripIndentation(c);
}

/** Remove an element child and the whitespace before it. */
export function removeChild(parent: XNode, node: XNode): void {
  const kids = childrenOf(parent);
  const i = kids.indexOf(node);
  if (i < 0) return;
  const prevWs = i > 0 && isWs(kids[i - 1]);
  kids.splice(prevWs ? i - 1 : i, prevWs ? 2 : 1);
  if (kids.every((c) => isWs(c))) kids.length = 0;
}

/** True if the document is pretty-printed (the root has newline whitespace children). */
export function isPretty(root: XNode): boolean {
  return childrenOf(root).some((c) => isWs(c) && String(c[TEXT]).includes('\n'));
}
