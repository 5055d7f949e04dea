// The host's `<qubesRoot>/qubes.xml`: loaded before planning, written back atomically (temp file,
// fsync, rename) after VMs were installed, so a crash never leaves a half-written qubes.xml.
import { constants as fsc } from 'node:fs';
import { lstat, mkdir, open } from 'node:fs/promises';
import path from 'node:path';
import writeFileAtomic from 'write-file-atomic';
import { fail, isQvmBackupError } from '../../errors.js';
import type { QubesXml } from '../../qubes-xml/index.js';
import { emptyR4Host, parseQubesXml, serializeQubesXml } from '../../qubes-xml/index.js';
import { fsyncPath } from './safe-tree.js';

/** File name of the VM collection inside the qubes root. */
export const QUBES_XML_NAME = 'qubes.xml';

/** Path of the host qubes.xml. */
export function hostQubesXmlPath(qubesRoot: string): string {
  return path.join(path.resolve(qubesRoot), QUBES_XML_NAME);
}

/** What is said of a qubes.xml that is not a regular file: it is replaced by a rename, and never
 *  written through a link (Qubes' own save replaces a link; we refuse: a restore before the data). */
function notAFile(file: string): never {
  return fail('ERR_IO', `${file} is a symbolic link or not a regular file: qubes.xml is replaced whole (a rename), never written through a link (put the file itself there)`, { file });
}

/** Parse `<qubesRoot>/qubes.xml`; null if the host has none yet. Errors: ERR_IO, ERR_QUBES_XML. */
export async function loadHostQubesXml(qubesRoot: string): Promise<QubesXml | null> {
  const file = hostQubesXmlPath(qubesRoot);
  let bytes: Buffer;
  try {
    // no link followed, no wait for a FIFO's writer
    const fh = await open(file, fsc.O_RDONLY | fsc.O_NOFOLLOW | fsc.O_NONBLOCK);
    try {
      if (!(await fh.stat()).isFile()) notAFile(file);
      bytes = await fh.readFile();
    } finally {
      await fh.close();
    }
  } catch (e) {
    if (isQvmBackupError(e)) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return null;
    if (code === 'ELOOP') notAFile(file);
    fail('ERR_IO', `cannot read ${file}: ${(e as Error).message}`, { file }, e);
  }
  try {
    return parseQubesXml(bytes);
  } catch (e) {
    // the host's own file, not the archive: a local problem (exit 1), never an integrity failure
    return fail('ERR_IO', `the host collection ${file} cannot be used: ${(e as Error).message}`, { file }, e);
  }
}

/** The host document, or a new empty R4 one when the host has no qubes.xml. */
export async function loadHostQubesXmlOrEmpty(qubesRoot: string): Promise<{ doc: QubesXml; existed: boolean }> {
  const doc = await loadHostQubesXml(qubesRoot);
  return doc === null ? { doc: emptyR4Host(), existed: false } : { doc, existed: true };
}

/**
 * Atomically replace `<qubesRoot>/qubes.xml` with `doc` (null: an empty R4 collection): the file's
 * mode and owner are kept (a new one: 0644); the data and then the directory entry are fsynced;
 * the temp file is removed on failure, and named to `onTempFile` once made (so that a kill -9
 * before the rename leaves it to the next restore's sweep). A link or anything but a regular file
 * there is refused (never written through).
 */
export async function saveHostQubesXml(qubesRoot: string, doc: QubesXml | null, onTempFile?: (tmp: string) => Promise<void>): Promise<void> {
  const file = hostQubesXmlPath(qubesRoot);
  const text = serializeQubesXml(doc ?? emptyR4Host());
  const st = await lstat(file).catch(() => null);
  if (st !== null && !st.isFile()) notAFile(file);
  try {
    await mkdir(path.dirname(file), { recursive: true, mode: 0o755 });
    // (its tmpfileCreated is awaited before the data is written, whatever its types say)
    await writeFileAtomic(file, text, { ...(st === null ? { mode: 0o644 } : {}), fsync: true, encoding: 'utf8', ...(onTempFile ? { tmpfileCreated: onTempFile as (tmp: string) => void } : {}) });
  } catch (e) {
    fail('ERR_IO', `cannot write ${file}: ${(e as Error).message}`, { file }, e);
  }
  // the new file is in place (renamed over the old one): a failure now is not "not written", and
  // the caller must not undo what the file lists (context.landed)
  await fsyncPath(path.dirname(file)).catch((e: unknown) => {
    fail('ERR_IO', `wrote ${file}, but its directory could not be synced (it may be lost in a crash): ${(e as Error).message}`, { file, landed: true }, e);
  });
}
