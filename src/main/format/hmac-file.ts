// The text of a v2/v3 `.hmac` file (`openssl dgst -<algo> -hmac <pw>` output, FORMAT.md §6):
// writing it, strictly parsing untrusted copies, and verifying data against one.
import { createHmac } from 'node:crypto';
import { computeHmacHex, hexEqual, nodeDigestName } from '../../workers/hmac.js';
import { fail } from '../errors.js';
import { HMAC_FILE_MAX_BYTES } from './limits.js';

const HEX = /^[0-9a-fA-F]+$/;

/** True if `algorithm` (openssl/Qubes spelling) names a digest node:crypto can use for HMAC. */
export function isHmacDigestSupported(algorithm: string): boolean {
  const name = nodeDigestName(algorithm);
  if (name === null) return false;
  try {
    createHmac(name, 'k').update('x').digest(); // shake128/256 are listed but refuse HMAC
    return true;
  } catch {
    return false;
  }
}

/** `.hmac` file content as OpenSSL 1.x wrote it for R2/R3: `(stdin)= <lower-case hex>\n`. */
export function formatHmacFile(hex: string): Buffer {
  if (!HEX.test(hex)) fail('ERR_INTERNAL', 'formatHmacFile: not a hex string');
  return Buffer.from(`(stdin)= ${hex.toLowerCase()}\n`, 'ascii');
}

/**
 * Parse an untrusted `.hmac` file and return its hex digest (case as written). Accepts
 * `(stdin)= <hex>` (OpenSSL 1.x) and `<ALG>(stdin)= <hex>` (OpenSSL 3). Like the reference
 * readers: ASCII only, ≤ 4096 bytes, strip, split on '=', take piece 1, strip.
 */
export function parseHmacFile(untrusted: Uint8Array): string {
  if (untrusted.length > HMAC_FILE_MAX_BYTES) {
    fail('ERR_TOO_LARGE', `hmac file too large (${untrusted.length} bytes, limit ${HMAC_FILE_MAX_BYTES})`);
  }
  for (const byte of untrusted) {
    if (byte > 0x7f) fail('ERR_CORRUPT', 'invalid hmac file content (non-ASCII bytes)');
  }
  const pieces = Buffer.from(untrusted).toString('latin1').trim().split('=');
  const hex = pieces[1]?.trim();
  if (hex === undefined) fail('ERR_CORRUPT', "invalid hmac file content (no '=')");
  if (!HEX.test(hex) || hex.length % 2 !== 0) fail('ERR_CORRUPT', 'invalid hmac file content (not a hex digest)');
  return hex;
}

/**
 * Verify `data` against an untrusted `.hmac` file in constant time. Returns false on mismatch;
 * throws ERR_UNSUPPORTED for an unusable digest and ERR_CORRUPT/ERR_TOO_LARGE for a malformed file.
 */
export function verifyHmacFile(algorithm: string, key: Uint8Array, data: Uint8Array, untrustedHmacFile: Uint8Array): boolean {
  if (!isHmacDigestSupported(algorithm)) fail('ERR_UNSUPPORTED', `unsupported HMAC digest: ${safeName(algorithm)}`);
  const expected = parseHmacFile(untrustedHmacFile);
  return hexEqual(computeHmacHex(algorithm, key, data), expected);
}

/** Printable rendering of a possibly hostile algorithm name for error messages. */
function safeName(s: string): string {
  return JSON.stringify(s.length > 64 ? `${s.slice(0, 64)}…` : s);
}
