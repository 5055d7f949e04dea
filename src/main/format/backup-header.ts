// The `backup-header` file (FORMAT.md §3): encoding with each reference writer's exact key order,
// and a strict parser for untrusted bytes (R4 client rules, a little stricter). Parse a header
// only after its HMAC (v2/v3) or scrypt copy (v4) verified — see hmac-algorithm.ts.
import { getCiphers } from 'node:crypto';
import { fail } from '../errors.js';
import { isHmacDigestSupported } from './hmac-file.js';
import { HEADER_MAX_BYTES } from './limits.js';

export type FormatVersion = 2 | 3 | 4;

export interface BackupHeader {
  /** 2 when the header has no `version` key. */
  version: FormatVersion;
  /** openssl digest name (v2/v3, compare case-insensitively) or `scrypt` (v4). */
  hmacAlgorithm: string;
  /** openssl cipher name (v2/v3); normally absent in v4. */
  cryptoAlgorithm?: string;
  encrypted: boolean;
  compressed: boolean;
  /** Program used as `--use-compress-program` (v3/v4). v2 compresses with gzip and has none. */
  compressionFilter?: string;
  /** v4 only: `%Y%m%dT%H%M%S-<pid>`, part of every chunk passphrase. */
  backupId?: string;
}

export interface ParseHeaderOptions {
  /** `--compression-filter` given by the user: replaces the header's value and skips the allow-list. */
  forcedCompressionFilter?: string;
}

/** Filters every reader accepts. */
export const STANDARD_COMPRESSION_FILTERS: readonly string[] = ['gzip', 'bzip2', 'xz'];
/** Filters the R4 reader accepts if installed (the restore pipeline checks installation). */
export const OPTIONAL_COMPRESSION_FILTERS: readonly string[] = ['lzma', 'pbzip2', 'pigz', 'zstd', 'zstdmt'];

const TOKEN = /^[A-Za-z0-9-]*$/;
const KNOWN_KEYS = new Set(['version', 'hmac-algorithm', 'crypto-algorithm', 'encrypted', 'compressed', 'compression-filter', 'backup-id']);
const DEFAULT_CIPHER = 'aes-256-cbc';
const DEFAULT_FILTER = 'gzip';

/** Header bytes exactly as the reference writer of `h.version` produces them (§3.2 key order). */
export function encodeBackupHeader(h: BackupHeader): Buffer {
  const bool = (b: boolean): string => (b ? 'True' : 'False');
  const lines: Array<[string, string]> = [];
  if (h.version === 2 || h.version === 3) {
    if (h.version === 3) lines.push(['version', '3']);
    lines.push(['hmac-algorithm', h.hmacAlgorithm]);
    lines.push(['crypto-algorithm', h.cryptoAlgorithm ?? DEFAULT_CIPHER]); // written even when not encrypted
    lines.push(['encrypted', bool(h.encrypted)]);
    lines.push(['compressed', bool(h.compressed)]);
    if (h.version === 3 && h.compressed) lines.push(['compression-filter', h.compressionFilter ?? DEFAULT_FILTER]);
  } else if (h.version === 4) {
    if (h.backupId === undefined) fail('ERR_INTERNAL', 'a version 4 header needs a backup-id');
    lines.push(['version', '4']);
    lines.push(['encrypted', bool(h.encrypted)]);
    lines.push(['compressed', bool(h.compressed)]);
    lines.push(['compression-filter', h.compressionFilter ?? DEFAULT_FILTER]); // always, even uncompressed
    if (h.cryptoAlgorithm !== undefined) lines.push(['crypto-algorithm', h.cryptoAlgorithm]);
    lines.push(['hmac-algorithm', h.hmacAlgorithm]);
    lines.push(['backup-id', h.backupId]);
  } else {
    fail('ERR_INTERNAL', `cannot write backup format version ${String(h.version)}`);
  }
  for (const [key, value] of lines) {
    if (value === '' || !TOKEN.test(value)) {
      fail('ERR_USAGE', `header value for ${key} must be non-empty and contain only letters, digits and '-': ${JSON.stringify(value)}`);
    }
  }
  return Buffer.from(lines.map(([k, v]) => `${k}=${v}\n`).join(''), 'ascii');
}

/**
 * Parse untrusted header bytes. Rules: ≤ HEADER_MAX_BYTES; ASCII; lines split on LF/CR, stripped,
 * empty lines ignored; exactly one '=' per line; key and value match /^[A-Za-z0-9-]*$/; unknown keys
 * ignored; a known key twice is an error; bool ∈ {1,true,yes,0,false,no} (any case); version is a
 * decimal 2..4 (absent ⇒ 2); required keys per version; algorithms and filter must be supported.
 */
export function parseBackupHeader(untrustedBytes: Uint8Array, opts: ParseHeaderOptions = {}): BackupHeader {
  const raw = splitHeaderLines(untrustedBytes);

  let version: FormatVersion = 2;
  const versionText = raw.get('version');
  if (versionText !== undefined) {
    if (!/^[0-9]{1,9}$/.test(versionText)) fail('ERR_BAD_HEADER', 'backup header: version is not a decimal integer');
    const n = Number(versionText);
    if (n === 1) fail('ERR_UNSUPPORTED', 'backup header: version=1 (format 1 backups are directories without a header)');
    if (n !== 2 && n !== 3 && n !== 4) fail('ERR_UNSUPPORTED', `backup header: unsupported format version ${n} (supported: 2, 3, 4)`);
    version = n as FormatVersion;
  }

  const need = (key: string): string => {
    const v = raw.get(key);
    if (v === undefined) fail('ERR_BAD_HEADER', `backup header (version ${version}): missing required key ${key}`);
    return v;
  };
  const encrypted = parseBool('encrypted', need('encrypted'));
  const compressed = parseBool('compressed', need('compressed'));
  const hmacText = need('hmac-algorithm');
  const cryptoText = encrypted && version < 4 ? need('crypto-algorithm') : raw.get('crypto-algorithm');
  const headerFilter = raw.get('compression-filter');
  const compressionFilter = opts.forcedCompressionFilter ?? headerFilter;
  if (version >= 3 && compressed && compressionFilter === undefined) {
    fail('ERR_BAD_HEADER', `backup header (version ${version}): missing required key compression-filter`);
  }
  const backupId = version >= 4 ? need('backup-id') : raw.get('backup-id');

  // Algorithms.
  let hmacAlgorithm = hmacText;
  if (hmacText.toLowerCase() === 'scrypt') {
    if (version < 4) fail('ERR_UNSUPPORTED', `backup header: hmac-algorithm=scrypt is only valid in version 4 (this is version ${version})`);
    hmacAlgorithm = 'scrypt';
  } else if (!isHmacDigestSupported(hmacText)) {
    fail('ERR_UNSUPPORTED', `backup header: hmac-algorithm ${JSON.stringify(hmacText)} is not a supported digest`);
  }
  if (cryptoText !== undefined) {
    const lower = cryptoText.toLowerCase();
    if (lower === 'scrypt') {
      if (version < 4 && encrypted) fail('ERR_UNSUPPORTED', 'backup header: crypto-algorithm=scrypt is only valid in version 4');
    } else if (!supportedCiphers().has(lower)) {
      fail('ERR_UNSUPPORTED', `backup header: crypto-algorithm ${JSON.stringify(cryptoText)} is not a supported cipher`);
    }
  }
  if (version === 4 && !encrypted) fail('ERR_UNSUPPORTED', 'backup header: version 4 requires encrypted=True');

  // Compression filter: the allow-list applies to the header's value even when compressed=False.
  if (opts.forcedCompressionFilter === undefined && headerFilter !== undefined && !isAcceptedFilter(headerFilter)) {
    fail('ERR_UNSUPPORTED', `backup header: unusual compression-filter ${JSON.stringify(headerFilter)}; pass --compression-filter to force one`);
  }

  if (backupId !== undefined && (backupId === '' || backupId.startsWith('-'))) {
    fail('ERR_BAD_HEADER', 'backup header: backup-id must be non-empty and must not start with "-"');
  }

  const header: BackupHeader = { version, hmacAlgorithm, encrypted, compressed };
  if (cryptoText !== undefined) header.cryptoAlgorithm = cryptoText;
  if (compressionFilter !== undefined) header.compressionFilter = compressionFilter;
  if (backupId !== undefined) header.backupId = backupId;
  return header;
}

/** Backup id as the R4 writer makes it: `%Y%m%dT%H%M%S-<pid>` in local time. */
export function makeBackupId(date: Date, pid: number): string {
  const p = (n: number, w = 2): string => String(n).padStart(w, '0');
  const stamp = `${p(date.getFullYear(), 4)}${p(date.getMonth() + 1)}${p(date.getDate())}T${p(date.getHours())}${p(date.getMinutes())}${p(date.getSeconds())}`;
  return `${stamp}-${pid}`;
}

/** True if `filter` is on the R4 reader's allow-list (standard or optional). */
export function isAcceptedFilter(filter: string): boolean {
  return STANDARD_COMPRESSION_FILTERS.includes(filter) || OPTIONAL_COMPRESSION_FILTERS.includes(filter);
}

/** Line-level checks; returns the known keys with their raw values. Never echoes untrusted text. */
function splitHeaderLines(untrusted: Uint8Array): Map<string, string> {
  if (untrusted.length > HEADER_MAX_BYTES) {
    fail('ERR_TOO_LARGE', `backup header too large (${untrusted.length} bytes, limit ${HEADER_MAX_BYTES})`);
  }
  const offset = untrusted.findIndex((b) => b > 0x7f);
  if (offset >= 0) fail('ERR_BAD_HEADER', `backup header: non-ASCII byte at offset ${offset}`);
  const raw = new Map<string, string>();
  const lines = Buffer.from(untrusted).toString('latin1').split(/\r\n|\n|\r/);
  for (const [i, untrustedLine] of lines.entries()) {
    const line = untrustedLine.replace(/^[ \t\v\f]+|[ \t\v\f]+$/g, '');
    if (line === '') continue;
    const at = `backup header line ${i + 1}`;
    const eq = line.indexOf('=');
    if (eq < 0 || line.indexOf('=', eq + 1) >= 0) fail('ERR_BAD_HEADER', `${at}: expected exactly one '='`);
    const key = line.slice(0, eq);
    const value = line.slice(eq + 1);
    if (!TOKEN.test(key)) fail('ERR_BAD_HEADER', `${at}: invalid characters in key`);
    if (!TOKEN.test(value)) fail('ERR_BAD_HEADER', `${at}: invalid characters in value of ${key}`);
    if (!KNOWN_KEYS.has(key)) continue;
    if (raw.has(key)) fail('ERR_BAD_HEADER', `${at}: duplicate key ${key}`);
    raw.set(key, value);
  }
  return raw;
}

function parseBool(key: string, value: string): boolean {
  const v = value.toLowerCase();
  if (v === '1' || v === 'true' || v === 'yes') return true;
  if (v === '0' || v === 'false' || v === 'no') return false;
  fail('ERR_BAD_HEADER', `backup header: ${key} is not a boolean (True/False)`);
}

let cipherSet: Set<string> | undefined;
function supportedCiphers(): Set<string> {
  cipherSet ??= new Set(getCiphers().map((c) => c.toLowerCase()));
  return cipherSet;
}
