// Hand-written qubes.xml samples for the restore tests: an R4 `<qubes>` document built from short
// VM specs, an R2/R3 `<QubesVmCollection>`, and R4 documents rebuilt from the fixtures' oracle JSON.
import fs from 'node:fs';
import path from 'node:path';

export interface VmSpec {
  name: string;
  /** AppVM, TemplateVM, StandaloneVM, DispVM (anything else: a hostile backup) */
  klass: 'AppVM' | 'TemplateVM' | 'StandaloneVM' | 'DispVM' | (string & {});
  qid: number;
  template?: string;
  /** string = that VM, null = none, absent = default */
  netvm?: string | null;
  providesNetwork?: boolean;
  dispvmTemplate?: boolean;
  defaultDispvm?: string;
  /** more `<property>` elements, as [name, value] */
  props?: [string, string][];
  /** in the backup: backup-path (default `vm<qid>/`) and size */
  backup?: boolean;
  path?: string;
  size?: number;
}

export interface R4Options {
  globals?: Record<string, string>;
  /** dom0 home in the backup (`dom0-home/<user>`) */
  dom0Home?: { user: string; size: number };
}

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
const prop = (n: string, v: string): string => `<property name="${esc(n)}">${esc(v)}</property>`;
const feat = (n: string, v: string): string => `<feature name="${esc(n)}">${esc(v)}</feature>`;

/** An R4 qubes.xml with dom0 plus `vms`. */
export function r4Xml(vms: VmSpec[], opts: R4Options = {}): string {
  const globals = Object.entries(opts.globals ?? {}).map(([k, v]) => prop(k, v)).join('');
  const dom0Feats = opts.dom0Home
    ? feat('backup-content', '1') + feat('backup-path', `dom0-home/${opts.dom0Home.user}`) + feat('backup-size', String(opts.dom0Home.size))
    : '';
  const doms = vms.map((vm) => {
    const props = [prop('qid', String(vm.qid)), prop('name', vm.name), prop('label', 'label-1')];
    if (vm.template !== undefined) props.push(prop('template', vm.template));
    if (vm.netvm !== undefined) props.push(prop('netvm', vm.netvm ?? ''));
    if (vm.providesNetwork) props.push(prop('provides_network', 'True'));
    if (vm.dispvmTemplate) props.push(prop('template_for_dispvms', 'True'));
    if (vm.defaultDispvm !== undefined) props.push(prop('default_dispvm', vm.defaultDispvm));
    for (const [n, v] of vm.props ?? []) props.push(prop(n, v));
    const feats = vm.backup
      ? feat('backup-content', '1') + feat('backup-path', vm.path ?? `vm${vm.qid}/`) + feat('backup-size', String(vm.size ?? 1024))
      : '';
    return `<domain id="domain-${vm.qid}" class="${vm.klass}"><properties>${props.join('')}</properties><features>${feats}</features></domain>`;
  });
  return (
    `<?xml version='1.0' encoding='UTF-8'?>\n<qubes version="3.0"><labels><label id="label-1" color="0xcc0000">red</label>` +
    `<label id="label-8" color="0x000000">black</label></labels>` +
    `<pools><pool name="varlibqubes" dir_path="/var/lib/qubes" driver="file" revisions_to_keep="1"/>` +
    `<pool name="linux-kernel" dir_path="/var/lib/qubes/vm-kernels" driver="linux-kernel"/></pools>` +
    `<properties>${globals}</properties><domains>` +
    `<domain id="domain-0" class="AdminVM"><properties>${prop('label', 'label-8')}</properties><features>${dom0Feats}</features></domain>` +
    `${doms.join('')}</domains></qubes>\n`
  );
}

/** A small R3 backup: template `fedora-23` (not backed up), netvm, proxy, appvm, whole-dir template. */
export function r3BackupXml(): string {
  const common = 'uses_default_kernel="True" uses_default_kernelopts="True" include_in_backups="True" label="red"';
  return `<?xml version='1.0' encoding='UTF-8'?>
<QubesVmCollection default_template="1" default_netvm="3" default_fw_netvm="2" updatevm="3" clockvm="2" default_kernel="4.4.14-11">
  <QubesAdminVm qid="0" name="dom0" label="black" backup_content="True" backup_path="dom0-home/user" backup_size="20480"/>
  <QubesTemplateVm qid="1" name="fedora-23" ${common} installed_by_rpm="True" backup_content="False" dir_path="/var/lib/qubes/vm-templates/fedora-23"/>
  <QubesNetVm qid="2" name="sys-net" template_qid="1" ${common} backup_content="False"/>
  <QubesProxyVm qid="3" name="sys-firewall" template_qid="1" ${common} uses_default_netvm="False" netvm_qid="2" backup_content="False"/>
  <QubesTemplateVm qid="11" name="tplclone" ${common} backup_content="True" backup_path="vm-templates/tplclone" backup_size="8388608"/>
  <QubesNetVm qid="9" name="mynet" template_qid="1" ${common} backup_content="True" backup_path="servicevms/mynet" backup_size="2097152"/>
  <QubesProxyVm qid="10" name="myproxy" template_qid="11" ${common} uses_default_netvm="False" netvm_qid="9" backup_content="True" backup_path="servicevms/myproxy" backup_size="2097152"/>
  <QubesAppVm qid="5" name="work" template_qid="1" ${common} uses_default_netvm="True" netvm_qid="3" backup_content="True" backup_path="appvms/work" backup_size="2097152"/>
  <QubesAppVm qid="6" name="custom" template_qid="11" ${common} uses_default_netvm="False" netvm_qid="10" backup_content="True" backup_path="appvms/custom" backup_size="4096"/>
</QubesVmCollection>
`;
}

/** Oracle directory of the Qubes-made fixtures. */
export const FIXTURES = '/work/shared/fixtures/qubes-made';

/** Names of the fixtures that have an oracle (`<name>.oracle/`). */
export function oracleFixtures(): string[] {
  if (!fs.existsSync(FIXTURES)) return [];
  return fs.readdirSync(FIXTURES).filter((f) => f.endsWith('.oracle')).map((f) => f.slice(0, -'.oracle'.length)).sort();
}

/** The oracle's restore plan: name → { subdir, size, template }. */
export function oracleRestoreInfo(fixture: string): Record<string, { subdir: string | null; size: number; template: string | null; problems: string[] }> {
  return JSON.parse(fs.readFileSync(path.join(FIXTURES, `${fixture}.oracle`, 'restore-info.json'), 'utf8'));
}
