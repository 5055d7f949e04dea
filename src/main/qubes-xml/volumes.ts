// R4 volume-config of a restored VM, generated for the file-pool layout the restore installs:
// only root/private/volatile/kernel, vids `appvms/<name>/<vol>` or `vm-templates/<name>/<vol>` in a
// host file pool, flags from the class (as Qubes R4.2 sets them), `source` only ever the VM's own
// template's volume. Nothing (vid, source, pool, path, flag) is taken from the backup.
import { fail } from '../errors.js';
import { findDomain, stateOf } from './document.js';
import { checkKernel } from './restore-props.js';
import type { DomainInfo, QubesXml, VolumeInfo } from './types.js';
import { child, decodedAttrs, elements, makeElement, type XNode } from './xml-tree.js';

const GiB = 1024 * 1024 * 1024;
/** Largest volume size accepted from a backup (16 TiB). */
export const MAX_VOLUME_BYTES = 16 * 1024 * GiB;
/** The only volume names a restored VM gets. */
export const VOLUME_NAMES = ['root', 'private', 'volatile', 'kernel'] as const;
export type SizedVolume = 'root' | 'private' | 'volatile';
/** Pool drivers that keep `<dir_path>/<vid>.img` files, the layout the restore writes. */
export const FILE_DRIVERS: readonly string[] = ['file', 'file-reflink'];

const ATTR_ORDER = ['name', 'pool', 'rw', 'save_on_stop', 'snap_on_start', 'size', 'source', 'vid'];

interface Pool {
  name: string;
  driver: string;
  dirPath?: string;
}

/** The host's `<pools>`. */
export function hostPools(host: QubesXml): Pool[] {
  const pools = child(stateOf(host).root, 'pools');
  if (!pools) return [];
  return elements(pools, 'pool').map((p) => {
    const a = decodedAttrs(p);
    return { name: a['name'] ?? '', driver: a['driver'] ?? '', ...(a['dir_path'] !== undefined ? { dirPath: a['dir_path'] } : {}) };
  });
}

/**
 * The file pool restored VMs go to: `varlibqubes` (Qubes' pool for /var/lib/qubes), else a file
 * pool at /var/lib/qubes, else the first file pool. ERR_UNSUPPORTED when the host has none.
 */
export function restorePool(host: QubesXml): Pool {
  const file = hostPools(host).filter((p) => p.name !== '' && FILE_DRIVERS.includes(p.driver));
  const p = file.find((x) => x.name === 'varlibqubes') ?? file.find((x) => x.dirPath?.replace(/\/+$/, '') === '/var/lib/qubes') ?? file[0];
  return p ?? fail('ERR_UNSUPPORTED', 'the host qubes.xml has no file pool (driver file): only the file-pool layout is supported');
}

/** The vid a VM's volume has in a file pool. */
export function fileVid(klass: string, name: string, vol: string): string {
  return `${klass === 'TemplateVM' ? 'vm-templates' : 'appvms'}/${name}/${vol}`;
}

/** A size from a backup or a caller: a positive integer of at most 16 TiB, else undefined. */
export function saneSize(n: number | undefined): number | undefined {
  return n !== undefined && Number.isSafeInteger(n) && n > 0 && n <= MAX_VOLUME_BYTES ? n : undefined;
}

export interface VolumeSpec {
  /** new name and class of the VM (already checked) */
  name: string;
  klass: string;
  /** the VM's checked `kernel` property, if it sets one ('' = none) */
  kernel?: string;
  /** host name of the VM's template, if it has one */
  template?: string;
  /** sizes to use (restored files, else sane backed-up sizes); Qubes' defaults otherwise */
  sizes: Partial<Record<SizedVolume, number>>;
}

/** Per class: volume → [flags, Qubes' default size]. DispVMs snapshot root and private. */
function layout(klass: string): Record<SizedVolume, [Record<string, string>, number]> {
  const own = { rw: 'True', save_on_stop: 'True' };
  const snap = { rw: 'True', snap_on_start: 'True' };
  if (klass === 'TemplateVM' || klass === 'StandaloneVM') return { root: [own, 10 * GiB], private: [own, 2 * GiB], volatile: [{ rw: 'True' }, 10 * GiB] };
  if (klass === 'DispVM') return { root: [snap, 10 * GiB], private: [snap, 2 * GiB], volatile: [{ rw: 'True' }, 12 * GiB] };
  if (klass === 'AppVM') return { root: [snap, 10 * GiB], private: [own, 2 * GiB], volatile: [{ rw: 'True' }, 10 * GiB] };
  return fail('ERR_PLAN', `VM class ${JSON.stringify(klass)} cannot be restored`);
}

function volumeElement(attrs: Record<string, string>): XNode {
  const ordered: Record<string, string> = {};
  for (const k of ATTR_ORDER) if (attrs[k] !== undefined) ordered[k] = attrs[k]!;
  return makeElement('volume', ordered);
}

/** The `<volume>` elements of a restored VM. */
export function restoredVolumes(host: QubesXml, vm: VolumeSpec): XNode[] {
  const pool = restorePool(host);
  const tpl = vm.template !== undefined ? findDomain(host, vm.template) : undefined;
  const out: XNode[] = [];
  for (const [vol, [flags, dflt]] of Object.entries(layout(vm.klass)) as [SizedVolume, [Record<string, string>, number]][]) {
    const a: Record<string, string> = { name: vol, pool: pool.name, ...flags };
    const tv = flags['snap_on_start'] && tpl ? tpl.volumes.find((v) => v.name === vol) : undefined;
    // a snapshot of its template's volume has that volume's size (the template may not be the
    // one the VM was backed up with), as Qubes gives it
    a['size'] = String(saneSize(tv?.size) ?? saneSize(vm.sizes[vol]) ?? dflt);
    // the snapshot origin: the template's own volume in the same pool, or left to Qubes (it
    // takes the template's volume when `source` is absent)
    if (tv && tpl && tv.pool === pool.name && tv.vid === fileVid(tpl.klass, tpl.name, vol)) a['source'] = tv.vid;
    a['vid'] = fileVid(vm.klass, vm.name, vol);
    out.push(volumeElement(a));
  }
  // kernel: the VM's own choice ('' = none), else its template's, else the host default (as
  // Qubes resolves the kernel property), in the host's kernel pool
  const kpool = hostPools(host).find((p) => p.driver === 'linux-kernel' && p.name !== '');
  const inherited = [tpl?.properties['kernel'], host.globalProperties['default_kernel']].find((k) => k !== undefined);
  const kernel = vm.kernel ?? (inherited !== undefined ? checkKernel(inherited) : undefined);
  if (kpool && kernel !== undefined) out.push(volumeElement({ name: 'kernel', pool: kpool.name, vid: kernel }));
  return out;
}

/**
 * Why volume `v` of host VM `d` would not be what it claims (undefined: fine): its pool must exist;
 * in a file pool it must be root/private/volatile with the vid of the VM's own directory and a
 * `source` only from its own template's volume; in the kernel pool a kernel name.
 */
export function volumeProblem(host: QubesXml, d: DomainInfo, v: VolumeInfo, byName: ReadonlyMap<string, DomainInfo>): string | undefined {
  const what = `volume ${JSON.stringify(v.name)}`;
  const pool = hostPools(host).find((p) => p.name === v.pool);
  if (pool === undefined) return `${what}: pool ${JSON.stringify(v.pool ?? '')} is not a pool of this host`;
  if (pool.driver === 'linux-kernel') {
    return v.name === 'kernel' && checkKernel(v.vid ?? '') !== undefined ? undefined : `${what}: not a kernel volume`;
  }
  if (!FILE_DRIVERS.includes(pool.driver)) return undefined;
  if (!['root', 'private', 'volatile'].includes(v.name)) return `${what}: not a volume name Qubes uses`;
  if (v.vid !== fileVid(d.klass, d.name, v.name)) return `${what}: vid ${JSON.stringify(v.vid ?? '')} is not in the VM's own directory`;
  const source = v.attrs['source'];
  if (source !== undefined) {
    const t = typeof d.template === 'string' ? byName.get(d.template) : undefined;
    if (!v.snapToClone || t === undefined || source !== fileVid(t.klass, t.name, v.name)) return `${what}: source ${JSON.stringify(source)} is not its template's ${v.name} volume`;
  }
  return undefined;
}
