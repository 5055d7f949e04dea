// Restore-security rule 4: a VM is installed only when every file it needs is a regular file of
// plausible size. The images a VM needs follow from its class and its backed-up volumes; the small
// files Qubes parses (firewall.xml) must be regular files of bounded size when present.
import { lstat } from 'node:fs/promises';
import path from 'node:path';
import { fail } from '../../errors.js';
import type { DomainInfo } from '../../qubes-xml/index.js';

/** Largest image we accept (the file pool has no such volumes; a sparse file claiming more is hostile). */
export const MAX_IMAGE_BYTES = 16 * 1024 ** 4;
/** Small files the host parses, with their bound. */
const SMALL_FILES: Record<string, number> = { 'firewall.xml': 1024 * 1024 };

/** `private.img`, `root.img`: the images `d` needs, from its backed-up volumes (R4) or its class. */
export function requiredImages(d: DomainInfo): string[] {
  if (d.volumes.length > 0) {
    return d.volumes.filter((v) => v.saveOnStop && (v.name === 'private' || v.name === 'root')).map((v) => `${v.name}.img`).sort();
  }
  if (d.klass === 'DispVM' || d.klass === 'AdminVM') return [];
  const own = d.klass === 'TemplateVM' || d.klass === 'StandaloneVM' || d.klass === 'TemplateHVM';
  return own ? ['private.img', 'root.img'] : ['private.img'];
}

/** Refuse the staged directory of `vm` unless its required images and small files are regular files. */
export async function checkVmFiles(staged: string, domain: DomainInfo, vm: string): Promise<void> {
  for (const name of requiredImages(domain)) {
    const st = await lstat(path.join(staged, name)).catch(() => null);
    if (st === null) fail('ERR_CORRUPT', `${vm}: ${name} is missing from the backup; not installing a VM without its data`, { vm, file: name });
    if (!st.isFile()) fail('ERR_UNSAFE_CONTENT', `${vm}: ${name} arrived as ${st.isSymbolicLink() ? 'a symbolic link' : st.isDirectory() ? 'a directory' : 'a special file'}, not a regular file`, { vm, file: name });
    if (st.size === 0 || st.size > MAX_IMAGE_BYTES) fail('ERR_UNSAFE_CONTENT', `${vm}: ${name} has an implausible size (${st.size} bytes)`, { vm, file: name });
  }
  for (const [name, max] of Object.entries(SMALL_FILES)) {
    const st = await lstat(path.join(staged, name)).catch(() => null);
    if (st === null) continue;
    if (!st.isFile()) fail('ERR_UNSAFE_CONTENT', `${vm}: ${name} is not a regular file`, { vm, file: name });
    if (st.size > max) fail('ERR_UNSAFE_CONTENT', `${vm}: ${name} is ${st.size} bytes (more than ${max})`, { vm, file: name });
  }
}
