// A tiny in-memory tar reader that pulls one regular member (qubes.xml) out of a small, already
// authenticated inner archive: ustar/GNU/pax headers, GNU long names, zero blocks ignored.
import { fail } from '../../errors.js';
import { checksumMatches, isExtensionHeader, longNameText, paxDecimal, typeflagOf } from '../../tar/tar-codec.js';
import { BLOCK, headerName, parseNumeric, parsePaxRecords, roundUp, stripDotSlash } from '../../tar/tar-header.js';

/** Most headers we walk before giving up (qubes.xml archives have 1–3). */
const MAX_HEADERS = 64;

/**
 * Return the data of regular member `wanted` (a leading `./` is ignored) from tar bytes, copied.
 * Throws ERR_CORRUPT for a malformed archive or a missing member, ERR_TOO_LARGE above `maxBytes`.
 */
export function extractTarMember(tar: Uint8Array, wanted: string, maxBytes: number, what = wanted): Buffer {
  let pos = 0;
  let longName: string | undefined;
  let paxPath: string | undefined;
  let paxSize: number | undefined;
  let paxSparse = false;
  for (let headers = 0; headers < MAX_HEADERS; ) {
    if (pos + BLOCK > tar.length) break;
    const block = tar.subarray(pos, pos + BLOCK);
    pos += BLOCK;
    if (block.every((b) => b === 0)) continue; // end-of-archive blocks and padding: like tar -i
    headers++;
    if (!checksumMatches(block)) {
      fail('ERR_CORRUPT', `${what}: inner tar header checksum mismatch at offset ${pos - BLOCK}`);
    }
    const headerSize = parseNumeric(block, 'size');
    if (headerSize === null) fail('ERR_CORRUPT', `${what}: inner tar header has a malformed size`);
    const type = typeflagOf(block);
    const size = isExtensionHeader(type) ? headerSize : (paxSize ?? headerSize);
    const dataStart = pos;
    const dataEnd = dataStart + size;
    if (dataEnd > tar.length) fail('ERR_CORRUPT', `${what}: inner tar member data truncated`);
    pos = dataStart + roundUp(size, BLOCK);
    const data = tar.subarray(dataStart, dataEnd);

    if (type === 'x') {
      if (size > 64 * 1024) fail('ERR_TOO_LARGE', `${what}: pax header too large`);
      const recs = parsePaxRecords(data);
      if (typeof recs === 'string') fail('ERR_CORRUPT', `${what}: bad pax header: ${recs}`);
      const p = recs.get('path');
      if (p !== undefined) paxPath = Buffer.from(p).toString('utf8');
      const s = recs.get('size');
      if (s !== undefined) {
        const txt = Buffer.from(s).toString('latin1');
        paxSize = paxDecimal(txt, 15) ?? fail('ERR_CORRUPT', `${what}: bad pax size`);
      }
      if ([...recs.keys()].some((k) => k.startsWith('GNU.sparse'))) paxSparse = true;
      continue;
    }
    if (type === 'g' || type === 'K' || type === 'V') continue;
    if (type === 'L') {
      if (size > 64 * 1024) fail('ERR_TOO_LARGE', `${what}: GNU long name too large`);
      longName = longNameText(data);
      continue;
    }

    const name = paxPath ?? longName ?? headerName(block);
    const sparse = paxSparse || type === 'S';
    paxPath = undefined;
    longName = undefined;
    paxSize = undefined;
    paxSparse = false;
    if (stripDotSlash(name) !== wanted) continue;
    if (sparse) fail('ERR_UNSUPPORTED', `${what}: inner member ${wanted} is a sparse file`);
    if (type !== '0' && type !== '\0' && type !== '7') {
      fail('ERR_UNSUPPORTED', `${what}: inner member ${wanted} is not a plain regular file (type ${JSON.stringify(type)})`);
    }
    if (size > maxBytes) fail('ERR_TOO_LARGE', `${what}: ${wanted} is ${size} bytes, limit ${maxBytes}`);
    return Buffer.from(data);
  }
  fail('ERR_CORRUPT', `${what}: inner archive has no member ${wanted}`);
}
