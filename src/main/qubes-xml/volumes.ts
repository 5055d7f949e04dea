// R4 volume-config for restored VMs: synthesise the standard volumes (root, private, volatile,
// kernel) in the host's default pool, or carry over a backed-up volume-config with its vids
// renamed and moved to a host pool when the original pool does not exist there.
import { findDomain, stateOf } from './document.js';
import type { QubesXml } from './types.js';
import { child, decodedAttrs, elements, makeElement, type XNode } from './xml-tree.js';

const GiB = 1024 * 1024 * 1024;
const KNOWN_DRIVERS = new Set(['file', 'file-reflink', 'lvm_thin']);
const ATTR_ORDER = ['name', 'pool', 'revisions_to_keep', 'rw', 'save_on_stop', 'snap_on_start', 'size', 'source', 'vid'];

interface Pool {
  name: string;
  driver: string;
  attrs: Record<string, string>;
}

function hostPools(host: QubesXml): Pool[] {
  const pools = child(stateOf(host).root, 'pools');
  if (!pools) return [];
  return elements(pools, 'pool').map((p) => {
    const attrs = decodedAttrs(p);
    return { name: attrs['name'] ?? '', driver: attrs['driver'] ?? '', attrs };
  });
}

/** The host pool a new volume goes to: default_pool_<vol>, default_pool, varlibqubes, any non-kernel pool. */
function pickPool(host: QubesXml, vol: string): Pool {
  const pools = hostPools(host);
  if (vol === 'kernel') return pools.find((p) => p.driver === 'linux-kernel') ?? { name: 'linux-kernel', driver: 'linux-kernel', attrs: {} };
  const g = host.globalProperties;
  for (const want of [g[`default_pool_${vol}`], g['default_pool'], 'varlibqubes']) {
    const p = want ? pools.find((x) => x.name === want) : undefined;
    if (p) return p;
  }
  return pools.find((p) => p.driver !== 'linux-kernel') ?? { name: 'varlibqubes', driver: 'file', attrs: {} };
}

/** The vid Qubes gives volume `vol` of VM `name` in `pool`. */
function vidFor(pool: Pool, name: string, klass: string, vol: string): string {
  if (pool.driver === 'lvm_thin') return `${pool.attrs['volume_group'] ?? 'qubes_dom0'}/vm-${name}-${vol}`;
  return `${klass === 'TemplateVM' ? 'vm-templates' : 'appvms'}/${name}/${vol}`;
}

/** Rewrite the VM-name parts of a vid (`appvms/old/private`, `vg/vm-old-private`). */
export function renameVid(vid: string, oldName: string, newName: string): string {
  return vid
    .split('/')
    .map((c) => (c === oldName ? newName : c.startsWith(`vm-${oldName}-`) ? `vm-${newName}-${c.slice(oldName.length + 4)}` : c))
    .join('/');
}

function volumeElement(attrs: Record<string, string>): XNode {
  const ordered: Record<string, string> = {};
  for (const k of ATTR_ORDER) if (attrs[k] !== undefined) ordered[k] = attrs[k]!;
  for (const [k, v] of Object.entries(attrs)) if (!(k in ordered)) ordered[k] = v;
  return makeElement('volume', ordered);
}

export interface VolumePlan {
  name: string;
  klass: string;
  /** value of the new domain's `kernel` property, if it sets one */
  kernel?: string;
}

/** Standard volumes of a new VM of the class, as `<volume>` elements. */
export function synthesizeVolumes(host: QubesXml, vm: VolumePlan): XNode[] {
  if (vm.klass === 'AdminVM') return [];
  const own = vm.klass === 'TemplateVM' || vm.klass === 'StandaloneVM';
  const disp = vm.klass === 'DispVM';
  const out: XNode[] = [];
  const add = (vol: string, a: Record<string, string>) => {
    const pool = pickPool(host, vol);
    const vid = vol === 'kernel' ? a['vid']! : vidFor(pool, vm.name, vm.klass, vol);
    out.push(volumeElement({ name: vol, pool: pool.name, ...a, vid }));
  };
  add('root', own ? { rw: 'True', save_on_stop: 'True', size: String(10 * GiB) } : { snap_on_start: 'True', size: String(10 * GiB) });
  add('private', disp ? { snap_on_start: 'True', size: String(2 * GiB) } : { rw: 'True', save_on_stop: 'True', size: String(2 * GiB) });
  add('volatile', { rw: 'True', size: String(10 * GiB) });
  // kernel: the VM's own choice ('' = none) or the host default; unknown → left to qubesd
  const kernel = vm.kernel ?? host.globalProperties['default_kernel'];
  if (kernel !== undefined) add('kernel', { vid: kernel });
  return out;
}

/**
 * Copy backed-up `<volume>`s (size, flags…) for the renamed VM. A volume whose pool the host lacks
 * moves to the host's pool for it; vids are those Qubes gives the new VM (renamed for unknown
 * pool drivers); `source` (snapshot origin) follows the host's template volume,
 * else the template's rename, and is dropped when the volume changed pool.
 */
export function carryVolumes(
  host: QubesXml,
  vols: Record<string, string>[],
  oldName: string,
  vm: VolumePlan,
  template?: { old?: string; new?: string },
): XNode[] {
  const pools = hostPools(host);
  const have = new Set(pools.map((p) => p.name));
  const tpl = template?.new ? findDomain(host, template.new) : undefined;
  return vols.map((a0) => {
    const a = { ...a0 };
    const vol = a['name'] ?? '';
    if (vol === 'kernel') {
      if (!have.has(a['pool'] ?? '')) a['pool'] = pickPool(host, 'kernel').name;
      return volumeElement(a);
    }
    const hostPool = pools.find((p) => p.name === a['pool']);
    const moved = hostPool === undefined;
    const pool = hostPool ?? pickPool(host, vol);
    a['pool'] = pool.name;
    // known drivers get the vid Qubes would give the new VM; others have the name replaced
    if (moved || KNOWN_DRIVERS.has(pool.driver)) a['vid'] = vidFor(pool, vm.name, vm.klass, vol);
    else if (a['vid'] !== undefined) a['vid'] = renameVid(a['vid'], oldName, vm.name);
    if (a['source'] !== undefined) {
      const tv = tpl?.volumes.find((v) => v.name === vol)?.vid;
      if (tv !== undefined) a['source'] = tv;
      else if (moved) delete a['source'];
      else if (template?.old && template.new) a['source'] = renameVid(a['source'], template.old, template.new);
    }
    return volumeElement(a);
  });
}
