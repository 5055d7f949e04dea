// Isolated extraction of one inner archive (restore-security rule 1): every tar run (or format 1
// copy) writes into a fresh directory of its own, created here, that no other run has touched, so
// a symlink planted by one inner archive can never be written through by another. After the run
// the result is walked with lstat (never stat) and only what the format can contain is accepted;
// then the accepted entries are renamed into the VM's staged directory, which only we write.
import { mkdtempSync, promises as fsp, constants as fsc } from 'node:fs';
import path from 'node:path';
import { QvmBackupError, fail } from '../../errors.js';
import { basenameOfBase, isWholeDirBase, subdirOfBase } from '../../format/archive-names.js';

/** What may be inside an extraction: a VM file, a VM directory archive, or the dom0 home. */
export type ExtractionPolicy = 'vm' | 'home';

/** Upper bounds of one walk: a hostile archive must not make the check itself unbounded. */
const MAX_ENTRIES = 1_000_000;
const MAX_DEPTH = 64;
/** setuid, setgid and sticky bits: never restored. */
const SPECIAL_BITS = 0o7000;

/** Create `<stagingDir>/.x-XXXXXX` (mode 0700) for one inner archive; synchronous: one syscall. */
export function createExtractionDir(stagingDir: string): string {
  try {
    return mkdtempSync(path.join(stagingDir, '.x-'));
  } catch (e) {
    return fail('ERR_IO', `cannot create an extraction directory in ${stagingDir}: ${(e as Error).message}`, { file: stagingDir }, e);
  }
}

export interface CheckOptions {
  /** the chunk base (`vm3/private.img`, `vm9/.`, `dom0-home/user`) whose inner archive was extracted */
  base: string;
  policy: ExtractionPolicy;
  /** VM name for messages */
  vm: string;
  /** the home drops refused entries with a warning instead of failing */
  onWarning?: (message: string) => void;
}

/** What the walk accepted. */
export interface CheckReport {
  files: number;
  dirs: number;
  symlinks: number;
  bytes: number;
  /** entries of the home that were refused and removed */
  dropped: string[];
}

interface Seen {
  rel: string;
  abs: string;
  nlink: number;
}

/**
 * Walk `dir` (a fresh extraction of `base`) with lstat and refuse what the format cannot contain:
 * anything outside `base`, device nodes, FIFOs, sockets, hard links to files outside this
 * extraction, symlinks where a VM file is expected (but the R2 `icon.png`). Strips setuid, setgid
 * and sticky bits. A refusal fails the VM (ERR_UNSAFE_CONTENT naming the entry); in the dom0 home
 * the entry is removed with a warning instead.
 */
export async function checkExtraction(dir: string, o: CheckOptions): Promise<CheckReport> {
  const report: CheckReport = { files: 0, dirs: 0, symlinks: 0, bytes: 0, dropped: [] };
  const subdir = subdirOfBase(o.base); // 'vm3/', 'dom0-home/'
  const leaf = basenameOfBase(o.base); // 'private.img', '.', 'user'
  const wholeDir = isWholeDirBase(o.base);
  const refuse = async (rel: string, abs: string, why: string): Promise<void> => {
    if (o.policy === 'home') {
      await fsp.rm(abs, { recursive: true, force: true });
      report.dropped.push(rel);
      o.onWarning?.(`dom0 home: ${printable(rel)} dropped: ${why}`);
      return;
    }
    fail('ERR_UNSAFE_CONTENT', `${o.vm}: ${printable(rel)} in ${o.base}: ${why}; refusing to restore it`, { vm: o.vm, file: rel });
  };

  // the path down to the archive's root: real directories, nothing beside them
  const chain = subdir.split('/').filter((c) => c !== '');
  let abs = dir;
  let rel = '';
  for (const comp of chain) {
    await onlyEntry(abs, comp, o);
    abs = path.join(abs, comp);
    rel = rel === '' ? comp : `${rel}/${comp}`;
    const st = await lstatOrNull(abs);
    if (st === null || !st.isDirectory()) fail('ERR_UNSAFE_CONTENT', `${o.vm}: ${rel} in ${o.base} is not a directory`, { vm: o.vm, file: rel });
  }
  const links = new Map<string, Seen[]>();
  let count = 0;
  const walk = async (absDir: string, relDir: string, depth: number): Promise<void> => {
    if (depth > MAX_DEPTH) fail('ERR_UNSAFE_CONTENT', `${o.vm}: ${printable(relDir)} in ${o.base} is nested deeper than ${MAX_DEPTH} levels`, { vm: o.vm, file: relDir });
    for (const name of await fsp.readdir(absDir)) {
      if (++count > MAX_ENTRIES) fail('ERR_UNSAFE_CONTENT', `${o.vm}: ${o.base} holds more than ${MAX_ENTRIES} entries`, { vm: o.vm, file: o.base });
      const a = path.join(absDir, name);
      const r = `${relDir}/${name}`;
      await visit(a, r, depth + 1, true);
    }
  };
  /** `inDir`: the entry is inside a directory archive (or the home), where symlinks are kept. */
  const visit = async (a: string, r: string, depth: number, inDir: boolean): Promise<void> => {
    const st = await fsp.lstat(a);
    if (st.isSymbolicLink()) {
      if (!inDir && !(o.policy === 'vm' && leaf === 'icon.png')) return refuse(r, a, 'a symbolic link where a file is expected');
      report.symlinks++; // kept as a link, never followed by us
      return;
    }
    if (st.isDirectory()) {
      await stripSpecialBits(a, st.mode, 'dir');
      report.dirs++;
      return walk(a, r, depth);
    }
    if (st.isFile()) {
      await stripSpecialBits(a, st.mode, 'file');
      if (st.nlink > 1) {
        const key = `${st.dev}:${st.ino}`;
        const list = links.get(key) ?? [];
        list.push({ rel: r, abs: a, nlink: st.nlink });
        links.set(key, list);
      }
      report.files++;
      report.bytes += st.size;
      return;
    }
    return refuse(r, a, `${kindOf(st)} (only regular files, directories and symbolic links can be restored)`);
  };

  if (wholeDir) {
    await walk(abs, rel, chain.length);
  } else {
    await onlyEntry(abs, leaf, o);
    const a = path.join(abs, leaf);
    const st = await lstatOrNull(a);
    if (st === null) fail('ERR_CORRUPT', `${o.vm}: the inner archive of ${o.base} does not contain ${o.base}`, { vm: o.vm, file: o.base });
    // a file member, or (formats 2/3, the home) a directory archive such as apps.templates
    await visit(a, o.base, chain.length + 1, false);
  }
  // a hard link is fine only when all its names are inside this extraction
  for (const names of links.values()) {
    const first = names[0]!;
    if (names.length >= first.nlink) continue;
    for (const n of names) {
      if (await lstatOrNull(n.abs)) await refuse(n.rel, n.abs, `a hard link to a file outside ${o.base}`);
    }
  }
  return report;
}

/** `parent` must hold exactly `name` (tar was asked for one member: anything else is foreign). */
async function onlyEntry(parent: string, name: string, o: CheckOptions): Promise<void> {
  const names = await fsp.readdir(parent);
  const other = names.find((n) => n !== name);
  if (other !== undefined) fail('ERR_UNSAFE_CONTENT', `${o.vm}: unexpected entry ${JSON.stringify(other)} beside ${name} in ${o.base}`, { vm: o.vm, file: other });
}

/** Clear setuid/setgid/sticky through a descriptor opened without following links. */
async function stripSpecialBits(abs: string, mode: number, kind: 'file' | 'dir'): Promise<void> {
  if ((mode & SPECIAL_BITS) === 0) return;
  const flags = fsc.O_RDONLY | fsc.O_NOFOLLOW | fsc.O_NONBLOCK | (kind === 'dir' ? fsc.O_DIRECTORY : 0);
  const fh = await fsp.open(abs, flags);
  try {
    const st = await fh.stat();
    if (kind === 'dir' ? !st.isDirectory() : !st.isFile()) fail('ERR_UNSAFE_CONTENT', `${abs} changed type while it was checked`, { file: abs });
    await fh.chmod(st.mode & 0o777);
  } finally {
    await fh.close();
  }
}

/** An archive's name for messages: control characters (terminal escapes) shown as \xNN. */
export function printable(name: string): string {
  return name.replace(/[\x00-\x1f\x7f-\x9f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

function kindOf(st: { isBlockDevice(): boolean; isCharacterDevice(): boolean; isFIFO(): boolean; isSocket(): boolean }): string {
  if (st.isBlockDevice()) return 'a block device node';
  if (st.isCharacterDevice()) return 'a character device node';
  if (st.isFIFO()) return 'a FIFO';
  if (st.isSocket()) return 'a socket';
  return 'an unknown file type';
}

async function lstatOrNull(p: string): Promise<import('node:fs').Stats | null> {
  try {
    return await fsp.lstat(p);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
}

/**
 * Move the checked content of extraction `dir` into `<stagingDir>/<subdir>`: the entry at `base`
 * (or, for a whole-directory archive, each entry of the directory) is renamed next to what earlier
 * inner archives of the VM left there. Every directory on the way is one we created (lstat-checked:
 * never a symlink); an existing name is never replaced. Then the emptied extraction is removed.
 */
export async function mergeExtraction(dir: string, base: string, stagingDir: string, vm: string): Promise<void> {
  // inner archives of one VM may finish at once: their "is the name free?" check and rename must
  // not interleave (rename would silently replace what the other one just moved in)
  const key = path.join(stagingDir, subdirOfBase(base));
  const run = (merging.get(key) ?? Promise.resolve()).then(() => mergeNow(dir, base, stagingDir, vm));
  const settled = run.catch(() => undefined);
  merging.set(key, settled);
  void settled.then(() => {
    if (merging.get(key) === settled) merging.delete(key);
  });
  return run;
}

/** Merges in progress, by target directory. */
const merging = new Map<string, Promise<void>>();

async function mergeNow(dir: string, base: string, stagingDir: string, vm: string): Promise<void> {
  const chain = subdirOfBase(base).split('/').filter((c) => c !== '');
  let target = stagingDir;
  for (const comp of chain) {
    target = path.join(target, comp);
    try {
      await fsp.mkdir(target, { mode: 0o755 });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    const st = await fsp.lstat(target);
    if (!st.isDirectory()) fail('ERR_UNSAFE_CONTENT', `${vm}: staged ${target} is not a directory`, { vm, file: target });
  }
  const from = path.join(dir, ...chain);
  const names = isWholeDirBase(base) ? await fsp.readdir(from) : [basenameOfBase(base)];
  for (const name of names) {
    const dest = path.join(target, name);
    if ((await lstatOrNull(dest)) !== null) {
      throw new QvmBackupError('ERR_CORRUPT', `${vm}: ${subdirOfBase(base)}${printable(name)} appears twice in the archive (again in ${base})`, { vm, file: base });
    }
    await fsp.rename(path.join(from, name), dest);
  }
  await fsp.rm(dir, { recursive: true, force: true });
}
