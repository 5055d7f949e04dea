// Test helper: access to the Qubes-made fixture archives (/work/shared/fixtures/qubes-made) and
// extraction of single outer members with real GNU tar.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export const FIXTURE_DIR = process.env['QVMB_FIXTURES'] ?? '/work/shared/fixtures/qubes-made';

export interface ExpectedJson {
  fixture: string;
  format_version: 2 | 3 | 4;
  backup_header_text: string;
  backup_id: string | null;
  encrypted: boolean;
  compressed: boolean;
  compression_filter: string | null;
  hmac_algorithm?: string;
  passphrase: string;
  outer_tar_listing: string[];
}

/** Names of all fixtures that have an expected.json. */
export function fixtureNames(): string[] {
  if (!fs.existsSync(FIXTURE_DIR)) return [];
  return fs.readdirSync(FIXTURE_DIR).filter((f) => f.endsWith('.expected.json')).map((f) => f.slice(0, -'.expected.json'.length)).sort();
}

/** The parsed `<name>.expected.json`. */
export function loadExpected(name: string): ExpectedJson {
  return JSON.parse(fs.readFileSync(path.join(FIXTURE_DIR, `${name}.expected.json`), 'utf8')) as ExpectedJson;
}

/** Member names of the outer archive, from the listing in expected.json. */
export function outerMemberNames(e: ExpectedJson): string[] {
  return e.outer_tar_listing.map((line) => line.split(/ +/).slice(5).join(' '));
}

/** Extract the given outer members of `<name>.bin` with `tar -i -xf` and return their bytes. */
export function extractMembers(name: string, members: string[]): Map<string, Buffer> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qvmb-'));
  try {
    execFileSync('tar', ['-i', '-xf', path.join(FIXTURE_DIR, `${name}.bin`), '-C', dir, ...members], { stdio: ['ignore', 'ignore', 'pipe'] });
    return new Map(members.map((m) => [m, fs.readFileSync(path.join(dir, m))]));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
