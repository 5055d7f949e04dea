// The typed model of a qubes.xml (R4 `<qubes>` and R1–R3 `<QubesVmCollection>`, FORMAT.md §8).
// The model is a read-only view: change a document only through the functions of this module,
// which edit the preserved XML tree and then refresh the model.

export type QubesSchema = 'r4' | 'r2r3';

export type VmClass =
  | 'AdminVM'
  | 'TemplateVM'
  | 'AppVM'
  | 'StandaloneVM'
  | 'DispVM'
  | 'NetVM'
  | 'ProxyVM'
  | 'HVM'
  | 'TemplateHVM'
  | (string & {});

/** One R4 `<volume-config><volume …/>`. */
export interface VolumeInfo {
  name: string;
  pool?: string;
  vid?: string;
  /** `save_on_stop="True"`: the volume is backed up (FORMAT.md §7.2) */
  saveOnStop: boolean;
  /** `snap_on_start="True"`: the volume is a snapshot of the template's volume */
  snapToClone: boolean;
  size?: number;
  /** every attribute, decoded */
  attrs: Record<string, string>;
}

/** One persistent device assignment (R4 `<devices class><device>`, R2/R3 `pcidevs`). */
export interface DeviceInfo {
  /** device class: pci, block, usb, … */
  bus: string;
  /** backend domain name */
  backend: string;
  /** port id, e.g. `00_19.0` */
  port: string;
  options: Record<string, string>;
  /** every attribute of `<device>`, decoded (empty for R2/R3) */
  attrs: Record<string, string>;
}

export interface DomainInfo {
  qid: number;
  name: string;
  /**
   * R4 class. R2/R3 tags are mapped like the Qubes R4 restore client does: QubesAdminVm (or qid 0)
   * → AdminVM; QubesTemplateVm/QubesTemplateHVm → TemplateVM; QubesDisposableVm → DispVM; every
   * other tag (AppVm, HVm, NetVm, ProxyVm) → AppVM with a template, StandaloneVM without
   * (template_qid none). HVMs and Net/ProxyVMs are told apart by legacyClass / providesNetwork.
   */
  klass: VmClass;
  /** original R2/R3 element tag, if any */
  legacyClass?: string;
  /** label NAME (resolved through `<labels>` in R4) */
  label?: string;
  /** template VM name; undefined = none/not applicable; null = explicitly empty (R4 `''`) */
  template?: string | null;
  /** netvm name; null = explicitly none; undefined = default */
  netvm?: string | null;
  /** R4 `default_dispvm` (null = none); R2/R3: the synthetic `disp-<netvm>` DVM template the R4 client derives */
  defaultDispvm?: string | null;
  providesNetwork: boolean;
  /** default true; dom0 true */
  includeInBackups: boolean;
  installedByRpm: boolean;
  /** R2/R3 `dir_path`, e.g. /var/lib/qubes/appvms/work */
  dirPath?: string;
  /** R4 volume-config; empty for R2/R3 */
  volumes: VolumeInfo[];
  /** all properties/attributes as decoded strings (R4 `<property>`, R2/R3 attributes) */
  properties: Record<string, string>;
  /** R4 features as stored (True = '1' or 'True', False = ''); R2/R3: the features the R4 client derives */
  features: Record<string, string>;
  tags: string[];
  devices: DeviceInfo[];
  /** backup-content/-path/-size (R4 features) or backup_content/_path/_size (R2/R3 attributes) */
  backup?: { content: boolean; path?: string; size?: number };
}

export interface LabelInfo {
  id: string;
  name: string;
  color: string;
}

/**
 * A parsed qubes.xml. The preserved XML tree is held by the module, keyed by this object: copy a
 * document with cloneQubesXml (a spread or structuredClone copy has no tree and cannot be written).
 */
export interface QubesXml {
  schema: QubesSchema;
  domains: DomainInfo[];
  /** R4 `<labels>`; empty for R2/R3 (labels are stored by name there) */
  labels: LabelInfo[];
  /** R4 global `<property>`s; R2/R3 root attributes, VM qids resolved to names ('' = None) */
  globalProperties: Record<string, string>;
}
