// Test helper: an independent normalised view of an XML document (fast-xml-parser with its own
// entity processing, whitespace trimmed) to check that serialising kept the document's content.
import { XMLParser } from 'fast-xml-parser';

const normaliser = new XMLParser({
  preserveOrder: true,
  ignoreAttributes: false,
  attributeNamePrefix: '@',
  parseTagValue: false,
  parseAttributeValue: false,
  trimValues: true,
  processEntities: true,
  commentPropName: '#comment',
});

/** fast-xml-parser's normalised ordered tree of `xml`. */
export function normalisedTree(xml: string | Uint8Array): unknown {
  return normaliser.parse(typeof xml === 'string' ? xml : Buffer.from(xml).toString('utf8'));
}
