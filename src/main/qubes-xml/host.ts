// A fresh R4 host qubes.xml: dom0 only, the standard eight labels and the default pools.
import { parseQubesXml } from './document.js';
import type { QubesXml } from './types.js';

const LABELS: [string, string][] = [
  ['red', '0xcc0000'],
  ['orange', '0xf57900'],
  ['yellow', '0xedd400'],
  ['green', '0x73d216'],
  ['gray', '0x555753'],
  ['blue', '0x3465a4'],
  ['purple', '0x75507b'],
  ['black', '0x000000'],
];

const EMPTY_HOST = `<?xml version='1.0' encoding='UTF-8'?>
<qubes>
  <labels>
${LABELS.map(([name, color], i) => `    <label color="${color}" id="label-${i + 1}">${name}</label>`).join('\n')}
  </labels>
  <pools>
    <pool dir_path="/var/lib/qubes/vm-kernels" driver="linux-kernel" name="linux-kernel"/>
    <pool dir_path="/var/lib/qubes" driver="file" name="varlibqubes" revisions_to_keep="1"/>
  </pools>
  <properties/>
  <domains>
    <domain id="domain-0" class="AdminVM">
      <properties>
        <property name="label">label-8</property>
      </properties>
      <features/>
      <tags/>
    </domain>
  </domains>
</qubes>
`;

/** A fresh R4 qubes.xml holding only dom0 (AdminVM, qid 0, label black) and labels red…black (label-1…8). */
export function emptyR4Host(): QubesXml {
  return parseQubesXml(EMPTY_HOST);
}
