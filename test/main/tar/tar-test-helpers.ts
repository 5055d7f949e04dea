// Test helpers for the tar drivers: temp dirs, running real GNU tar synchronously, sparse files,
// and paths of the fake tar programs in test/fixtures/bin.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** Repository root (this file runs from dist/test/main/tar/). */
export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../..');
export const FAKE_BIN = path.join(REPO_ROOT, 'test/fixtures/bin');
export const FIXTURE_DIR = process.env['QVMB_FIXTURES'] ?? '/work/shared/fixtures/qubes-made';

/** A fresh temp dir; remove it with `rmTmp`. */
export function mkTmp(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'qvmb-'));
}

export function rmTmp(dir: string): void {
  fs.rmSync(dir, { recursive: true, force: true });
}

/** Run a program and return its stdout (throws on a non-zero exit). */
export function run(cmd: string, args: string[], input?: Uint8Array): Buffer {
  return execFileSync(cmd, args, { input, maxBuffer: 256 * 1024 * 1024, stdio: ['pipe', 'pipe', 'pipe'] });
}

/** Make a sparse file of `sizeMiB` MiB with `extents` random-data runs [offsetBytes, lengthBytes]. */
export function makeSparseFile(file: string, sizeMiB: number, extents: [number, number][]): void {
  run('truncate', ['-s', `${sizeMiB}M`, file]);
  const fd = fs.openSync(file, 'r+');
  try {
    for (const [off, len] of extents) fs.writeSync(fd, randomBytes(len), 0, len, off);
  } finally {
    fs.closeSync(fd);
  }
}

/** Allocated bytes of a file (st_blocks * 512), like `du -B1 --apparent-size=no`. */
export function allocatedBytes(file: string): number {
  return fs.statSync(file).blocks * 512;
}

/** Byte-compare two files with `cmp`. */
export function sameFile(a: string, b: string): boolean {
  try {
    run('cmp', ['--', a, b]);
    return true;
  } catch {
    return false;
  }
}

/** Fixture archives (`*.bin`) present on this machine. */
export function fixtureArchives(): string[] {
  if (!fs.existsSync(FIXTURE_DIR)) return [];
  return fs.readdirSync(FIXTURE_DIR).filter((f) => f.endsWith('.bin')).sort().map((f) => path.join(FIXTURE_DIR, f));
}

/** Assertion helper: `fn` rejects with a QvmBackupError of `code` whose message matches `re`. */
export async function rejectsWith(p: Promise<unknown> | (() => Promise<unknown>), code: string, re?: RegExp): Promise<Error & { code: string; context: Record<string, unknown> }> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    const err = e as Error & { code: string; context: Record<string, unknown> };
    if (err.code !== code) throw new Error(`expected ${code}, got ${err.code}: ${err.message}`, { cause: e });
    if (re && !re.test(err.message)) throw new Error(`message ${JSON.stringify(err.message)} does not match ${re}`, { cause: e });
    return err;
  }
  throw new Error(`expected a rejection with ${code}`);
}
