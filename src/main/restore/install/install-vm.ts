// Installs one restored VM into an R4 file-pool layout: the extracted directory is checked, fsynced
// and renamed to `<qubesRoot>/{vm-templates,appvms}/<newName>/` (never over an existing one), then
// the domain is added to the in-memory host qubes.xml (the caller writes it).
import { lstat, mkdir, realpath, rename, rmdir } from 'node:fs/promises';
import path from 'node:path';
import { QvmBackupError, fail, isQvmBackupError } from '../../errors.js';
import type { DomainInfo, QubesXml } from '../../qubes-xml/index.js';
import { addRestoredDomain, findDomain, isValidVmName, previewRestoredDomain } from '../../qubes-xml/index.js';
import { isTemplateVm } from '../plan/domain-view.js';
import type { VmPlan } from '../plan/restore-plan.js';
import { fsyncPath, isInside, prepareTree } from './safe-tree.js';
import { exitWaitsFor } from '../../io/exit-cleanup.js';
import { checkVmFiles, requiredImages } from './vm-files.js';

type AddOptions = Parameters<typeof addRestoredDomain>[2];

export interface InstallVmArgs {
  vm: VmPlan;
  /** Where the VM's files were extracted: `<staging>/<subdir without trailing slash>`. */
  stagedDir: string;
  qubesRoot: string;
  /** The in-memory host document; gains the new domain. */
  host: QubesXml;
  /** Backup name → new name of every restored VM (references are remapped through it). */
  renames: ReadonlyMap<string, string>;
  hostDefaults?: AddOptions['hostDefaults'];
  /** Leave a default_dispvm naming a not-yet-installed VM of this restore unset (set later). */
  deferDefaultDispvm?: boolean;
  /** Persist `host` once the VM is in it (the host qubes.xml write); a failure moves the files back. */
  commit?: (host: QubesXml) => Promise<void>;
  /** Without `commit`: receives what moves the files back, for a caller that writes qubes.xml
   *  later (once for several VMs) and must undo them all if that write fails. */
  keepUndo?: (undo: () => Promise<void>) => void;
  /** Told the VM's directory before it is created (`intent`) and once it was (`made`): the
   *  installer's journal of directories moved in but not yet in qubes.xml. */
  willCreate?: (target: string, state: 'intent' | 'made' | 'abandoned') => Promise<void>;
  /** The staged files' checks, started earlier (stagedCheck(); the installer runs a group's at
   *  once): awaited here, after the dry run, in place of running them. */
  checked?: Promise<StagedCheck>;
  /** Told the parent directory (`appvms`, `vm-templates`) instead of fsyncing it after the
   *  rename: the caller fsyncs each once for several VMs, before their qubes.xml write. */
  syncParentLater?: (parent: string) => void;
}

/** What stagedCheck() found: whether anything was staged, and the images' sizes. */
export interface StagedCheck {
  stagedExists: boolean;
  volumeSizes?: NonNullable<AddOptions['volumeSizes']>;
}

/** The checks (and fsyncs) of a VM's staged files before it is moved into place: checkStagedVm()
 *  plus the images' sizes. Touches nothing outside the staged directory. */
export async function stagedCheck(qubesRoot: string, stagedDir: string, vm: VmPlan, signal?: AbortSignal): Promise<StagedCheck> {
  const root = path.resolve(qubesRoot);
  const staged = path.resolve(stagedDir);
  if (!isInside(root, staged)) fail('ERR_UNSAFE_NAME', `${vm.newName}: staged files ${staged} are not under ${root}`, { vm: vm.newName });
  let stagedExists: boolean;
  try {
    stagedExists = await checkStagedVm(root, staged, vm, true, signal);
  } catch (e) {
    if (signal?.aborted === true) throw new QvmBackupError('ERR_CANCELLED', `${vm.newName}: its files' check was stopped`, { vm: vm.newName }, e);
    throw e;
  }
  return stagedExists ? { stagedExists, volumeSizes: await imageSizes(staged) } : { stagedExists };
}

/** The directories of the host's VM file pool, under the qubes root: every VM but templates, templates. */
export const VM_PARENTS = ['appvms', 'vm-templates'] as const;

/** Whether `name` (an entry of the qubes root) is one of VM_PARENTS. */
export const isVmParent = (name: string): boolean => (VM_PARENTS as readonly string[]).includes(name);

/** Directory of a VM in the R4 file pool: `<root>/vm-templates/<name>` or `<root>/appvms/<name>`. */
export function vmDirOf(qubesRoot: string, domain: DomainInfo, name: string): string {
  return path.join(path.resolve(qubesRoot), VM_PARENTS[isTemplateVm(domain) ? 1 : 0], name);
}

/** Move one VM's extracted files into place and add it to `host`; returns the new host domain. */
export async function installVm(args: InstallVmArgs): Promise<DomainInfo> {
  try {
    return await installVmUnchecked(args);
  } catch (e) {
    if (isQvmBackupError(e)) throw e;
    return fail('ERR_IO', `${args.vm.newName}: install failed: ${(e as Error).message}`, { vm: args.vm.newName }, e);
  }
}

async function installVmUnchecked(args: InstallVmArgs): Promise<DomainInfo> {
  const { vm, host } = args;
  const name = vm.newName;
  const ctx = { vm: name };
  if (vm.action !== 'restore' || vm.problems.length > 0) fail('ERR_INTERNAL', `${name}: not planned for restore`, ctx);
  if (!isValidVmName(name)) fail('ERR_UNSAFE_NAME', `invalid VM name ${JSON.stringify(name)}`, ctx);
  if (findDomain(host, name) !== undefined) fail('ERR_PLAN', `${name}: a VM with this name already exists on the host`, ctx);

  const root = path.resolve(args.qubesRoot);
  const target = vmDirOf(root, vm.domain, name);
  const parent = path.dirname(target);
  const staged = path.resolve(args.stagedDir);
  if (!isInside(root, target) || path.dirname(parent) !== root) fail('ERR_UNSAFE_NAME', `${name}: target ${target} escapes ${root}`, ctx);
  if (!isInside(root, staged)) fail('ERR_UNSAFE_NAME', `${name}: staged files ${staged} are not under ${root}`, ctx);

  // Dry run (nothing added): unresolvable references or a non-file pool fail before anything moves.
  const opts = addOptions(args);
  checkFilePoolVolumes(previewRestoredDomain(host, vm.domain, opts), root, target);

  const { stagedExists, volumeSizes } = await (args.checked ?? stagedCheck(root, staged, vm));
  if (volumeSizes !== undefined) opts.volumeSizes = volumeSizes;

  await realDirectory(root, parent, name);
  // journaled first as an intent (a kill right after the mkdir leaves an empty directory the
  // next restore's sweep removes), then as made by us: only that is ever removed with content
  await args.willCreate?.(target, 'intent');
  try {
    await exitWaitsFor(mkdir(target, { mode: 0o755 })); // claims the name: fails if anything is there already
  } catch (e) {
    // what is there is not ours: never removed by a forced exit or the next restore's sweep
    await args.willCreate?.(target, 'abandoned').catch(() => undefined);
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') fail('ERR_PLAN', `${name}: ${target} already exists; refusing to overwrite it`, { ...ctx, file: target }, e);
    fail('ERR_IO', `${name}: cannot create ${target}: ${(e as Error).message}`, { ...ctx, file: target }, e);
  }
  try {
    await args.willCreate?.(target, 'made');
  } catch (e) {
    await exitWaitsFor(rmdir(target)).catch(() => undefined);
    fail('ERR_IO', `${name}: cannot note ${target} in the install journal: ${(e as Error).message}`, { ...ctx, file: target }, e);
  }
  if (stagedExists) {
    try {
      await exitWaitsFor(rename(staged, target)); // replaces the empty directory we just created
    } catch (e) {
      await exitWaitsFor(rmdir(target)).catch(() => undefined);
      fail('ERR_IO', `${name}: cannot move ${staged} to ${target}: ${(e as Error).message}`, { ...ctx, file: target }, e);
    }
  }
  if (args.syncParentLater) args.syncParentLater(parent);
  else await fsyncPath(parent);

  try {
    const added = addRestoredDomain(host, vm.domain, opts);
    await args.commit?.(host);
    args.keepUndo?.(() => undo(stagedExists, staged, target));
    return added;
  } catch (e) {
    // never a VM directory that qubes.xml does not list (the caller rolls `host` back)
    await undo(stagedExists, staged, target);
    throw e;
  }
}

/**
 * The options for addRestoredDomain: the run's renames plus this VM's planned template/netVM, so
 * the host gets exactly what the plan says (renamed, host default, or a kept missing reference).
 */
function addOptions(args: InstallVmArgs): AddOptions {
  const { vm } = args;
  const renames = new Map(args.renames);
  const orig = vm.domain;
  if (typeof orig.template === 'string' && typeof vm.template === 'string') renames.set(orig.template, vm.template);
  // vm.netvm undefined with a named original: the plan chose the host default (property dropped)
  if (typeof orig.netvm === 'string' && typeof vm.netvm === 'string') renames.set(orig.netvm, vm.netvm);
  const opts: AddOptions = { newName: vm.newName, renames, ...(args.deferDefaultDispvm ? { deferDefaultDispvm: true } : {}) };
  if (args.hostDefaults !== undefined) {
    const { netvm, ...rest } = args.hostDefaults;
    // a netVM the plan left to the host default must stay unset (follow default_netvm), not be pinned
    const followDefault = typeof orig.netvm === 'string' && vm.netvm === undefined;
    opts.hostDefaults = followDefault || netvm === undefined ? rest : { ...rest, netvm };
  }
  return opts;
}

/** Apparent sizes of the restored images (regular files, checked): the new volumes' sizes. */
async function imageSizes(staged: string): Promise<NonNullable<AddOptions['volumeSizes']>> {
  const out: NonNullable<AddOptions['volumeSizes']> = {};
  for (const vol of ['root', 'private', 'volatile'] as const) {
    const st = await lstat(path.join(staged, `${vol}.img`)).catch(() => null);
    if (st?.isFile() && st.size > 0) out[vol] = st.size;
  }
  return out;
}

/** Refuse a domain whose backed-up volumes would not be the files installed in `dir` (file pool vids). */
function checkFilePoolVolumes(d: DomainInfo, root: string, dir: string): void {
  const rel = path.relative(root, dir).split(path.sep).join('/');
  for (const v of d.volumes) {
    if (!v.saveOnStop) continue;
    if (v.vid !== `${rel}/${v.name}`) {
      fail(
        'ERR_UNSUPPORTED',
        `${d.name}: volume ${v.name} would be ${v.pool ?? '?'}:${v.vid ?? '?'} on the host, not the file ${rel}/${v.name}.img; ` +
          'only the file-pool layout is supported',
        { vm: d.name },
      );
    }
  }
}

/** Create `parent` (`<root>/appvms`) if needed; it must be a real directory, never a symlink. */
async function realDirectory(root: string, parent: string, name: string): Promise<void> {
  await mkdir(root, { recursive: true, mode: 0o755 });
  try {
    await mkdir(parent, { mode: 0o755 });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
  }
  const st = await lstat(parent);
  if (!st.isDirectory()) fail('ERR_UNSAFE_NAME', `${name}: ${parent} is not a directory (a symbolic link?); refusing to install through it`, { vm: name, file: parent });
}

/** True if the staged directory exists; missing is accepted only for a VM without data. */
/**
 * The checks of a VM's staged files before it is installed (restore-security rules 4 and 5): the
 * images it needs are there, regular and of plausible size, no hard link, device node or other
 * special file; symbolic links are dropped. With `flush`, every file is fsynced too. A verification
 * runs the same on its scratch copy (without `flush`). Returns whether anything was staged.
 */
export async function checkStagedVm(root: string, staged: string, vm: VmPlan, flush = true, signal?: AbortSignal): Promise<boolean> {
  const stagedExists = await checkStaged(root, staged, vm);
  if (stagedExists) {
    await checkVmFiles(staged, vm.domain, vm.newName);
    await prepareTree(staged, vm.newName, flush, signal);
  } else if (requiredImages(vm.domain).length > 0) {
    fail('ERR_CORRUPT', `${vm.newName}: no files were extracted for this VM`, { vm: vm.newName, file: staged });
  }
  return stagedExists;
}

async function checkStaged(root: string, staged: string, vm: VmPlan): Promise<boolean> {
  try {
    const st = await lstat(staged);
    if (!st.isDirectory()) fail('ERR_UNSAFE_NAME', `${vm.newName}: ${staged} is not a directory`, { vm: vm.newName, file: staged });
    // no symlinked component (e.g. an extracted `appvms` → /etc) may lead outside the root
    if (!isInside(await realpath(root), await realpath(staged))) {
      fail('ERR_UNSAFE_NAME', `${vm.newName}: ${staged} resolves outside ${root}`, { vm: vm.newName, file: staged });
    }
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    if (vm.sizeBytes > 0) fail('ERR_CORRUPT', `${vm.newName}: no files were extracted for this VM`, { vm: vm.newName, file: staged });
    return false;
  }
}

/** Put the files back where they were after a failed qubes.xml update. */
async function undo(stagedExists: boolean, staged: string, target: string): Promise<void> {
  try {
    if (stagedExists) await exitWaitsFor(rename(target, staged));
    else await exitWaitsFor(rmdir(target));
  } catch {
    // leave it: the caller reports the original error; the directory is not in qubes.xml
  }
}
