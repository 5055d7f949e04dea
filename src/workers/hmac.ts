// HMAC as `openssl dgst -<algo> -hmac <key>` computes it, and the text of a Qubes `.hmac` file.
// Pure; used by the workers for chunks and by the main thread for the small header file.
import { createHmac, getHashes, timingSafeEqual, type Hmac } from 'node:crypto';

/** Map a Qubes/openssl digest name (`SHA512`, `sha1`, `SHA2-512`, `sha3-256`) to a node:crypto name, or null. */
export function nodeDigestName(algorithm: string): string | null {
  const lower = algorithm.toLowerCase();
  const alias: Record<string, string> = { 'sha2-224': 'sha224', 'sha2-256': 'sha256', 'sha2-384': 'sha384', 'sha2-512': 'sha512', 'sha2-512/224': 'sha512-224', 'sha2-512/256': 'sha512-256' };
  const name = alias[lower] ?? lower;
  return getHashes().includes(name) ? name : null;
}

/** Start an HMAC; throws on an unknown digest (callers validate names first). */
export function startHmac(algorithm: string, key: Uint8Array): Hmac {
  const name = nodeDigestName(algorithm);
  if (name === null) throw new Error(`unsupported HMAC digest: ${algorithm}`);
  return createHmac(name, key);
}

/** Lower-case hex HMAC of the concatenation of `parts`. */
export function computeHmacHex(algorithm: string, key: Uint8Array, ...parts: Uint8Array[]): string {
  const h = startHmac(algorithm, key);
  for (const p of parts) h.update(p);
  return h.digest('hex');
}

/** Constant-time comparison of two hex strings, case-insensitive. */
export function hexEqual(a: string, b: string): boolean {
  const x = Buffer.from(a.toLowerCase(), 'utf8');
  const y = Buffer.from(b.toLowerCase(), 'utf8');
  return x.length === y.length && timingSafeEqual(x, y);
}
