// Phase 1 of a restore: read and authenticate `backup-header` (+ `.hmac`, or the v4 scrypt copy),
// then fetch, authenticate, decrypt and decompress `qubes.xml.000` and extract `qubes.xml` from it.
// Headerless R2-beta3 archives start directly with `qubes.xml.000`.
import { QvmBackupError, fail, isQvmBackupError } from '../../errors.js';
import { parseMemberName } from '../../format/archive-names.js';
import { parseBackupHeader, type BackupHeader } from '../../format/backup-header.js';
import { candidateHmacAlgorithms, guessHmacAlgorithm, isScryptHeaderHmac } from '../../format/hmac-algorithm.js';
import { verifyHmacFile } from '../../format/hmac-file.js';
import { HEADER_MAX_BYTES, HMAC_FILE_MAX_BYTES, QUBES_XML_MAX_BYTES } from '../../format/limits.js';
import { innerFilterOf } from './filters.js';
import { extractTarMember } from './inner-tar-member.js';
import { outerStep, readSmallMember, shownName, type OuterMember, type OuterSource } from './outer-source.js';
import { KdfBudget, RESTORE_MIN_MAX_MEMORY } from './kdf-budget.js';
import { describeNoMember, describeNonTarStart, describeOtherTar, notABackup } from './not-a-backup.js';
import { decompressSmall, opensslDecryptSmall, scryptDecryptSmall, taskFailureError } from './small-decode.js';
import { v4ChunkPassphrase } from './chunk-decoder.js';
import type { ArchiveHead, ReadHeadOptions } from './types.js';
import { readScryptHeader, scryptCost } from '../../../workers/scrypt-file.js';

/** Largest qubes.xml chunk (and its decompressed inner tar): the XML limit plus tar/crypto overhead. */
export const QUBES_XML_CHUNK_MAX_BYTES = QUBES_XML_MAX_BYTES + 64 * 1024;

const AUTH_MESSAGE = 'backup header authentication failed: wrong passphrase or corrupted backup';

/** Read and authenticate the archive head; the reader is left just after the qubes.xml chunk. */
export async function readArchiveHead(reader: OuterSource, passphrase: string, opts: ReadHeadOptions): Promise<ArchiveHead> {
  const first = await firstMember(reader);
  if (first.untrustedName === 'qubes.xml.000') return readHeadless(reader, first, passphrase, opts);
  const headerBytes = await readSmallMember(first, HEADER_MAX_BYTES, 'backup-header');
  const second = await outerStep(reader.next(), 'reading backup-header.hmac');
  if (second === null || second.untrustedName !== 'backup-header.hmac') {
    fail('ERR_CORRUPT', `backup-header is not followed by backup-header.hmac (found ${second === null ? 'end of archive' : shownName(second.untrustedName)})`);
  }
  const hmacBytes = await readSmallMember(second, HMAC_FILE_MAX_BYTES, 'backup-header.hmac');
  // no chunk is in flight yet: the header's and qubes.xml's derivations share all of --max-memory
  const kdf = new KdfBudget(opts.maxMemory ?? RESTORE_MIN_MAX_MEMORY, undefined, opts.pool);

  let header: BackupHeader;
  let early: Promise<EarlyXml> | undefined;
  if (isScryptHeaderHmac(hmacBytes)) {
    const verifying = scryptDecryptSmall(opts.pool, `backup-header!${passphrase}`, hmacBytes, kdf, 'backup-header.hmac', opts.signal);
    // Speed only: while the header's KDF runs, read qubes.xml.000.enc and start its KDF with the
    // backup-id as the (still unverified) header states it. Nothing of it is used unless the header
    // verifies and states that very id; the chunk is authenticated by its own MAC in any case.
    const claimedId = /^backup-id=([A-Za-z0-9][A-Za-z0-9-]{0,63})$/m.exec(headerBytes.toString('latin1'))?.[1];
    if (claimedId !== undefined) {
      early = (async (): Promise<EarlyXml> => {
        const m = await outerStep(reader.next(), 'reading qubes.xml');
        if (m === null) fail('ERR_CORRUPT', 'the archive ends after the backup header (no qubes.xml)');
        expectQubesXmlChunk(m, 4, false);
        const data = await readSmallMember(m, QUBES_XML_CHUNK_MAX_BYTES, 'qubes.xml.000');
        const decoded = scryptDecryptSmall(opts.pool, `${claimedId}!qubes.xml.000!${passphrase}`, data, kdf, 'qubes.xml.000.enc', opts.signal);
        decoded.catch(() => undefined);
        return { id: claimedId, data, decoded };
      })();
      early.catch(() => undefined);
    }
    const r = await verifying;
    if (!r.ok) {
      if (r.reason === 'bad-params' || r.reason === 'too-large') throw taskFailureError(r, 'backup-header.hmac', { file: 'backup-header.hmac' });
      fail('ERR_HEADER_AUTH', AUTH_MESSAGE, { file: 'backup-header' });
    }
    if (!r.data.equals(headerBytes)) fail('ERR_HEADER_AUTH', AUTH_MESSAGE, { file: 'backup-header' });
    header = parseHeader(headerBytes, opts);
    if (header.version !== 4) fail('ERR_BAD_HEADER', `backup header says version ${header.version} but is authenticated like version 4 (scrypt)`);
  } else {
    let algorithm: string | null;
    try {
      algorithm = guessHmacAlgorithm(headerBytes, hmacBytes, passphrase);
    } catch (e) {
      throw new QvmBackupError('ERR_HEADER_AUTH', `${AUTH_MESSAGE} (${isQvmBackupError(e) ? e.message : String(e)})`, { file: 'backup-header' }, e);
    }
    if (algorithm === null) fail('ERR_HEADER_AUTH', AUTH_MESSAGE, { file: 'backup-header' });
    header = parseHeader(headerBytes, opts);
    if (header.version === 4) fail('ERR_BAD_HEADER', 'a version 4 backup header must be authenticated by its scrypt copy, not an HMAC');
  }
  const filterForced = opts.forcedCompressionFilter !== undefined;
  const qubesXmlBytes = early ? await qubesXmlFromEarly(await early, header, passphrase, kdf, opts) : await readQubesXml(reader, header, passphrase, kdf, opts);
  const params = header.version === 4 ? readScryptHeader(hmacBytes) : null;
  const kdf$ = params !== null && !('ok' in params) ? { logN: params.logN, r: params.r, p: params.p } : undefined;
  const kdfBytes = kdf$ !== undefined ? scryptCost(kdf$).bytes : 0;
  return { header, qubesXmlBytes, version: header.version, headerless: false, filterForced, kdfBytes, ...(kdf$ ? { kdf: kdf$ } : {}) };
}

/** The first member, `backup-header` or (R2-beta3) `qubes.xml.000`; ERR_NOT_A_BACKUP, saying what
 *  was found instead, for an input that is empty, no tar at all, or a tar of something else. */
async function firstMember(reader: OuterSource): Promise<OuterMember> {
  let first: OuterMember | null;
  try {
    first = await outerStep(reader.next(), 'reading the first member');
  } catch (e) {
    const code = isQvmBackupError(e) ? e.code : undefined;
    const tooLarge = isQvmBackupError(e) && code === 'ERR_TOO_LARGE' && typeof e.context.file === 'string' ? e.context.file : undefined;
    if (tooLarge !== undefined && tooLarge !== 'backup-header' && tooLarge !== 'qubes.xml.000') throw notABackup(describeOtherTar(tooLarge), e);
    // a backup's first member is named backup-header: a name that is no UTF-8 is another tar
    if (code === 'ERR_UNSAFE_NAME') throw notABackup(`a tar archive whose first member has a name that is not UTF-8 text (a Qubes backup starts with backup-header)`, e);
    const why = code === 'ERR_CORRUPT' ? describeNonTarStart(reader.startBlock) : null;
    if (why === null) throw e;
    throw notABackup(why, e);
  }
  if (first === null) throw notABackup(describeNoMember(reader.bytesRead));
  if (first.untrustedName !== 'backup-header' && first.untrustedName !== 'qubes.xml.000') throw notABackup(describeOtherTar(first.untrustedName));
  return first;
}

function parseHeader(bytes: Buffer, opts: ReadHeadOptions): BackupHeader {
  return opts.forcedCompressionFilter === undefined ? parseBackupHeader(bytes) : parseBackupHeader(bytes, { forcedCompressionFilter: opts.forcedCompressionFilter });
}

/** qubes.xml.000.enc read (and its KDF started) while the v4 header was being verified. */
interface EarlyXml {
  id: string;
  data: Buffer;
  decoded: ReturnType<typeof scryptDecryptSmall>;
}

/** Finish the early qubes.xml: use its decryption if the verified header has the same backup-id. */
async function qubesXmlFromEarly(e: EarlyXml, header: BackupHeader, passphrase: string, kdf: KdfBudget, opts: ReadHeadOptions): Promise<Buffer> {
  const r = header.backupId === e.id ? await e.decoded : await scryptDecryptSmall(opts.pool, v4ChunkPassphrase(header.backupId, 'qubes.xml.000', passphrase), e.data, kdf, 'qubes.xml.000.enc', opts.signal);
  if (!r.ok) throw taskFailureError(r, 'qubes.xml.000.enc', { file: 'qubes.xml' });
  return qubesXmlFromInner(header, r.data);
}

/** The qubes.xml chunk(s) right after the header: `.000.enc` (v4) or `.000` + `.000.hmac` (v2/v3). */
async function readQubesXml(reader: OuterSource, header: BackupHeader, passphrase: string, kdf: KdfBudget, opts: ReadHeadOptions): Promise<Buffer> {
  const m = await outerStep(reader.next(), 'reading qubes.xml');
  if (m === null) fail('ERR_CORRUPT', 'the archive ends after the backup header (no qubes.xml)');
  expectQubesXmlChunk(m, header.version, false);
  const data = await readSmallMember(m, QUBES_XML_CHUNK_MAX_BYTES, 'qubes.xml.000');
  if (header.version === 4) {
    const r = await scryptDecryptSmall(opts.pool, v4ChunkPassphrase(header.backupId, 'qubes.xml.000', passphrase), data, kdf, 'qubes.xml.000.enc', opts.signal);
    if (!r.ok) throw taskFailureError(r, 'qubes.xml.000.enc', { file: 'qubes.xml' });
    return qubesXmlFromInner(header, r.data);
  }
  const h = await outerStep(reader.next(), 'reading qubes.xml.000.hmac');
  if (h === null) fail('ERR_CORRUPT', 'qubes.xml.000 is not followed by qubes.xml.000.hmac (end of archive)');
  expectQubesXmlChunk(h, header.version, true);
  const hmac = await readSmallMember(h, HMAC_FILE_MAX_BYTES, 'qubes.xml.000.hmac');
  if (!verifyHmacFile(header.hmacAlgorithm, Buffer.from(passphrase, 'utf8'), data, hmac)) {
    fail('ERR_CHUNK_AUTH', 'qubes.xml.000: HMAC verification failed (corrupted backup)', { file: 'qubes.xml' });
  }
  return decodeV2V3QubesXml(header, passphrase, data);
}

function expectQubesXmlChunk(m: OuterMember, version: 2 | 3 | 4, hmac: boolean): void {
  const p = parseMemberName(m.untrustedName, version);
  if (p.kind !== 'chunk' || p.base !== 'qubes.xml' || p.index !== 0 || p.hmac !== hmac) {
    const want = version === 4 ? 'qubes.xml.000.enc' : hmac ? 'qubes.xml.000.hmac' : 'qubes.xml.000';
    fail('ERR_CORRUPT', `expected ${want} after the backup header, found ${shownName(m.untrustedName)}`);
  }
}

/** Authenticated v2/v3 qubes.xml chunk → qubes.xml bytes. */
function decodeV2V3QubesXml(header: BackupHeader, passphrase: string, data: Buffer): Buffer {
  const cipher = header.cryptoAlgorithm ?? 'aes-256-cbc';
  if (header.version === 2) {
    let plain: Buffer = data;
    if (header.encrypted && header.compressed) {
      // `openssl enc -e -z`: the zlib BIO sits below the cipher, so the file is zlib(Salted__ ‖ ciphertext)
      plain = opensslDecryptSmall(cipher, passphrase, decompressSmall('zlib', data, QUBES_XML_CHUNK_MAX_BYTES, 'qubes.xml.000'), 'qubes.xml.000');
    } else if (header.encrypted) {
      plain = opensslDecryptSmall(cipher, passphrase, data, 'qubes.xml.000');
    } else if (header.compressed) {
      plain = decompressSmall({ kind: 'gunzip' }, data, QUBES_XML_CHUNK_MAX_BYTES, 'qubes.xml.000');
    }
    return extractTarMember(plain, 'qubes.xml', QUBES_XML_MAX_BYTES, 'qubes.xml.000');
  }
  return qubesXmlFromInner(header, header.encrypted ? opensslDecryptSmall(cipher, passphrase, data, 'qubes.xml.000') : data);
}

function qubesXmlFromInner(header: BackupHeader, plain: Buffer): Buffer {
  const inner = decompressSmall(innerFilterOf(header), plain, QUBES_XML_CHUNK_MAX_BYTES, 'qubes.xml.000');
  return extractTarMember(inner, 'qubes.xml', QUBES_XML_MAX_BYTES, 'qubes.xml.000');
}

/** R2-beta3: no header; the digest is guessed on qubes.xml.000 and a v2 header is synthesised. */
async function readHeadless(reader: OuterSource, first: OuterMember, passphrase: string, opts: ReadHeadOptions): Promise<ArchiveHead> {
  const data = await readSmallMember(first, QUBES_XML_CHUNK_MAX_BYTES, 'qubes.xml.000');
  const h = await outerStep(reader.next(), 'reading qubes.xml.000.hmac');
  if (h === null || h.untrustedName !== 'qubes.xml.000.hmac') fail('ERR_CORRUPT', 'headerless backup: qubes.xml.000 is not followed by qubes.xml.000.hmac');
  const hmac = await readSmallMember(h, HMAC_FILE_MAX_BYTES, 'qubes.xml.000.hmac');
  let algorithm: string | null;
  try {
    algorithm = guessOnData(data, hmac, passphrase);
  } catch (e) {
    throw new QvmBackupError('ERR_HEADER_AUTH', `${AUTH_MESSAGE} (${isQvmBackupError(e) ? e.message : String(e)})`, { file: 'qubes.xml.000' }, e);
  }
  if (algorithm === null) fail('ERR_HEADER_AUTH', AUTH_MESSAGE, { file: 'qubes.xml.000' });
  // Detect what `-e`/`-z` would say: Salted__ (encrypted), zlib (`openssl enc -z`), gzip (compressed only).
  const salted = (b: Buffer): boolean => b.subarray(0, 8).toString('latin1') === 'Salted__';
  let zlibWrapped = false;
  try {
    zlibWrapped = data[0] === 0x78 && salted(decompressSmall('zlib', data, QUBES_XML_CHUNK_MAX_BYTES, 'qubes.xml.000'));
  } catch {
    // not a zlib stream
  }
  const encrypted = opts.headerless?.encrypted ?? (salted(data) || zlibWrapped);
  const compressed = opts.headerless?.compressed ?? (zlibWrapped || (data[0] === 0x1f && data[1] === 0x8b));
  const header: BackupHeader = { version: 2, hmacAlgorithm: algorithm, cryptoAlgorithm: 'aes-256-cbc', encrypted, compressed };
  const qubesXmlBytes = decodeV2V3QubesXml(header, passphrase, data);
  return { header, qubesXmlBytes, version: 2, headerless: true, filterForced: false };
}

/** guessHmacAlgorithm caps its input at the header size; qubes.xml.000 is larger, so try it here. */
function guessOnData(data: Buffer, hmac: Buffer, passphrase: string): string | null {
  if (data.length <= HEADER_MAX_BYTES) return guessHmacAlgorithm(data, hmac, passphrase);
  const key = Buffer.from(passphrase, 'utf8');
  for (const algorithm of candidateHmacAlgorithms()) {
    try {
      if (verifyHmacFile(algorithm, key, data, hmac)) return algorithm;
    } catch (e) {
      if (isQvmBackupError(e) && e.code === 'ERR_UNSUPPORTED') continue;
      throw e;
    }
  }
  return null;
}
