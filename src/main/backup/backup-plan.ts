// Plans a backup: which VMs, which files of each VM for the format being written (FORMAT.md §7),
// their names inside the archive, and size estimates. Reads only metadata (stat), never data.
import { access, lstat, realpath, stat } from 'node:fs/promises';
import { constants as fsc } from 'node:fs';
import { basename, dirname, join, relative, isAbsolute, resolve } from 'node:path';
import { fail } from '../errors.js';
import type { DomainInfo, QubesXml } from '../qubes-xml/index.js';
import { diskUsage } from './disk-usage.js';
import { didYouMean } from '../qubes-xml/similar-names.js';

export type WriteFormat = 2 | 3 | 4;

/** One inner archive: a file or directory given to `tar -C dir name`, or bytes made in memory. */
export interface BackupFile {
  /** tar -C directory (absent for in-memory files) */
  dir?: string;
  /** name inside `dir` ('.' for a whole directory) */
  name: string;
  /** chunk base and inner member root, e.g. `vm3/private.img`, `vm9/.`, `dom0-home/user`, `qubes.xml` */
  base: string;
  sizeBytes: number;
  dereference: boolean;
  /** the plan saw a regular file there (a link to one followed when `dereference`): one that is
   *  gone or is something else when it is read was changed since, and fails the run */
  regular?: boolean;
  /** a regular file's size and change time when the plan saw it (whether it changed since) */
  planned?: { size: bigint; ctimeNs: bigint };
  /** content of a file made in memory (qubes.xml, the empty placeholder) */
  inMemory?: Uint8Array;
}

export interface VmJob {
  name: string;
  qid: number;
  klass: string;
  /** archive subdir with trailing slash (`vm3/`, `appvms/work/`, `dom0-home/`) */
  subdir: string;
  /** value stored as backup-path / backup_path */
  backupPath: string;
  files: BackupFile[];
  sizeBytes: number;
}

export interface BackupPlanOptions {
  format: WriteFormat;
  encrypted: boolean;
  qubesRoot: string;
  dom0Home: string;
  /** positional VM names (empty = default set) */
  vms: string[];
  exclude: string[];
}

export interface BackupPlan {
  vms: VmJob[];
  /** the dom0 home job, if included (always written last) */
  dom0?: VmJob;
  totalBytes: number;
  warnings: string[];
}

/** Whether `p` exists; a path this user cannot reach (a directory on the way it may not enter) is
 *  said as such, not as missing. */
const exists = (p: string): Promise<boolean> =>
  access(p).then(
    () => true,
    (e: unknown) => {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return false;
      return fail('ERR_IO', `${p} cannot be reached by this user (${code ?? (e as Error).message}): it cannot be backed up`, { file: p }, e);
    },
  );

function isTemplate(d: DomainInfo): boolean {
  return d.klass === 'TemplateVM' || d.legacyClass === 'QubesTemplateVm' || d.legacyClass === 'QubesTemplateHVm';
}

/** An R2/R3 AppVM marked `internal` (the R3 DispVM template): R3 left these out of the default
 *  set. R4 selects by `include_in_backups` alone; its `internal` feature only hides a VM from
 *  menus, and such a VM is backed up. */
function isInternal(d: DomainInfo): boolean {
  if (d.legacyClass === undefined || d.legacyClass === 'QubesTemplateVm' || d.legacyClass === 'QubesTemplateHVm') return false;
  const v = (d.properties['internal'] ?? '').toLowerCase();
  return v === 'true' || v === '1';
}

function isStandalone(d: DomainInfo): boolean {
  return d.klass === 'StandaloneVM' || ((d.legacyClass === 'QubesAppVm' || d.legacyClass === 'QubesHVm') && !d.template);
}

/** Directory of a VM relative to the qubes root (`appvms/work`, `vm-templates/fedora`). */
export function vmRelDir(d: DomainInfo): string {
  if (d.dirPath) {
    const m = /(?:^|\/)((?:appvms|vm-templates|servicevms)\/[^/]+)\/?$/.exec(d.dirPath);
    if (m?.[1]) return m[1];
  }
  const priv = d.volumes.find((v) => v.name === 'private' && v.vid);
  if (priv?.vid) return dirname(priv.vid);
  return `${isTemplate(d) ? 'vm-templates' : 'appvms'}/${d.name}`;
}

/** Resolve `rel` under `root`, refusing anything that escapes it. */
function underRoot(root: string, rel: string): string {
  const p = resolve(root, rel);
  const r = relative(resolve(root), p);
  if (r.startsWith('..') || isAbsolute(r)) fail('ERR_QUBES_XML', `path escapes the qubes root: ${rel}`);
  return p;
}

/** A VM's file as the plan sees it. A FIFO, device or socket is refused (GNU tar would archive it,
 *  and no restore installs one), and anything but a regular file when `regularOnly`. */
async function fileEntry(path: string, base: string, dereference: boolean, vm: string, regularOnly = false): Promise<BackupFile> {
  const own = await lstat(path, { bigint: true });
  const st = dereference && own.isSymbolicLink() ? await stat(path, { bigint: true }).catch(() => own) : own;
  const regular = st.isFile();
  if (!regular && (regularOnly || !(st.isDirectory() || st.isSymbolicLink()))) {
    fail('ERR_IO', `VM ${vm}: ${path} is ${regularOnly ? 'not a regular file' : `a FIFO, device or socket${st === own ? '' : ' (a link to one)'}`}: it cannot be backed up (no restore would install it)`, { vm, file: path });
  }
  if (regular) await readable(path, false, vm);
  const planned = regular ? { regular, planned: { size: st.size, ctimeNs: st.ctimeNs } } : {};
  // (a directory GNU tar archives: everything in it must be readable too)
  return { dir: dirname(path), name: basename(path), base, sizeBytes: await diskUsage(path, dereference, (p, dir) => readable(p, dir, vm)), dereference, ...planned };
}

/** A file (or directory) this run cannot read stops the plan, before anything is written, instead
 *  of failing the backup midway (as "tar failed", after the VMs before it were written). */
async function readable(path: string, dir: boolean, vm: string): Promise<void> {
  // (root reads everything here; the check would only cost a syscall per entry of a big home)
  if (process.getuid?.() === 0) return;
  await access(path, dir ? fsc.R_OK | fsc.X_OK : fsc.R_OK).catch((e: unknown) =>
    fail('ERR_IO', `${vm === 'dom0' ? 'the dom0 home' : `VM ${vm}`}: ${path} cannot be read by this user (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}): it cannot be backed up`, { vm, file: path }, e),
  );
}

async function filesV4(d: DomainInfo, root: string, subdir: string): Promise<BackupFile[]> {
  // an R4 VM names its images in <volume-config>; one without it (a qubes.xml edited by hand or
  // damaged) would be backed up without any data, and exit 0
  if (d.volumes.length === 0 && d.klass !== 'DispVM') fail('ERR_IO', `VM ${d.name} has no <volume-config> in qubes.xml: its images are unknown, and a backup of it would hold none of its data (exclude it with -x ${d.name})`, { vm: d.name });
  const files: BackupFile[] = [];
  const vmDir = underRoot(root, vmRelDir(d));
  for (const v of d.volumes) {
    if (!v.saveOnStop) continue;
    const vid = v.vid ?? `${vmRelDir(d)}/${v.name}`;
    const path = underRoot(root, `${vid}.img`);
    if (!(await exists(path))) fail('ERR_IO', `volume ${v.name} of VM ${d.name} not found: ${path}`, { vm: d.name, file: path });
    const st = await stat(path, { bigint: true });
    if (!st.isFile()) fail('ERR_IO', `volume ${v.name} of VM ${d.name} is not a regular file: ${path}`, { vm: d.name });
    await readable(path, false, d.name);
    // the archive name is always <volume>.img, whatever the file is called
    files.push({ dir: dirname(path), name: basename(path), base: `${subdir}${v.name}.img`, sizeBytes: Number(st.blocks) * 512, dereference: true, regular: true, planned: { size: st.size, ctimeNs: st.ctimeNs } });
  }
  for (const extra of ['firewall.xml', 'notes.txt']) {
    const p = join(vmDir, extra);
    if (await exists(p)) files.push(await fileEntry(p, `${subdir}${extra}`, true, d.name, true));
  }
  if (files.length === 0) files.push({ name: 'empty', base: `${subdir}empty`, sizeBytes: 0, dereference: false, inMemory: new Uint8Array(0) });
  return files;
}

async function filesV23(d: DomainInfo, root: string, subdir: string, format: WriteFormat): Promise<BackupFile[]> {
  const vmDir = underRoot(root, vmRelDir(d));
  if (!(await exists(vmDir))) fail('ERR_IO', `directory of VM ${d.name} not found: ${vmDir}`, { vm: d.name });
  await readable(vmDir, true, d.name);
  const deref = format === 3;
  if (isTemplate(d)) {
    // a TemplateVM is one archive of its whole directory: chunks vmN/..000
    return [{ dir: vmDir, name: '.', base: `${subdir}.`, sizeBytes: await diskUsage(vmDir, deref, (p, dir) => readable(p, dir, d.name)), dereference: deref }];
  }
  const files: BackupFile[] = [];
  const add = async (name: string) => {
    const p = join(vmDir, name);
    if (await exists(p)) files.push(await fileEntry(p, `${subdir}${name}`, deref, d.name));
    return files.length;
  };
  await add('private.img');
  await add('icon.png');
  if (isStandalone(d)) {
    if (await exists(join(vmDir, 'apps.templates'))) await add('apps.templates');
    else await add('apps');
    await add('kernels');
  }
  await add('firewall.xml');
  await add('whitelisted-appmenus.list');
  if (isStandalone(d)) await add('root.img');
  return files;
}

/** Choose the VMs (positional names, else the default set) and list their files. */
export async function planBackup(doc: QubesXml, opts: BackupPlanOptions): Promise<BackupPlan> {
  // format 4 takes a VM's images from its R4 <volume-config>, which an R2/R3 collection has none
  // of: such an archive would hold no VM data at all (and Qubes R4 restores only the R4 schema)
  if (opts.format === 4 && doc.schema !== 'r4') fail('ERR_USAGE', 'this qubes.xml is an R2/R3 collection (<QubesVmCollection>): format 4 needs an R4 qubes.xml (its VMs\' volumes); back it up with --format 3 (or 2), which Qubes R3 (and this tool) restores');
  const warnings: string[] = [];
  const byName = new Map(doc.domains.map((d) => [d.name, d]));
  const unknown = opts.vms.filter((n) => !byName.has(n));
  const names = doc.domains.map((d) => d.name);
  if (unknown.length) fail('ERR_USAGE', `unknown VM${unknown.length > 1 ? 's' : ''}: ${unknown.map((n) => `${n}${didYouMean(n, names)}`).join(', ')}`);
  for (const n of opts.exclude) if (!byName.has(n)) warnings.push(`excluded VM ${n} does not exist${didYouMean(n, names)}`);
  const excluded = new Set(opts.exclude);
  const chosen =
    opts.vms.length > 0
      ? // a VM named twice is backed up once (twice, its chunks would repeat and no restore takes them)
        [...new Set(opts.vms)].map((n) => byName.get(n)!)
      : doc.domains.filter((d) => d.includeInBackups && !isInternal(d));
  const selected = chosen.filter((d) => !excluded.has(d.name));
  const vms: VmJob[] = [];
  let dom0: VmJob | undefined;
  for (const d of selected) {
    if (d.klass === 'AdminVM' || d.qid === 0) {
      const home = resolve(opts.dom0Home);
      if (!(await exists(home))) fail('ERR_USAGE', `dom0 home not found: ${home} (give it with --dom0-home, or leave it out with -x dom0)`);
      // GNU tar would archive the link alone, and a restore would install nothing of the home
      if ((await lstat(home)).isSymbolicLink()) fail('ERR_USAGE', `dom0 home ${home} is a symbolic link: give the directory it points to (--dom0-home ${await realpath(home).catch(() => '<its target>')})`);
      const user = basename(home);
      const file: BackupFile = { dir: dirname(home), name: user, base: `dom0-home/${user}`, sizeBytes: await diskUsage(home, false, (p, dir) => readable(p, dir, 'dom0')), dereference: false };
      dom0 = { name: d.name, qid: d.qid, klass: 'AdminVM', subdir: 'dom0-home/', backupPath: `dom0-home/${user}`, files: [file], sizeBytes: file.sizeBytes };
      continue;
    }
    const plainDirs = opts.format !== 4 && !opts.encrypted;
    const subdir = plainDirs ? `${vmRelDir(d)}/` : `vm${d.qid}/`;
    const files = opts.format === 4 ? await filesV4(d, opts.qubesRoot, subdir) : await filesV23(d, opts.qubesRoot, subdir, opts.format);
    const sizeBytes = files.reduce((a, f) => a + f.sizeBytes, 0);
    const backupPath = opts.format === 4 ? subdir : subdir.replace(/\/$/, '');
    vms.push({ name: d.name, qid: d.qid, klass: d.klass, subdir, backupPath, files, sizeBytes });
  }
  // Qubes R3.2 sorts VMs by name; keep the same stable order for every format
  vms.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const totalBytes = vms.reduce((a, v) => a + v.sizeBytes, 0) + (dom0?.sizeBytes ?? 0);
  if (opts.format !== 4 && doc.schema === 'r4') warnings.push(`format ${opts.format} with an R4 qubes.xml: Qubes R2/R3 restore expects the R2/R3 schema (this tool restores it)`);
  await lstat(opts.qubesRoot);
  return { vms, ...(dom0 ? { dom0 } : {}), totalBytes, warnings };
}
