// Format 1 (FORMAT.md §2.1): a backup directory holding qubes.xml and the VM directories as plain
// copies. qubes.xml is read directly; selected VM directories are copied into staging with
// `cp -a --sparse=always`, never following a path outside the backup directory.
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { runShort } from '../../io/spawn.js';
import { QvmBackupError, fail, isQvmBackupError } from '../../errors.js';
import { QUBES_XML_MAX_BYTES } from '../../format/limits.js';
import { DOM0_HOME_SUBDIR } from '../plan/backup-subdir.js';
import { checkExtraction, createExtractionDir, mergeExtraction } from './extraction.js';
import { checkBackupDirectory } from './not-a-backup.js';
import type { RestoreDataResult, RestoreSelection, VmRestoreResult } from './types.js';

/** True if `dir` looks like a format 1 backup (a directory containing qubes.xml). */
export async function isV1BackupDir(dir: string): Promise<boolean> {
  try {
    return (await fsp.stat(dir)).isDirectory() && (await fsp.lstat(path.join(dir, 'qubes.xml'))).isFile();
  } catch {
    return false;
  }
}

/** Read `<dir>/qubes.xml` (≤ 1 MiB, a regular file). */
export async function readV1(dir: string): Promise<{ qubesXmlBytes: Buffer; version: 1 }> {
  await checkBackupDirectory(dir); // a Qubes root is no backup
  const file = path.join(dir, 'qubes.xml');
  let st;
  try {
    st = await fsp.lstat(file);
  } catch (e) {
    fail('ERR_IO', `${file}: cannot read: ${(e as Error).message}`, { file }, e);
  }
  if (!st.isFile()) fail('ERR_CORRUPT', `${file} is not a regular file`, { file });
  if (st.size > QUBES_XML_MAX_BYTES) fail('ERR_TOO_LARGE', `${file} is ${st.size} bytes, limit ${QUBES_XML_MAX_BYTES}`, { file });
  return { qubesXmlBytes: await fsp.readFile(file), version: 1 };
}

/** Copy each selected `<dir>/<subdir>` to `<stagingDir>/<subdir>` (verify-only: check it exists). */
export async function restoreV1(
  dir: string,
  selection: RestoreSelection,
  opts: { verifyOnly?: boolean; signal?: AbortSignal; onVmDone?: (vm: string, ok: boolean, err?: unknown) => void; onWarning?: (message: string) => void } = {},
): Promise<RestoreDataResult> {
  const root = await fsp.realpath(dir);
  const vms = new Map<string, VmRestoreResult>();
  for (const [subdir, entry] of selection) {
    const r: VmRestoreResult = { vm: entry.vm, subdir, ok: true, files: [], bytesRestored: 0 };
    try {
      const rel = checkSubdir(subdir);
      const src = path.join(root, rel);
      const real = await fsp.realpath(src).catch((e: unknown) => fail('ERR_CORRUPT', `no data for ${entry.vm}: ${rel} is missing in the backup`, { vm: entry.vm }, e));
      if (real !== src || !(await fsp.stat(real)).isDirectory()) fail('ERR_UNSAFE_NAME', `${rel} is not a plain directory inside the backup`, { vm: entry.vm, file: rel });
      if (!opts.verifyOnly) {
        // like an inner archive: copied into a fresh directory of its own, checked, then merged
        const fresh = createExtractionDir(entry.stagingDir);
        const dest = path.join(fresh, rel);
        await fsp.mkdir(path.dirname(dest), { recursive: true });
        // not -a: the backup directory's owners, modes beyond rwx and xattrs (file capabilities) stay behind
        // as long as the VM is big: no timeout, the run's signal stops it
        await runShort('cp', ['-dR', '--preserve=timestamps,links', '--sparse=always', '--', src, dest], { timeout: null, ...(opts.signal ? { signal: opts.signal } : {}), what: `copying ${rel} failed`, context: { vm: entry.vm } });
        const base = `${rel}/.`;
        await checkExtraction(fresh, { base, policy: subdir === DOM0_HOME_SUBDIR ? 'home' : 'vm', vm: entry.vm, ...(opts.onWarning ? { onWarning: opts.onWarning } : {}) });
        await mergeExtraction(fresh, base, entry.stagingDir, entry.vm);
      }
      r.files.push(rel);
      opts.onVmDone?.(entry.vm, true);
    } catch (e) {
      if (opts.signal?.aborted) throw new QvmBackupError('ERR_CANCELLED', 'restore cancelled', {}, e);
      r.ok = false;
      r.error = isQvmBackupError(e) ? e : new QvmBackupError('ERR_IO', String(e), { vm: entry.vm }, e);
      opts.onVmDone?.(entry.vm, false, r.error);
    }
    vms.set(subdir, r);
  }
  return { ok: [...vms.values()].every((v) => v.ok), vms, bytesRead: 0, bytesRestored: 0 };
}

/** `appvms/work/` → `appvms/work`; refuses absolute paths, '.', '..' and empty components. */
function checkSubdir(subdir: string): string {
  const rel = subdir.endsWith('/') ? subdir.slice(0, -1) : subdir;
  const parts = rel.split('/');
  if (rel === '' || rel.startsWith('/') || parts.some((p) => p === '' || p === '.' || p === '..') || /[\0\n]/.test(rel)) {
    fail('ERR_UNSAFE_NAME', `unsafe backup path ${JSON.stringify(subdir)}`, { file: subdir });
  }
  return rel;
}
