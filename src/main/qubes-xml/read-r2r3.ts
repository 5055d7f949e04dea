// Reads the R1–R3 schema (root `<QubesVmCollection>`, FORMAT.md §8.2) into the model, with the
// same conversions the Qubes R4 restore client (`Core2Qubes`) applies: qids resolved to names,
// classes mapped, `services` → features, HVM extras, dispvm_netvm → synthetic `disp-*` templates.
import { fail } from '../errors.js';
import { featureValue, parsePyLiteral, type PyValue } from './py-literal.js';
import { checkedBackupSize } from './read-r4.js';
import type { DeviceInfo, DomainInfo } from './types.js';
import { decodedAttrs, elements, setKey, tagOf, type XNode } from './xml-tree.js';

/** Element tags that hold a VM. */
export const LEGACY_CLASSES = [
  'QubesAdminVm',
  'QubesTemplateVm',
  'QubesTemplateHVm',
  'QubesAppVm',
  'QubesHVm',
  'QubesNetVm',
  'QubesProxyVm',
  'QubesDisposableVm',
] as const;

const SERVICE_TO_FEATURE: Record<string, string> = {
  ntpd: 'service.ntpd',
  'qubes-update-check': 'check-updates',
  'meminfo-writer': 'service.meminfo-writer',
};

const isNone = (v: string | undefined) => v === undefined || v.toLowerCase() === 'none';

/** The dom0 the R4 client synthesises for old R2 files without a `QubesAdminVm` element. */
export function synthesizedDom0(): DomainInfo {
  return {
    qid: 0,
    name: 'dom0',
    klass: 'AdminVM',
    legacyClass: 'QubesAdminVm',
    label: 'black',
    providesNetwork: false,
    includeInBackups: true,
    installedByRpm: false,
    volumes: [],
    properties: {},
    features: {},
    tags: [],
    devices: [],
  };
}

function legacyFeatures(tag: string, a: Record<string, string>, hasTemplate: boolean, vm: string): Record<string, string> {
  const f: Record<string, string> = {};
  if (tag.includes('HVm')) f['linux-stubdom'] = '';
  if (tag === 'QubesTemplateVm' || (tag === 'QubesAppVm' && !hasTemplate)) {
    f['qrexec'] = '1';
    f['gui'] = '1';
  }
  if (a['internal'] === 'True') f['internal'] = '1';
  if (a['services']) {
    const services = parsePyLiteral(a['services'], `VM ${vm}: services`);
    if (services === null || typeof services !== 'object' || Array.isArray(services)) fail('ERR_QUBES_XML', `qubes.xml: VM ${vm}: services is not a dict`, { vm });
    for (const [k, v] of services.entries) {
      const name = String(k);
      setKey(f, SERVICE_TO_FEATURE[name] ?? name, featureValue(v));
    }
  }
  return f;
}

function legacyDevices(a: Record<string, string>, vm: string): DeviceInfo[] {
  if (!a['pcidevs']) return [];
  const list: PyValue = parsePyLiteral(a['pcidevs'], `VM ${vm}: pcidevs`);
  if (!Array.isArray(list)) fail('ERR_QUBES_XML', `qubes.xml: VM ${vm}: pcidevs is not a list`, { vm });
  // The R4 client never sets no-strict-reset here: it tests the *string* pci_strictreset for
  // truthiness, so "False" counts as true. The Qubes-made fixtures confirm options stay empty.
  return list.map((p) => ({ bus: 'pci', backend: 'dom0', port: String(p).replace(/:/g, '_'), options: {}, attrs: {} }));
}

/** Domains (with their elements; the synthesised dom0 has none) and globals of an R2/R3 document. */
export function readR2R3(root: XNode): { domains: { info: DomainInfo; node?: XNode }[]; globals: Record<string, string> } {
  const vmNodes = elements(root).filter((n) => (LEGACY_CLASSES as readonly string[]).includes(tagOf(n)!));
  const qidMap = new Map<number, string>();
  const seen = new Set<number>();
  const parsed = vmNodes.map((node) => {
    const a = decodedAttrs(node);
    const tag = tagOf(node)!;
    const name = a['name'];
    if (!name) fail('ERR_QUBES_XML', `qubes.xml: ${tag} without a name`);
    if (!/^[0-9]{1,9}$/.test(a['qid'] ?? '')) fail('ERR_QUBES_XML', `qubes.xml: VM ${name} has no valid qid`, { vm: name });
    const qid = Number(a['qid']);
    if (seen.has(qid)) fail('ERR_QUBES_XML', `qubes.xml: qid ${qid} is used twice`, { vm: name });
    seen.add(qid);
    if (tag !== 'QubesDisposableVm') qidMap.set(qid, name);
    return { node, a, tag, name, qid };
  });
  const nameOf = (q: string | undefined): string | undefined => (q !== undefined && /^[0-9]{1,9}$/.test(q) ? qidMap.get(Number(q)) : undefined);

  const ra = decodedAttrs(root);
  const globals: Record<string, string> = {};
  for (const [k, v] of Object.entries(ra)) {
    const isRef = ['default_template', 'default_netvm', 'default_fw_netvm', 'updatevm', 'clockvm'].includes(k);
    setKey(globals, k, isRef ? (isNone(v) ? '' : nameOf(v) ?? '') : v);
  }
  const defaultNetvm = globals['default_netvm'] ? globals['default_netvm'] : null;

  const domains: { info: DomainInfo; node?: XNode }[] = [];
  if (!qidMap.has(0)) domains.push({ info: synthesizedDom0() });
  for (const { node, a, tag, name, qid } of parsed) {
    const isAdmin = tag === 'QubesAdminVm' || qid === 0;
    let klass: string;
    let template: string | undefined;
    if (tag === 'QubesTemplateVm' || tag === 'QubesTemplateHVm') klass = 'TemplateVM';
    else if (isAdmin) klass = 'AdminVM';
    else {
      if (!isNone(a['template_qid'])) {
        template = nameOf(a['template_qid']);
        if (template === undefined) fail('ERR_QUBES_XML', `qubes.xml: VM ${name}: template_qid ${a['template_qid']} does not exist`, { vm: name });
      }
      klass = tag === 'QubesDisposableVm' ? 'DispVM' : template === undefined ? 'StandaloneVM' : 'AppVM';
    }
    const info: DomainInfo = {
      qid,
      name,
      klass,
      legacyClass: tag,
      label: a['label'] ?? (isAdmin ? 'black' : 'red'),
      providesNetwork: tag === 'QubesNetVm' || tag === 'QubesProxyVm',
      // R2/R3 DisposableVMs are transient (no directory): never in a backup
      includeInBackups: isAdmin || (tag !== 'QubesDisposableVm' && a['include_in_backups'] !== 'False'),
      installedByRpm: a['installed_by_rpm'] === 'True',
      volumes: [],
      properties: a,
      features: isAdmin || klass === 'DispVM' ? {} : legacyFeatures(tag, a, template !== undefined, name),
      tags: [],
      devices: isAdmin || klass === 'DispVM' ? [] : legacyDevices(a, name),
    };
    if (template !== undefined) info.template = template;
    if (a['dir_path'] !== undefined) info.dirPath = a['dir_path'];

    // netvm: NetVMs have none; an explicit choice only when uses_default_netvm is not "True"
    if (tag === 'QubesNetVm') info.netvm = null;
    if (a['uses_default_netvm'] !== undefined && a['uses_default_netvm'] !== 'True') {
      const q = a['netvm_qid'];
      if (isNone(q)) info.netvm = null;
      else if (nameOf(q) !== undefined) info.netvm = nameOf(q)!;
      // a dangling netvm_qid is ignored, as the R4 client does (it logs and goes on)
    }

    // DispVM netvm → default_dispvm `disp-<netvm>` / `disp-no-netvm` (R4 client)
    if (klass !== 'DispVM') {
      let dispNet: string | null | undefined;
      if (a['uses_default_dispvm_netvm'] !== undefined && a['uses_default_dispvm_netvm'] !== 'True') {
        // the R4 client reads `dispvm_netvm_qid`; R3 itself stores `dispvm_netvm`: accept both
        const q = a['dispvm_netvm_qid'] ?? a['dispvm_netvm'];
        dispNet = isNone(q) ? null : nameOf(q);
      } else {
        dispNet = info.netvm !== undefined ? info.netvm : defaultNetvm;
      }
      if (dispNet !== undefined && dispNet !== defaultNetvm) info.defaultDispvm = dispNet ? `disp-${dispNet}` : 'disp-no-netvm';
    }

    if (a['backup_content'] !== undefined || a['backup_path'] !== undefined || a['backup_size'] !== undefined) {
      const content = a['backup_content'] === 'True';
      info.backup = { content };
      if (a['backup_path'] !== undefined) info.backup.path = a['backup_path'];
      const size = checkedBackupSize(name, a['backup_size'], content);
      if (size !== undefined) info.backup.size = size;
    }
    domains.push({ info, node });
  }
  return { domains, globals };
}

/**
 * The DVM templates the R4 client adds for R2/R3 backups (one per distinct non-default DispVM
 * netvm, named `disp-<netvm>` or `disp-no-netvm`): AppVMs with template_for_dispvms, label red,
 * counted as included in the backup but with no data. They are not in the XML; qid is -1.
 */
export function legacyDispvmTemplates(domains: DomainInfo[]): DomainInfo[] {
  const names = new Set(domains.map((d) => d.name));
  const out: DomainInfo[] = [];
  for (const d of domains) {
    const t = d.defaultDispvm;
    if (!d.legacyClass || !t || names.has(t)) continue;
    names.add(t);
    out.push({
      qid: -1,
      name: t,
      klass: 'AppVM',
      label: 'red',
      netvm: t === 'disp-no-netvm' ? null : t.slice('disp-'.length),
      providesNetwork: false,
      includeInBackups: true,
      installedByRpm: false,
      volumes: [],
      properties: { template_for_dispvms: 'True' },
      features: {},
      tags: [],
      devices: [],
      backup: { content: true },
    });
  }
  return out;
}

/**
 * What happens instead of the R4 client's `disp-<netvm>` template for R2/R3 VM `d` (undefined: no
 * such template asked for). The template is not created (it would be a new networked VM the
 * backup does not hold and nobody selected); the VM's default_dispvm is set to none rather than
 * left to the host default, so its DispVMs never get another network than the one it had.
 */
export function legacyDispvmNote(d: DomainInfo): string | undefined {
  const t = d.defaultDispvm;
  if (!d.legacyClass || typeof t !== 'string' || !t.startsWith('disp-')) return undefined;
  const net = t === 'disp-no-netvm' ? 'no netVM' : `netVM ${t.slice('disp-'.length)}`;
  return `default_dispvm set to none: its R2/R3 DispVMs had ${net}, for which Qubes' restore creates the DispVM template ${t}; not created here (so no DispVM of it gets another network): create a disposable template with ${net} and set default_dispvm to it`;
}
