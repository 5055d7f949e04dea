// Backup profiles in Qubes' format (qvm-backup --profile / --save-profile): a YAML mapping with
// `include` (VM names, or null = the default selection), `exclude`, `destination_vm` (dom0 = a
// local path), `destination_path`, `passphrase_text`, `compression` (true/false or a filter name).
// Qubes keeps them as /etc/qubes/backup/NAME.conf and reads them with PyYAML's safe_load (YAML
// 1.1); so do we, strictly: one document, no tags, no aliases, no duplicate keys, every key known
// and of its type. A saved profile may hold the passphrase: written atomically, mode 0600.
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import writeFileAtomic from 'write-file-atomic';
import { parseDocument, stringify } from 'yaml';
import { fail } from '../errors.js';
import { isValidVmName } from '../qubes-xml/index.js';
import { validatePassphrase } from './passphrase.js';

/** Where Qubes keeps backup profiles (--profile-dir). */
export const DEFAULT_PROFILE_DIR = '/etc/qubes/backup';
/** A profile is a few lines; anything much bigger is not one. */
const MAX_PROFILE_BYTES = 64 * 1024;

export interface BackupProfile {
  /** null: the default selection (include_in_backups and the dom0 home) */
  include: string[] | null;
  exclude: string[];
  destinationVm: string;
  destinationPath: string;
  passphraseText?: string;
  /** true/false, or the compression filter */
  compression: boolean | string;
}

/** NAME → DIR/NAME.conf (Qubes' naming); anything with a '/' is a file path as it is. */
export function profilePath(spec: string, dir: string): string {
  if (spec.includes('/')) return resolve(spec);
  if (!/^[A-Za-z0-9_][A-Za-z0-9_.-]*$/.test(spec)) fail('ERR_USAGE', `profile name ${JSON.stringify(spec)}: letters, digits, '.', '_' and '-' only (or give a path containing '/')`);
  return join(dir, `${spec}.conf`);
}

export async function loadProfile(spec: string, dir: string): Promise<{ path: string; profile: BackupProfile }> {
  const path = profilePath(spec, dir);
  let text: Buffer;
  try {
    text = await readFile(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return fail('ERR_USAGE', `backup profile ${path}: ${code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'a directory, not a profile file' : (e as Error).message}${spec.includes('/') ? '' : ' (set --profile-dir, or give a path)'}`, { file: path }, e);
  }
  if (text.length > MAX_PROFILE_BYTES) fail('ERR_USAGE', `backup profile ${path}: larger than ${MAX_PROFILE_BYTES} bytes, not a profile`, { file: path });
  return { path, profile: parseProfile(text.toString('utf8'), path) };
}

const KEYS = ['include', 'exclude', 'destination_vm', 'destination_path', 'passphrase_text', 'compression'] as const;

/** Parse and check a profile's text; every problem is ERR_USAGE naming `source` and the key. */
export function parseProfile(text: string, source: string): BackupProfile {
  const bad = (what: string): never => fail('ERR_USAGE', `backup profile ${source}: ${what}`, { file: source });
  const doc = parseDocument(text, { version: '1.1', schema: 'yaml-1.1', strict: true, uniqueKeys: true, prettyErrors: false, customTags: [] });
  const problem = doc.errors[0] ?? doc.warnings[0];
  if (problem) bad(`not valid YAML: ${problem.message.split('\n')[0]}`);
  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: 0 });
  } catch (e) {
    return bad(`not valid YAML: ${(e as Error).message.split('\n')[0]}`);
  }
  if (typeof data !== 'object' || data === null || Array.isArray(data)) return bad('expected a mapping of keys (include, exclude, destination_vm, destination_path, passphrase_text, compression)');
  const o = data as Record<string, unknown>;
  for (const k of Object.keys(o)) {
    if (k === 'passphrase_vm') bad('passphrase_vm (a VM that supplies the passphrase through qubes.BackupPassphrase) is not supported: use passphrase_text, -p or --passphrase-command');
    if (!(KEYS as readonly string[]).includes(k)) bad(`unknown key ${JSON.stringify(k)} (known: ${KEYS.join(', ')})`);
  }
  const names = (k: string, v: unknown): string[] => {
    if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) return bad(`${k} must be a list of VM names`);
    for (const n of v as string[]) {
      if (n.startsWith('@') || n.startsWith('$')) bad(`${k}: ${JSON.stringify(n)}: Qubes' @type:/@tag: selectors are not supported, list VM names`);
      if (n !== 'dom0' && !isValidVmName(n, { allowDot: true })) bad(`${k}: not a VM name: ${JSON.stringify(n)}`);
    }
    return v as string[];
  };
  const str = (k: string, v: unknown): string => (typeof v === 'string' && v !== '' ? v : bad(`${k} must be a non-empty string`));
  // Qubes requires these three (include may be null)
  for (const k of ['include', 'destination_vm', 'destination_path']) if (!(k in o)) bad(`missing ${k}`);
  const p: BackupProfile = {
    include: o['include'] === null ? null : names('include', o['include']),
    exclude: o['exclude'] === undefined || o['exclude'] === null ? [] : names('exclude', o['exclude']),
    destinationVm: str('destination_vm', o['destination_vm']),
    destinationPath: str('destination_path', o['destination_path']),
    compression: o['compression'] === undefined ? true : typeof o['compression'] === 'boolean' ? o['compression'] : str('compression', o['compression']),
  };
  if (p.destinationVm !== 'dom0' && !isValidVmName(p.destinationVm, { allowDot: true })) bad(`destination_vm: not a VM name: ${JSON.stringify(p.destinationVm)}`);
  if (o['passphrase_text'] !== undefined) {
    const pw = typeof o['passphrase_text'] === 'string' ? o['passphrase_text'] : bad('passphrase_text must be a string (quote it)');
    validatePassphrase(pw, `passphrase_text of ${source}`);
    p.passphraseText = pw;
  }
  return p;
}

/** The profile's text as Qubes writes it (keys sorted, include null for the default selection). */
export function profileText(p: BackupProfile): string {
  const out: Record<string, unknown> = { compression: p.compression, destination_path: p.destinationPath, destination_vm: p.destinationVm };
  if (p.exclude.length > 0) out['exclude'] = p.exclude;
  out['include'] = p.include;
  if (p.passphraseText !== undefined) out['passphrase_text'] = p.passphraseText;
  return stringify(out, { version: '1.1' });
}

/** Write the profile atomically with mode 0600 (it may hold the passphrase); returns its path. */
export async function saveProfile(spec: string, dir: string, p: BackupProfile): Promise<string> {
  const path = profilePath(spec, dir);
  try {
    await writeFileAtomic(path, profileText(p), { mode: 0o600 });
  } catch (e) {
    fail('ERR_IO', `cannot save backup profile ${path}: ${(e as Error).message}`, { file: path }, e);
  }
  return path;
}
