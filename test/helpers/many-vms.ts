// A collection of many small VMs backed up once (format 4, logN 10, without the dom0 home), for
// tests that stop a restore while it installs; and the check that a qubes root lists every VM
// directory it holds.
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseQubesXml } from '../../src/main/qubes-xml/index.js';
import { BACKUP_BIN, node, passFile, sampleIn } from './cli.js';

const KiB = 1024;

/** `count` extra AppVMs of 64 KiB images, backed up into `dir/b.bin`. */
export function manyVmArchive(dir: string, count: number): { archive: string; pw: string } {
  const { root, home } = sampleIn(dir, { bigImageBytes: 64 * KiB, bigDataBytes: 4 * KiB, smallImageBytes: 64 * KiB, smallDataBytes: 4 * KiB, manyAppVms: { count, imageBytes: 64 * KiB, dataBytes: 4 * KiB } });
  const pw = passFile(dir);
  const archive = join(dir, 'b.bin');
  const b = node(BACKUP_BIN, ['-q', '-y', '--qubes-root', root, '--dom0-home', home, '-p', pw, '--scrypt-logn', '10', '-x', 'dom0', archive]);
  assert.equal(b.status, 0, b.stderr);
  return { archive, pw };
}

/** VM directories of qubes root `root` that its qubes.xml does not list. */
export function unlistedVmDirs(root: string): string[] {
  const listed = new Set(existsSync(join(root, 'qubes.xml')) ? parseQubesXml(readFileSync(join(root, 'qubes.xml'))).domains.map((d) => d.name) : []);
  const out: string[] = [];
  for (const sub of ['appvms', 'vm-templates']) for (const n of existsSync(join(root, sub)) ? readdirSync(join(root, sub)) : []) if (!listed.has(n)) out.push(`${sub}/${n}`);
  return out;
}
