// qubes.xml reading and writing for both schemas (R4 `<qubes>`, R1–R3 `<QubesVmCollection>`)
// into one typed model, lossless on write. FORMAT.md §8. This file only re-exports.
import { legacyDispvmTemplates as dispvmTemplatesOf } from './read-r2r3.js';
import type { DomainInfo, QubesXml } from './types.js';

export type { DeviceInfo, DomainInfo, LabelInfo, QubesSchema, QubesXml, VmClass, VolumeInfo } from './types.js';
export { QUBES_XML_MAX_BYTES } from '../format/limits.js';
export { cloneQubesXml, findDomain, parseQubesXml, restoreWarningsOf, serializeQubesXml } from './document.js';
export { markBackupContent, setBackupTimestamp } from './backup-marks.js';
export { isValidVmName, type VmNameOptions } from './vm-name.js';
export { emptyR4Host } from './host.js';
export { addRestoredDomain, previewRestoredDomain, markForRollback, deferredDefaultDispvmOf, restoredDomainWarnings, setRestoredDefaultDispvm, type AddRestoredOptions } from './restore-add.js';
export { ALLOWED_PROPERTIES } from './restore-props.js';
export { EXTRAS_LIMITS } from './restore-extras.js';
export { MAX_VOLUME_BYTES, VOLUME_NAMES, restorePool } from './volumes.js';
export { validateHostCollection } from './validate-host.js';
export { aClass, canBeTemplateOf, hasTemplate, isDispvmTemplate, providesNetwork, RESTORABLE_CLASSES, shown } from './vm-kinds.js';
export { legacyR4Properties } from './legacy-convert.js';
export { legacyDispvmNote } from './read-r2r3.js';

/**
 * R2/R3 only: the synthetic DVM templates (`disp-<netvm>`, `disp-no-netvm`) the Qubes R4 restore
 * client adds for VMs whose DispVM netvm differs from the default. They are not in the XML
 * (qid -1); restore them like any included VM (before the VMs whose defaultDispvm names them).
 */
export function legacyDispvmTemplates(doc: QubesXml): DomainInfo[] {
  return doc.schema === 'r2r3' ? dispvmTemplatesOf(doc.domains) : [];
}
