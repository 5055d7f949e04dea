// Test helper: extract the real qubes.xml of each Qubes-made fixture archive with the real tools
// (GNU tar, openssl enc, scrypt, gzip/bzip2/xz) into a temp dir, following FORMAT.md §11.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export const FIXTURE_DIR = process.env['QVMB_FIXTURES'] ?? '/work/shared/fixtures/qubes-made';

interface Expected {
  format_version: number;
  encrypted: boolean;
  compressed: boolean;
  compression_filter: string | null;
  backup_id: string | null;
  passphrase: string;
}

/** Names of all fixture archives (`<name>.bin`). */
export function fixtureNames(): string[] {
  if (!fs.existsSync(FIXTURE_DIR)) return [];
  return fs.readdirSync(FIXTURE_DIR).filter((f) => f.endsWith('.bin')).map((f) => f.slice(0, -4)).sort();
}

/** Format version of a fixture. */
export function fixtureFormat(name: string): number {
  return expected(name).format_version;
}

function expected(name: string): Expected {
  return JSON.parse(fs.readFileSync(path.join(FIXTURE_DIR, `${name}.expected.json`), 'utf8')) as Expected;
}

/** True if the `scrypt` CLI is installed. */
export function haveScrypt(): boolean {
  try {
    execFileSync('sh', ['-c', 'command -v scrypt'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/** The qubes.xml bytes stored in fixture `name`. */
export function fixtureQubesXml(name: string): Buffer {
  const e = expected(name);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'qvmb-'));
  try {
    const member = e.format_version === 4 ? 'qubes.xml.000.enc' : 'qubes.xml.000';
    execFileSync('tar', ['-i', '-xf', path.join(FIXTURE_DIR, `${name}.bin`), '-C', tmp, member], { stdio: ['ignore', 'ignore', 'pipe'] });
    const chunk = q(path.join(tmp, member));
    const steps: string[] = [];
    if (e.format_version === 4) {
      steps.push(`printf '%s\\n' ${q(`${e.backup_id}!qubes.xml.000!${e.passphrase}`)} | scrypt dec -P ${chunk}`);
    } else if (e.encrypted) {
      steps.push(`openssl enc -d -md MD5 -pass pass:${q(e.passphrase)} -aes-256-cbc -in ${chunk} 2>/dev/null`);
    } else {
      steps.push(`cat ${chunk}`);
    }
    if (e.compressed) {
      const filter = (e.compression_filter ?? 'gzip').split(/\s/)[0]!;
      if (!/^[a-z0-9]+$/.test(filter)) throw new Error(`odd compression filter ${filter}`);
      steps.push(`${filter} -dc`);
    }
    // v2 chunks are volumes of a GNU multi-volume tar; the first one holds all of qubes.xml
    steps.push('tar -xO qubes.xml');
    return execFileSync('bash', ['-c', `set -o pipefail; ${steps.join(' | ')}`], { maxBuffer: 4 << 20, stdio: ['ignore', 'pipe', 'pipe'] });
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

export interface OracleDomain {
  backup_path: string | null;
  included_in_backup: boolean;
  klass: string;
  label: string;
  template: string | null;
  properties: Record<string, unknown>;
  features: Record<string, unknown>;
  tags: string[];
  size: string;
  devices: Record<string, Record<string, unknown>>;
}

/** `<name>.oracle/qubes.json` (what the Qubes R4 restore client parsed), if present. */
export function oracleQubes(name: string): { domains: Record<string, OracleDomain>; globals: Record<string, string | null> } | undefined {
  const p = path.join(FIXTURE_DIR, `${name}.oracle`, 'qubes.json');
  return fs.existsSync(p) ? JSON.parse(fs.readFileSync(p, 'utf8')) : undefined;
}
