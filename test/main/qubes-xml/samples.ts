// Hand-written qubes.xml samples (R2 without dom0, R4 with rare shapes) shared by the tests.

/** An old R2 file: no dom0 element, Python literals with odd quoting, a dangling netvm qid. */
export const R2_NO_DOM0 = `<QubesVmCollection default_template="1" default_netvm="2" default_fw_netvm="2" updatevm="2" clockvm="None" default_kernel="3.12">
  <QubesTemplateVm qid="1" name="fedora-20" label="black" dir_path="/var/lib/qubes/vm-templates/fedora-20" template_qid="none" installed_by_rpm="True" include_in_backups="False"/>
  <QubesNetVm qid="2" name="netvm" label="red" template_qid="1" pcidevs="['00:19.0', u'03:00.0']" pci_strictreset="False" services="{}"/>
  <QubesHVm qid="4" name="win" template_qid="none" uses_default_netvm="False" netvm_qid="9" services="{u'meminfo-writer': False, &quot;odd\\'key&quot;: 'x'}" memory="1024" internal="True"/>
  <QubesTemplateHVm qid="5" name="wintpl" label="orange" template_qid="none" uses_default_dispvm_netvm="False" dispvm_netvm="none"/>
  <QubesAppVm qid="6" name="hvm-app" label="green" template_qid="5" uses_default_netvm="None" netvm_qid="none" uses_default_kernel="False" kernel="None" maxmem="4000" vcpus="4" mac="00:16:3E:5E:6C:00" backup_content="True" backup_path="appvms/hvm-app/" backup_size="4096"/>
  <QubesDisposableVm qid="7" name="disp1" template_qid="1" dispid="1"/>
  <Unknown qid="8" name="ghost"/>
</QubesVmCollection>`;

/** An R4 file with the rarer shapes: no labels match, explicit empty template, missing qid property. */
export const R4_EDGES = `<?xml version='1.0' encoding='UTF-8'?>
<qubes>
  <!-- hand-written -->
  <labels>
    <label color="0x73d216" id="label-4">green</label>
  </labels>
  <properties>
    <property name="default_netvm"></property>
  </properties>
  <domains>
    <domain id="domain-0" class="AdminVM">
      <properties/>
    </domain>
    <domain id="domain-7" class="AppVM">
      <properties>
        <property name="name">nolabel</property>
        <property name="label">label-99</property>
        <property name="template"/>
        <property name="include_in_backups">False</property>
        <property name="installed_by_rpm">yes</property>
        <property name="default_dispvm"></property>
      </properties>
      <features>
        <feature name="backup-content"></feature>
        <feature name="backup-path">vm7/</feature>
        <feature name="preload-dispvm-max">2</feature>
      </features>
      <volume-config>
        <volume name="private" pool="lvm" vid="qubes_dom0/vm-nolabel-private" save_on_stop="True" size="2147483648"/>
        <volume name="root" pool="lvm" vid="qubes_dom0/vm-nolabel-root" snap_on_start="True" size="oops"/>
      </volume-config>
    </domain>
    <domain id="domain-8" class="AppVM">
      <properties>
        <property name="name">bylabelname</property>
        <property name="label">green</property>
      </properties>
    </domain>
  </domains>
</qubes>
`;

/**
 * The host the fixtures' oracle restores ran on: dom0, TemplateVM `default-template` and the
 * disposable template `default-dvm` (the host defaults), the standard labels and pools.
 */
export function oracleHostXml(emptyHostXml: string): string {
  const prop = (n: string, v: string) => `<property name="${n}">${v}</property>`;
  return emptyHostXml
    .replace('<properties/>', `<properties>${prop('default_template', 'default-template')}${prop('default_dispvm', 'default-dvm')}</properties>`)
    .replace(
      '</domains>',
      `<domain id="domain-1" class="TemplateVM"><properties>${prop('label', 'label-8')}${prop('name', 'default-template')}${prop('qid', '1')}</properties></domain>` +
        `<domain id="domain-2" class="AppVM"><properties>${prop('label', 'label-1')}${prop('name', 'default-dvm')}${prop('qid', '2')}` +
        `${prop('template', 'default-template')}${prop('template_for_dispvms', 'True')}</properties></domain></domains>`,
    );
}
