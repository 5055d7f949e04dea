// Strict XML text/attribute escaping and unescaping. The preserved tree keeps every value in its
// escaped source form; these turn it into model strings and back. Only the five predefined
// entities and numeric character references exist (DOCTYPE is refused), anything else is an error.
import { fail } from '../errors.js';

const REF = /&(?:#x([0-9a-fA-F]{1,6})|#([0-9]{1,7})|(lt|gt|amp|quot|apos));/y;
const NAMED: Record<string, string> = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" };

function isXmlChar(cp: number): boolean {
  return (
    cp === 0x9 ||
    cp === 0xa ||
    cp === 0xd ||
    (cp >= 0x20 && cp <= 0xd7ff) ||
    (cp >= 0xe000 && cp <= 0xfffd) ||
    (cp >= 0x10000 && cp <= 0x10ffff)
  );
}

/** Decode entity and character references in escaped source text; unknown references fail. */
export function decodeRefs(raw: string): string {
  if (!raw.includes('&')) return raw;
  let out = '';
  let i = 0;
  for (;;) {
    const amp = raw.indexOf('&', i);
    if (amp < 0) return out + raw.slice(i);
    out += raw.slice(i, amp);
    REF.lastIndex = amp;
    const m = REF.exec(raw);
    if (!m) fail('ERR_QUBES_XML', `qubes.xml: unknown or malformed entity reference near "${raw.slice(amp, amp + 12)}"`);
    if (m[3] !== undefined) {
      out += NAMED[m[3]]!;
    } else {
      const cp = m[1] !== undefined ? parseInt(m[1], 16) : parseInt(m[2]!, 10);
      if (!isXmlChar(cp)) fail('ERR_QUBES_XML', `qubes.xml: character reference to an invalid character (${cp})`);
      out += String.fromCodePoint(cp);
    }
    i = REF.lastIndex;
  }
}

/** Model value of an escaped text node. */
export function decodeText(raw: string): string {
  return decodeRefs(raw);
}

/** Model value of an escaped attribute (XML attribute-value normalisation, then references). */
export function decodeAttr(raw: string): string {
  return decodeRefs(raw.replace(/[\t\n\r]/g, ' '));
}

/** Escape a string for a text node. */
export function encodeText(value: string): string {
  return value.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/\r/g, '&#13;');
}

/**
 * Escape a string for an attribute value. Quotes are left to the builder, which always writes
 * `"` as `&quot;` and `'` as `&apos;`; whitespace is escaped so that it survives normalisation.
 */
export function encodeAttr(value: string): string {
  return encodeText(value).replace(/\t/g, '&#9;').replace(/\n/g, '&#10;');
}

// XML 1.0 Char production: C0 controls other than TAB/LF/CR, U+FFFE/U+FFFF, lone surrogates.
const BAD_CHAR = /[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/** Fail if the document contains a character XML 1.0 does not allow. */
export function checkXmlChars(text: string): void {
  const m = BAD_CHAR.exec(text);
  if (m) fail('ERR_QUBES_XML', `qubes.xml: invalid character U+${m[0].charCodeAt(0).toString(16).padStart(4, '0')} at offset ${m.index}`);
}
