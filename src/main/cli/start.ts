// What the launchers (bin/) start first, before the command's one-file bundle: the environment the
// user started us with is put back where the launcher changed it for node, and node >= 22.8 gets
// the compile cache of our own. It is bundled on its own (scripts/bundle.mjs:
// dist/src/main/cli/<command>.start.mjs, a few KB), so that this runs before node compiles the
// command's ~1 MB bundle, which it then loads.
//
// - The environment. The launcher changes two variables for node itself, and this puts both back
//   before anything is spawned, so that tar, a --source-command or a --dest-vm command see what
//   the user started us with:
//   - GLIBC_TUNABLES: the launcher adds glibc's malloc tunables (bin/qvm-backup), which only this
//     process needs; the user's value (or none) comes in QVMB_USER_GLIBC_TUNABLES ("" for none,
//     "=" and the value otherwise).
//   - NODE_EXTRA_CA_CERTS: node 20 reads and parses that file when it starts, ~45 ms here with a
//     220 KB bundle of certificates (node 24 only when TLS is first used). These commands open no
//     TLS connection, so the launcher starts node without it (moved to QVMB_NODE_EXTRA_CA_CERTS).
//   A node child of our own (io/scrypt-child.ts) gets node's own environment instead (launch-state.ts).
// - The compile cache: node >= 22.8 can keep the code it compiled on disk and reuse it at the next
//   start (module.enableCompileCache): ~40 ms of every run's start, which has one core busy and the
//   other idle, and as much in each worker. Ours is dist/.compile-cache, beside the code it caches
//   and as writable as it: what node finds there is code it runs (it checks only a checksum of the
//   source), so the directory is used only when it is a directory (not a link) that belongs to the
//   user running this and that no one else can read or write (node makes its entries inside with
//   the process's umask, so a directory others can enter is not enough); it is made so (mode 0700)
//   when missing. A cache the environment chooses (NODE_COMPILE_CACHE) or disables
//   (NODE_DISABLE_COMPILE_CACHE) is the user's: left alone. Ours reaches the worker threads
//   (launch-state.ts, worker-pool.ts), never a program a run starts.
// The checks are made here rather than in the launcher because a shell has no way to read a
// directory's mode without starting a program (find: ~15 ms before node even starts).
import * as nodeModule from 'node:module';
import { lstatSync, mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { LAUNCH_STATE_KEY, type LaunchState } from '../launch-state.js';

/** node >= 22.8 (the types of node 20 do not have it) */
type EnableCompileCache = (dir: string) => { status: number };
interface CompileCacheModule {
  enableCompileCache?: EnableCompileCache;
  constants?: { compileCacheStatus?: { ENABLED: number } };
}

/** The variables the launcher changed for node put back into `env` as the user set them (children
 *  inherit it); returns node's own GLIBC_TUNABLES where the launcher set them, for a node child of
 *  ours (which never gets NODE_EXTRA_CA_CERTS: ownNodeChildEnv). A marker the launcher did not set
 *  cannot come here: it unsets both first. */
export function restoreMovedEnv(env: NodeJS.ProcessEnv = process.env): Record<string, string | undefined> {
  const nodeEnv: Record<string, string | undefined> = {};
  const certs = env['QVMB_NODE_EXTRA_CA_CERTS'];
  if (certs !== undefined) {
    delete env['QVMB_NODE_EXTRA_CA_CERTS'];
    env['NODE_EXTRA_CA_CERTS'] = certs;
  }
  const tunables = env['QVMB_USER_GLIBC_TUNABLES'];
  if (tunables !== undefined) {
    delete env['QVMB_USER_GLIBC_TUNABLES'];
    nodeEnv['GLIBC_TUNABLES'] = env['GLIBC_TUNABLES'];
    if (tunables === '') delete env['GLIBC_TUNABLES'];
    else if (tunables.startsWith('=')) env['GLIBC_TUNABLES'] = tunables.slice(1);
  }
  return nodeEnv;
}

/** Whether `dir` may hold code we run: a directory (no link) of this user's that no one else can enter. */
export function isOwnPrivateDir(dir: string): boolean {
  try {
    const st = lstatSync(dir);
    return st.isDirectory() && st.uid === process.geteuid?.() && (st.mode & 0o077) === 0;
  } catch {
    return false;
  }
}

/** Enable dist/.compile-cache (`dir`) for this process when it is ours (see above); the directory or
 *  undefined. Never throws: without a cache a run only starts a little slower. */
export function enableOwnCompileCache(dir: string, env: NodeJS.ProcessEnv = process.env, mod: CompileCacheModule = nodeModule as CompileCacheModule): string | undefined {
  if (typeof mod.enableCompileCache !== 'function') return undefined; // node < 22.8
  if (env['NODE_COMPILE_CACHE'] !== undefined || env['NODE_DISABLE_COMPILE_CACHE'] !== undefined) return undefined;
  try {
    mkdirSync(dir, { mode: 0o700 }); // the umask can only take bits away
  } catch {
    // there already (checked below), or not ours to make (a read-only install): no cache
  }
  if (!isOwnPrivateDir(dir)) return undefined;
  try {
    const r = mod.enableCompileCache(dir);
    return r.status === mod.constants?.compileCacheStatus?.ENABLED ? dir : undefined;
  } catch {
    return undefined;
  }
}

/** Prepare the process as above, then load the command `name` (`main`: its bundle's URL). A bundle
 *  that cannot be loaded ends the process with status 1 and one line. */
export async function start(name: string, main: URL): Promise<void> {
  const state: LaunchState = { nodeEnv: restoreMovedEnv() };
  const dir = enableOwnCompileCache(fileURLToPath(new URL('../../../.compile-cache', import.meta.url)));
  if (dir !== undefined) state.compileCache = dir;
  (globalThis as Record<symbol, unknown>)[LAUNCH_STATE_KEY] = state;
  try {
    await import(main.href);
  } catch (e) {
    const code = (e as { code?: unknown } | null)?.code;
    const why = (e instanceof Error ? e.message : String(e)).replace(/\s*\n\s*/g, ' ');
    // the usual cause: a build that made the start files but not (or not all of) the bundles
    // (not a package the bundle imports: that one is missing from node_modules, which npm install fills)
    const hint = code === 'ERR_MODULE_NOT_FOUND' && why.startsWith(`Cannot find module '${fileURLToPath(main)}'`) ? ' (npm run build makes it)' : '';
    process.stderr.write(`${name}: cannot load ${fileURLToPath(main)}: ${why}${hint}\n`);
    process.exit(1);
  }
}
