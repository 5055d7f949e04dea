// Builds a sample Qubes collection for the demo, the tests and the benchmarks: a qubes root with
// qubes.xml (R4 or R2/R3 schema), a TemplateVM, a NetVM and AppVMs with sparse images holding
// VM-like data (text, zero runs, random), firewall.xml / notes.txt, and a dom0 home.
import { mkdirSync, writeFileSync, openSync, writeSync, ftruncateSync, closeSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { createHash } from 'node:crypto';

export interface SampleOptions {
  root: string;
  home: string;
  schema?: 'r4' | 'r3';
  /** apparent size of the big AppVM image (work/private.img) */
  bigImageBytes?: number;
  /** bytes of data written into the big image (spread over several extents) */
  bigDataBytes?: number;
  /** apparent size of the other images */
  smallImageBytes?: number;
  smallDataBytes?: number;
  seed?: string;
  /** extra small AppVMs `app-001`…: the many-small-VMs collection (at most 240) */
  manyAppVms?: { count: number; imageBytes: number; dataBytes: number };
}

/** Deterministic VM-like bytes: 1/3 text-like, 1/3 zeros, 1/3 pseudo-random (SHA-256 counter). */
export function vmLikeData(n: number, seed: string): Buffer {
  const out = Buffer.alloc(n);
  const words = 'the quick brown fox jumps over the lazy dog qubes backup restore template appvm kernel volume '.split(' ');
  let off = 0;
  let i = 0;
  while (off < n) {
    const kind = i % 3;
    const len = Math.min(n - off, 64 * 1024);
    if (kind === 0) {
      let s = '';
      let k = i;
      while (s.length < len) {
        s += `${words[k % words.length]} ${k % 1000}\n`;
        k = (k * 7 + 3) % 9973;
      }
      out.write(s.slice(0, len), off, 'latin1');
    } else if (kind === 2) {
      let p = off;
      let c = 0;
      while (p < off + len) {
        const h = createHash('sha256').update(`${seed}:${i}:${c++}`).digest();
        p += h.copy(out, p, 0, Math.min(32, off + len - p));
      }
    }
    off += len;
    i++;
  }
  return out;
}

/** Create a sparse image of `size` bytes with `dataBytes` of data in 4 extents spread over it. */
export function makeSparseImage(path: string, size: number, dataBytes: number, seed: string): void {
  const fd = openSync(path, 'w');
  try {
    ftruncateSync(fd, size);
    const extents = 4;
    const per = Math.floor(dataBytes / extents / 4096) * 4096;
    for (let e = 0; e < extents && per > 0; e++) {
      const at = Math.floor((size / extents) * e / 4096) * 4096 + (e === 0 ? 0 : 12288);
      const data = vmLikeData(Math.min(per, size - at), `${seed}:${e}`);
      writeSync(fd, data, 0, data.length, at);
    }
  } finally {
    closeSync(fd);
  }
}

const LABELS = [
  ['1', '0xcc0000', 'red'],
  ['2', '0xf57900', 'orange'],
  ['3', '0xedd400', 'yellow'],
  ['4', '0x73d216', 'green'],
  ['5', '0x555753', 'gray'],
  ['6', '0x3465a4', 'blue'],
  ['7', '0x75507b', 'purple'],
  ['8', '0x000000', 'black'],
] as const;

interface SampleVm {
  qid: number;
  name: string;
  klass: 'TemplateVM' | 'AppVM';
  label: string;
  template?: string;
  netvm?: string | null;
  providesNetwork?: boolean;
  big?: boolean;
}

const VMS: SampleVm[] = [
  { qid: 1, name: 'fedora-40', klass: 'TemplateVM', label: 'black' },
  { qid: 2, name: 'sys-net', klass: 'AppVM', label: 'red', template: 'fedora-40', netvm: null, providesNetwork: true },
  { qid: 3, name: 'work', klass: 'AppVM', label: 'blue', template: 'fedora-40', netvm: 'sys-net', big: true },
  { qid: 4, name: 'personal', klass: 'AppVM', label: 'yellow', template: 'fedora-40', netvm: 'sys-net' },
  { qid: 5, name: 'vault', klass: 'AppVM', label: 'black', template: 'fedora-40', netvm: null },
];

/** The fixed VMs plus `count` small AppVMs (`app-001`…, on fedora-40, no network). */
function vmsOf(count: number): SampleVm[] {
  if (count > 240) throw new RangeError('at most 240 extra AppVMs (qids end at 254)');
  const extra = Array.from({ length: count }, (_, i): SampleVm => ({ qid: 10 + i, name: `app-${String(i + 1).padStart(3, '0')}`, klass: 'AppVM', label: 'green', template: 'fedora-40', netvm: null }));
  return [...VMS, ...extra];
}

const dirOf = (v: SampleVm) => (v.klass === 'TemplateVM' ? `vm-templates/${v.name}` : `appvms/${v.name}`);

function r4Xml(vms: SampleVm[]): string {
  const prop = (n: string, v: string) => `        <property name="${n}">${v}</property>`;
  const domains = vms.map((v) => {
    const props = [prop('name', v.name), prop('label', `label-${LABELS.find((l) => l[2] === v.label)![0]}`), prop('qid', String(v.qid))];
    if (v.template) props.push(prop('template', v.template));
    if (v.netvm !== undefined) props.push(v.netvm === null ? `        <property name="netvm"></property>` : prop('netvm', v.netvm));
    if (v.providesNetwork) props.push(prop('provides_network', 'True'));
    const d = dirOf(v);
    const vols =
      v.klass === 'TemplateVM'
        ? [`<volume name="root" pool="varlibqubes" vid="${d}/root" size="2147483648" revisions_to_keep="0" rw="True" save_on_stop="True" snap_on_start="False"/>`, `<volume name="private" pool="varlibqubes" vid="${d}/private" size="2147483648" revisions_to_keep="0" rw="True" save_on_stop="True" snap_on_start="False"/>`, `<volume name="volatile" pool="varlibqubes" vid="${d}/volatile" size="10737418240" rw="True" save_on_stop="False" snap_on_start="False"/>`]
        : [`<volume name="root" pool="varlibqubes" vid="vm-templates/${v.template}/root" size="2147483648" rw="False" save_on_stop="False" snap_on_start="True" source="vm-templates/${v.template}/root"/>`, `<volume name="private" pool="varlibqubes" vid="${d}/private" size="2147483648" revisions_to_keep="0" rw="True" save_on_stop="True" snap_on_start="False"/>`, `<volume name="volatile" pool="varlibqubes" vid="${d}/volatile" size="10737418240" rw="True" save_on_stop="False" snap_on_start="False"/>`];
    return `    <domain id="domain-${v.qid}" class="${v.klass}">
      <properties>
${props.join('\n')}
      </properties>
      <features/>
      <devices class="pci"/>
      <tags>
        <tag name="created-by-dom0"/>
      </tags>
      <volume-config>
        ${vols.join('\n        ')}
      </volume-config>
    </domain>`;
  }).join('\n');
  return `<?xml version='1.0' encoding='UTF-8'?>
<qubes version="3.0">
  <labels>
${LABELS.map(([i, c, n]) => `    <label id="label-${i}" color="${c}">${n}</label>`).join('\n')}
  </labels>
  <pools>
    <pool dir_path="/var/lib/qubes" driver="file" name="varlibqubes" revisions_to_keep="1"/>
  </pools>
  <properties>
    <property name="clockvm">sys-net</property>
    <property name="default_netvm">sys-net</property>
    <property name="default_template">fedora-40</property>
    <property name="updatevm">sys-net</property>
  </properties>
  <domains>
    <domain id="domain-0" class="AdminVM">
      <properties>
        <property name="label">label-8</property>
      </properties>
      <features/>
      <tags/>
    </domain>
${domains}
  </domains>
</qubes>
`;
}

function r3Xml(vms: SampleVm[]): string {
  const el = (v: SampleVm) => {
    const tag = v.klass === 'TemplateVM' ? 'QubesTemplateVm' : v.providesNetwork ? 'QubesNetVm' : 'QubesAppVm';
    const netvmQid = v.netvm === undefined ? 'none' : v.netvm === null ? 'none' : String(vms.find((x) => x.name === v.netvm)!.qid);
    const templateQid = v.template ? String(vms.find((x) => x.name === v.template)!.qid) : 'none';
    return `<${tag} qid="${v.qid}" name="${v.name}" dir_path="/var/lib/qubes/${dirOf(v)}" conf_file="${v.name}.conf" label="${v.label}" template_qid="${templateQid}" netvm_qid="${netvmQid}" uses_default_netvm="False" include_in_backups="True" installed_by_rpm="False" internal="False" memory="400" maxmem="4000" vcpus="2" pcidevs="[]" services="{'meminfo-writer': True}" uuid="00000000-0000-4000-8000-00000000000${v.qid}" debug="False" default_user="user" qrexec_timeout="60" autostart="False" kernel="4.4.14-11" uses_default_kernel="True" kernelopts="nopat" uses_default_kernelopts="True" mac="None" backup_content="False" backup_size="0" backup_path="" />`;
  };
  return `<?xml version='1.0' encoding='UTF-8'?>
<QubesVmCollection clockvm="2" default_fw_netvm="2" default_kernel="4.4.14-11" default_netvm="2" default_template="1" updatevm="2">
  <QubesAdminVm backup_content="False" backup_path="" backup_size="0" conf_file="" debug="False" default_user="user" dir_path="/var/lib/qubes/servicevms/dom0" include_in_backups="True" installed_by_rpm="False" internal="False" label="black" name="dom0" qid="0" />
  ${vms.map(el).join('\n  ')}
</QubesVmCollection>
`;
}

/** Create the sample collection; returns the names of the VMs. */
export function makeSampleCollection(o: SampleOptions): string[] {
  const big = o.bigImageBytes ?? 512 * 1024 * 1024;
  const bigData = o.bigDataBytes ?? 24 * 1024 * 1024;
  const small = o.smallImageBytes ?? 256 * 1024 * 1024;
  const smallData = o.smallDataBytes ?? 2 * 1024 * 1024;
  const seed = o.seed ?? 'qvm-backup-sample';
  mkdirSync(o.root, { recursive: true });
  const many = o.manyAppVms;
  const vms = vmsOf(many?.count ?? 0);
  for (const v of vms) {
    const d = join(o.root, dirOf(v));
    mkdirSync(d, { recursive: true });
    const extra = v.qid >= 10 && many !== undefined;
    const [size, data] = extra ? [many.imageBytes, many.dataBytes] : v.big ? [big, bigData] : [small, smallData];
    makeSparseImage(join(d, 'private.img'), size, data, `${seed}:${v.name}:private`);
    if (v.klass === 'TemplateVM') {
      makeSparseImage(join(d, 'root.img'), small, smallData * 2, `${seed}:${v.name}:root`);
      mkdirSync(join(d, 'apps.templates'), { recursive: true });
      writeFileSync(join(d, 'apps.templates', 'firefox.desktop'), '[Desktop Entry]\nName=Firefox\nExec=firefox\n');
    }
    if (v.name === 'work') {
      writeFileSync(join(d, 'firewall.xml'), `<?xml version='1.0' encoding='UTF-8'?>\n<firewall version="2">\n  <rules>\n    <rule>\n      <properties>\n        <property name="action">accept</property>\n        <property name="dsthost">qubes-os.org</property>\n      </properties>\n    </rule>\n    <rule>\n      <properties>\n        <property name="action">drop</property>\n      </properties>\n    </rule>\n  </rules>\n</firewall>\n`);
      writeFileSync(join(d, 'notes.txt'), 'work VM: project files\n');
    }
    if (v.klass === 'AppVM') writeFileSync(join(d, 'whitelisted-appmenus.list'), 'firefox.desktop\nxterm.desktop\n');
  }
  writeFileSync(join(o.root, 'qubes.xml'), o.schema === 'r3' ? r3Xml(vms) : r4Xml(vms));
  mkdirSync(join(o.home, 'Documents'), { recursive: true });
  writeFileSync(join(o.home, '.bashrc'), '# sample dom0 bashrc\nalias ll="ls -l"\n');
  writeFileSync(join(o.home, 'Documents', 'notes.txt'), vmLikeData(100_000, `${seed}:home`).toString('latin1'));
  try {
    symlinkSync('Documents/notes.txt', join(o.home, 'notes-link'));
  } catch {
    /* exists */
  }
  return vms.map((v) => v.name);
}

// CLI: node dist/scripts/make-sample.js ROOT HOME [r4|r3]
if (import.meta.url === `file://${process.argv[1]}`) {
  const [root, home, schema] = process.argv.slice(2);
  if (!root || !home) {
    console.error('usage: make-sample.js QUBES_ROOT DOM0_HOME [r4|r3]');
    process.exit(2);
  }
  console.log(makeSampleCollection({ root, home, schema: schema === 'r3' ? 'r3' : 'r4' }).join(' '));
}
