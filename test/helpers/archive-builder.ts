// Test helper: complete, validly authenticated format 4 archives built in code, with any qubes.xml
// and any inner archives — the material of the hostile-archive tests. Inner archives come from real
// GNU tar run on directories the test crafts (symlinks, device nodes, hard links, odd modes).
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { encodeBackupHeader } from '../../src/main/format/backup-header.js';
import { outerMemberHead, outerMemberTail } from '../../src/main/tar/outer-tar-writer.js';
import { scryptEncryptInto } from '../../src/workers/scrypt-file.js';

export const BUILDER_BACKUP_ID = '20261201T120000-4242';

/** One inner archive: its chunk base (`vm9/private.img`, `vm9/.`, `dom0-home/user`) and tar bytes. */
export interface InnerArchive {
  base: string;
  tar: Buffer;
}

function outerMember(name: string, data: Uint8Array): Buffer {
  return Buffer.concat([outerMemberHead(name, data.length, { mtimeSec: 1_700_000_000 }), data, outerMemberTail(data.length)]);
}

function scryptFile(passphrase: string, data: Uint8Array, logN: number): Buffer {
  const out = new Uint8Array(data.length + 128);
  const n = scryptEncryptInto(Buffer.from(passphrase), { logN, r: 8, p: 1 }, data, out);
  return Buffer.from(out.subarray(0, n));
}

/** GNU tar (ustar/gnu, uncompressed) of `names` relative to `dir`, never dereferencing links. */
export function tarOf(dir: string, names: string[]): Buffer {
  return execFileSync('tar', ['-c', '--sparse', '-C', dir, '-f', '-', '--', ...names], { maxBuffer: 1 << 30 });
}

/** A format 4 archive (one chunk per inner archive; uncompressed, or each inner archive one gzip
 *  member with `gzip`) with a valid head. */
export function buildV4Archive(o: { passphrase: string; qubesXml: string; members: InnerArchive[]; logN?: number; work: string; gzip?: boolean }): Buffer {
  const logN = o.logN ?? 10;
  const id = BUILDER_BACKUP_ID;
  const gzip = o.gzip === true;
  const header = encodeBackupHeader({ version: 4, encrypted: true, compressed: gzip, ...(gzip ? { compressionFilter: 'gzip' } : {}), hmacAlgorithm: 'scrypt', backupId: id });
  const pack = (tar: Buffer): Buffer => (gzip ? gzipSync(tar) : tar);
  const xmlDir = path.join(o.work, 'src', `xml-${process.pid}-${Math.random().toString(36).slice(2)}`);
  mkdirSync(xmlDir, { recursive: true });
  writeFileSync(path.join(xmlDir, 'qubes.xml'), o.qubesXml);
  const parts = [
    outerMember('backup-header', header),
    outerMember('backup-header.hmac', scryptFile(`backup-header!${o.passphrase}`, header, logN)),
    outerMember('qubes.xml.000.enc', scryptFile(`${id}!qubes.xml.000!${o.passphrase}`, pack(tarOf(xmlDir, ['qubes.xml'])), logN)),
  ];
  for (const m of o.members) parts.push(outerMember(`${m.base}.000.enc`, scryptFile(`${id}!${m.base}.000!${o.passphrase}`, pack(m.tar), logN)));
  parts.push(Buffer.alloc(1024)); // end-of-archive blocks
  return Buffer.concat(parts);
}
