// Which files an included VM must have in the archive, derived from the authenticated qubes.xml
// (FORMAT.md §7.2): at least one complete inner archive per VM, and in format 4 one `<vol>.img`
// per backed-up (save_on_stop) private/root volume.
import { DOM0_HOME_SUBDIR, dom0UserOf, vmSubdirOf } from '../plan/backup-subdir.js';
import type { DomainInfo, QubesXml } from '../../qubes-xml/types.js';

/** Archive subdir of an included domain's backup path, or null when not included / malformed. */
export function subdirOfDomain(d: DomainInfo): string | null {
  if (d.backup?.content !== true || d.backup.path === undefined) return null;
  if (dom0UserOf(d.backup.path) !== null) return DOM0_HOME_SUBDIR;
  return vmSubdirOf(d.backup.path);
}

/** Included domains by archive subdir. */
export function includedDomainsBySubdir(xml: QubesXml): Map<string, DomainInfo> {
  const out = new Map<string, DomainInfo>();
  for (const d of xml.domains) {
    const s = subdirOfDomain(d);
    if (s !== null) out.set(s, d);
  }
  return out;
}

/** Chunk bases (`vm3/private.img`) that must be present and complete for `d` stored under `subdir`. */
export function requiredBases(d: DomainInfo | undefined, subdir: string, version: 1 | 2 | 3 | 4): string[] {
  if (d === undefined || version !== 4 || subdir === DOM0_HOME_SUBDIR) return [];
  return d.volumes.filter((v) => v.saveOnStop && (v.name === 'private' || v.name === 'root')).map((v) => `${subdir}${v.name}.img`);
}
