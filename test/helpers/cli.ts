// Helpers for end-to-end tests: run the built CLIs, make temp dirs, compare trees.
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { makeSampleCollection, type SampleOptions } from '../../scripts/make-sample.js';

export const ROOT = new URL('../../../', import.meta.url).pathname; // project root (from dist/test/helpers)
export const BACKUP_BIN = join(ROOT, 'dist/src/main/cli/qvm-backup.js');
export const RESTORE_BIN = join(ROOT, 'dist/src/main/cli/qvm-backup-restore.js');
export const EMERGENCY = join(ROOT, 'test/emergency');
/** The installed commands: shell launchers that exec node on the entries above (npm's `bin`). */
export const BACKUP_CMD = join(ROOT, 'bin/qvm-backup');
export const RESTORE_CMD = join(ROOT, 'bin/qvm-backup-restore');
/** Environment for the launchers: the node running the tests first on PATH. */
export const launcherEnv = (extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv => ({ ...process.env, PATH: `${dirname(process.execPath)}:${process.env['PATH'] ?? ''}`, ...extra });

export function tempDir(prefix = 'qvmb-'): { dir: string; cleanup(): void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export function passFile(dir: string, pw = 'correct horse battery staple'): string {
  const p = join(dir, 'pass.txt');
  writeFileSync(p, pw + '\n');
  return p;
}

export function run(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; input?: string | Buffer; cwd?: string } = {}): SpawnSyncReturns<string> {
  return spawnSync(cmd, args, { encoding: 'utf8', env: { ...process.env, ...opts.env }, input: opts.input, cwd: opts.cwd, maxBuffer: 64 * 1024 * 1024 });
}

export function node(bin: string, args: string[], opts: { env?: NodeJS.ProcessEnv; input?: string | Buffer } = {}): SpawnSyncReturns<string> {
  return run(process.execPath, [bin, ...args], opts);
}

/** `du -k` of a path: allocated KiB (to check that holes were kept). */
export function duKiB(path: string): number {
  const r = run('du', ['-k', '-s', path]);
  return Number(r.stdout.split(/\s/)[0]);
}

export function haveCmd(name: string): boolean {
  return run('sh', ['-c', `command -v ${name}`]).status === 0;
}

/** A sample collection under `dir` (`qubes/` root, `home/user` dom0 home) with the given sizes. */
export function sampleIn(dir: string, sizes: Omit<SampleOptions, 'root' | 'home'>): { root: string; home: string } {
  const root = join(dir, 'qubes');
  const home = join(dir, 'home', 'user');
  makeSampleCollection({ root, home, ...sizes });
  return { root, home };
}

/** A small sample collection (VM `vault`) backed up at logN 12 into `dir/b.bin`, with its passphrase file. */
export function smallSampleArchive(dir: string): { archive: string; pw: string } {
  const { root, home } = sampleIn(dir, { bigImageBytes: 4 * 1024 * 1024, bigDataBytes: 256 * 1024, smallImageBytes: 1024 * 1024, smallDataBytes: 16 * 1024 });
  const pw = passFile(dir);
  const archive = join(dir, 'b.bin');
  const b = node(BACKUP_BIN, ['-y', '--qubes-root', root, '--dom0-home', home, '-p', pw, '--scrypt-logn', '12', archive, 'vault']);
  if (b.status !== 0) throw new Error(`backup failed: ${b.stderr}`);
  return { archive, pw };
}
