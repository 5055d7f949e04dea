// Finding how a v2/v3 `backup-header` was authenticated before the header can be trusted
// (FORMAT.md §3.3), and recognising a v4 scrypt-encrypted header copy.
// Contract: header bytes are UNTRUSTED until guessHmacAlgorithm returns non-null (v2/v3) or the
// scrypt copy decrypted to identical bytes (v4); only then call parseBackupHeader on them.
import { getHashes } from 'node:crypto';
import { computeHmacHex, hexEqual } from '../../workers/hmac.js';
import { fail } from '../errors.js';
import { parseHmacFile } from './hmac-file.js';
import { HEADER_MAX_BYTES } from './limits.js';

/** The digest R3+ writers use by default; tried first. */
export const DEFAULT_HMAC_ALGORITHM = 'SHA512';

/** openssl's spelling (as `openssl list -digest-algorithms` and Qubes headers use it) of node digest names. */
const OPENSSL_SPELLING: ReadonlyArray<[string, string]> = [
  ['sha512', 'SHA512'], ['sha1', 'SHA1'], ['sha256', 'SHA256'], ['sha384', 'SHA384'], ['sha224', 'SHA224'],
  ['md5', 'MD5'], ['sha512-224', 'SHA512-224'], ['sha512-256', 'SHA512-256'],
  ['sha3-224', 'SHA3-224'], ['sha3-256', 'SHA3-256'], ['sha3-384', 'SHA3-384'], ['sha3-512', 'SHA3-512'],
  ['ripemd160', 'RIPEMD160'], ['blake2b512', 'BLAKE2b512'], ['blake2s256', 'BLAKE2s256'],
  ['sm3', 'SM3'], ['md4', 'MD4'], ['md5-sha1', 'MD5-SHA1'],
];

const SCRYPT_MAGIC = Buffer.from('scrypt', 'ascii');

let candidates: string[] | undefined;

/** Digest names to try, in order: SHA512, openssl-spelled common digests, then every other node name. */
export function candidateHmacAlgorithms(): readonly string[] {
  if (candidates === undefined) {
    const hashes = getHashes();
    const list = [DEFAULT_HMAC_ALGORITHM];
    for (const [node, openssl] of OPENSSL_SPELLING) if (hashes.includes(node)) list.push(openssl);
    const spelled = new Set(OPENSSL_SPELLING.map(([node]) => node));
    for (const h of hashes) if (!spelled.has(h)) list.push(h);
    candidates = [...new Set(list)];
  }
  return candidates;
}

/**
 * For a v2/v3 archive, return the digest whose HMAC (keyed by the UTF-8 passphrase) over the
 * header matches `backup-header.hmac`, or null (wrong passphrase or corrupted header). Aliases of
 * one digest are tried once; digests that cannot HMAC are skipped. Check isScryptHeaderHmac first:
 * a v4 `.hmac` is binary and makes this throw ERR_CORRUPT. The result only authenticates the
 * header; later files use the header's own `hmac-algorithm`.
 */
export function guessHmacAlgorithm(headerBytes: Uint8Array, hmacFileBytes: Uint8Array, passphrase: string): string | null {
  if (headerBytes.length > HEADER_MAX_BYTES) {
    fail('ERR_TOO_LARGE', `backup header too large (${headerBytes.length} bytes, limit ${HEADER_MAX_BYTES})`);
  }
  const expected = parseHmacFile(hmacFileBytes);
  const key = Buffer.from(passphrase, 'utf8');
  const tried = new Set<string>();
  for (const name of candidateHmacAlgorithms()) {
    let hex: string;
    try {
      hex = computeHmacHex(name, key, headerBytes);
    } catch {
      continue; // unknown to nodeDigestName (mixed-case aliases) or no HMAC support (shake*)
    }
    if (tried.has(hex)) continue; // an alias of a digest already tried
    tried.add(hex);
    if (hexEqual(hex, expected)) return name;
  }
  return null;
}

/** True if a `backup-header.hmac` is a Tarsnap scrypt file (magic `scrypt`, version 0): a v4 header. */
export function isScryptHeaderHmac(hmacFileBytes: Uint8Array): boolean {
  return hmacFileBytes.length >= 7 && SCRYPT_MAGIC.equals(hmacFileBytes.subarray(0, 6)) && hmacFileBytes[6] === 0;
}
