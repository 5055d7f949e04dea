// What an input that is not a Qubes backup is, in words a person understands: "not a Qubes backup:
// gzip-compressed data (a .gz or .tar.gz file)" rather than "bad tar header checksum at offset 0".
// Only for inputs that fail before their first member: a backup whose first header is damaged
// (its name field still says backup-header) stays a corrupt backup.
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { QvmBackupError } from '../../errors.js';
import { shownName } from './outer-source.js';

/** The first non-zero 512-byte block of an input (fewer bytes when the input ended), and where it was. */
export interface StartBlock {
  offset: number;
  bytes: Uint8Array;
}

/** A Qubes backup starts with these members (R2-beta3 archives have no header). */
const FIRST_MEMBERS = /(^|\/)(backup-header|qubes\.xml\.000)(\.hmac)?$/;

const MAGIC: [number[] | string, string][] = [
  [[0x1f, 0x8b], 'gzip-compressed data (a .gz or .tar.gz file)'],
  ['BZh', 'bzip2-compressed data'],
  [[0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00], 'xz-compressed data'],
  [[0x28, 0xb5, 0x2f, 0xfd], 'zstd-compressed data'],
  ['scrypt\0', 'one file encrypted by the scrypt tool (such as a single chunk of a backup), not a whole backup'],
  ['Salted__', 'one file encrypted by openssl enc, not a whole backup'],
  ['PK\x03\x04', 'a zip archive'],
  [[0x37, 0x7a, 0xbc, 0xaf, 0x27, 0x1c], 'a 7-Zip archive'],
  ['\x7fELF', 'an ELF executable'],
  ['QFI\xfb', 'a qcow2 disk image'],
  ['LUKS\xba\xbe', 'a LUKS-encrypted volume'],
];

const startsWith = (b: Uint8Array, m: number[] | string, at = 0): boolean => {
  const want = typeof m === 'string' ? Buffer.from(m, 'latin1') : Buffer.from(m);
  return b.length >= at + want.length && Buffer.from(b.buffer, b.byteOffset + at, want.length).equals(want);
};

/**
 * Why an input whose first tar header could not be read is not a Qubes backup; null when it may be
 * a damaged one (the block's name field names a first member of a backup) or nothing was read.
 */
export function describeNonTarStart(start: StartBlock | undefined): string | null {
  if (start === undefined || start.bytes.length === 0) return null;
  const b = start.bytes;
  const name = Buffer.from(b.subarray(0, Math.min(100, b.length))).toString('latin1').replace(/\0[\s\S]*$/, '');
  if (FIRST_MEMBERS.test(name)) return null;
  const where = start.offset > 0 ? ` (after ${start.offset} zero bytes)` : '';
  for (const [magic, what] of MAGIC) if (startsWith(b, magic)) return `${what}${where}`;
  // ext2/3/4: the superblock at byte 1024, its magic 0xEF53 at byte 56 of it
  if (start.offset === 1024 && startsWith(b, [0x53, 0xef], 56)) return 'an ext2/3/4 filesystem image (such as a VM image)';
  if (startsWith(b, '<?xml')) return `an XML file${where}`;
  const text = utf8Prefix(b);
  if (text !== undefined && /^[\t\n\r\x20-\x7e\u00a0-\uffff]*$/.test(text)) {
    return `text starting ${shownName((text.split(/\r?\n/)[0] ?? '').slice(0, 60))}${where}`;
  }
  const hex = Array.from(b.subarray(0, 8), (x) => x.toString(16).padStart(2, '0')).join(' ');
  return `no tar archive: the data starts with bytes ${hex}${where}`;
}

/** `b` as UTF-8 text, allowing a character cut at the end of the block; undefined if it is not. */
function utf8Prefix(b: Uint8Array): string | undefined {
  for (let cut = 0; cut <= Math.min(3, b.length); cut++) {
    try {
      return new TextDecoder('utf-8', { fatal: true }).decode(b.subarray(0, b.length - cut));
    } catch {
      // try without the last bytes
    }
  }
  return undefined;
}

/** Why a first member that is not `backup-header` (nor an R2-beta3 `qubes.xml.000`) is not a backup. */
export function describeOtherTar(untrustedName: string): string {
  return `a tar archive whose first member is ${shownName(untrustedName)} (a Qubes backup starts with backup-header)`;
}

/** Why an input that ended before its first member is not a backup. */
export function describeNoMember(bytesRead: number): string {
  return bytesRead === 0 ? 'it is empty (0 bytes)' : `it holds nothing but ${bytesRead} zero bytes`;
}

export function notABackup(why: string, cause?: unknown): QvmBackupError {
  return new QvmBackupError('ERR_NOT_A_BACKUP', `not a Qubes backup: ${why}`, {}, cause);
}

/**
 * A directory given as the backup location must be a format 1 backup: `qubes.xml` and the VM
 * directories. A Qubes root has them too; it is told apart by what a format 1 backup (written by
 * R1/R2-beta) cannot hold: an R4 `qubes.xml`, the lock file, `vm-kernels/`. Throws ERR_NOT_A_BACKUP.
 */
export async function checkBackupDirectory(dir: string): Promise<void> {
  const names = await fsp.readdir(dir).catch((e: unknown) => {
    throw new QvmBackupError('ERR_IO', `${dir}: cannot list: ${(e as Error).message}`, { file: dir }, e);
  });
  if (!names.includes('qubes.xml')) {
    const archives = names.filter((n) => /^qubes-backup-/.test(n) || /^qubes-\d{4}-\d\d-\d\d(-|T)\d{6}(-\d+)?$/.test(n)).sort();
    const shown = (list: string[]) => list.slice(0, 5).map(shownName).join(', ') + (list.length > 5 ? `, … (${list.length} in all)` : '');
    if (archives.length > 0) throw notABackup(`${dir} is a directory holding backups (${shown(archives)}): give one of them as the location`);
    throw notABackup(`${dir} is a directory without qubes.xml (${names.length === 0 ? 'it is empty' : `it holds ${shown(names.sort())}`}), so not a format 1 backup`);
  }
  const signs: string[] = [];
  const head = await readHead(path.join(dir, 'qubes.xml'));
  if (/<qubes[\s>]/.test(head) && !/<QubesVmCollection[\s>]/.test(head)) signs.push('qubes.xml in the R4 format');
  else signs.push('qubes.xml');
  for (const n of ['appvms', 'vm-templates', 'vm-kernels', 'qubes.xml.lock']) if (names.includes(n)) signs.push(n === 'qubes.xml.lock' ? n : `${n}/`);
  if (signs[0] !== 'qubes.xml' || names.includes('vm-kernels') || names.includes('qubes.xml.lock')) {
    throw notABackup(`${dir} looks like a Qubes root (${signs.join(', ')}), not a backup: pass it as --qubes-root`);
  }
}

/** The first 4 KiB of a file as text ('' when unreadable: the format 1 reader reports that). */
async function readHead(file: string): Promise<string> {
  let fh: fsp.FileHandle | undefined;
  try {
    if (!(await fsp.lstat(file)).isFile()) return ''; // a FIFO would block the open
    fh = await fsp.open(file, 'r');
    const buf = Buffer.alloc(4096);
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    return buf.subarray(0, bytesRead).toString('latin1');
  } catch {
    return '';
  } finally {
    await fh?.close();
  }
}
