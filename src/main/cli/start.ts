// What the launchers (bin/) start first, before the command's one-file bundle: the environment node
// was started without is put back, and node >= 22.1 gets the compile cache of our own. It is bundled
// on its own (scripts/bundle.mjs: dist/src/main/cli/<command>.start.mjs, a few KB), so that this runs
// before node compiles the command's ~1 MB bundle, which it then loads.
//
// - NODE_EXTRA_CA_CERTS: node 20 reads and parses that file when it starts, ~45 ms here with a
//   220 KB bundle of certificates (node 24 only when TLS is first used). These commands open no TLS
//   connection, so the launcher starts node without it (moved to QVMB_NODE_EXTRA_CA_CERTS) and it is
//   put back here, before anything is spawned: tar, a --source-command or a --dest-vm command see the
//   environment the user started us with.
// - The compile cache: node >= 22.1 can keep the code it compiled on disk and reuse it at the next
//   start (module.enableCompileCache): ~40 ms of every run's start, which has one core busy and the
//   other idle, and as much in each worker. Ours is dist/.compile-cache, beside the code it caches
//   and as writable as it: what node finds there is code it runs (it checks only a checksum of the
//   source), so the directory is used only when it is a directory (not a link) that belongs to the
//   user running this and that no one else can write; it is made so (mode 0700) when missing. A
//   cache the environment chooses (NODE_COMPILE_CACHE) or disables (NODE_DISABLE_COMPILE_CACHE) is
//   the user's: left alone. Ours reaches the worker threads (compile-cache.ts, worker-pool.ts), never
//   a program a run starts.
// The checks are made here rather than in the launcher because a shell has no way to read a
// directory's mode without starting a program (find: ~15 ms before node even starts).
import * as nodeModule from 'node:module';
import { lstatSync, mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { OWN_COMPILE_CACHE_KEY } from '../compile-cache.js';

/** node >= 22.1 (the types of node 20 do not have it) */
type EnableCompileCache = (dir: string) => { status: number };
interface CompileCacheModule {
  enableCompileCache?: EnableCompileCache;
  constants?: { compileCacheStatus?: { ENABLED: number } };
}

/** The launcher's NODE_EXTRA_CA_CERTS back into the environment (children inherit it). */
export function restoreMovedEnv(env: NodeJS.ProcessEnv = process.env): void {
  const moved = env['QVMB_NODE_EXTRA_CA_CERTS'];
  if (moved === undefined) return;
  delete env['QVMB_NODE_EXTRA_CA_CERTS'];
  env['NODE_EXTRA_CA_CERTS'] = moved;
}

/** Whether `dir` may hold code we run: a directory (no link) of this user's that no one else can write. */
export function isOwnPrivateDir(dir: string): boolean {
  try {
    const st = lstatSync(dir);
    return st.isDirectory() && st.uid === process.geteuid?.() && (st.mode & 0o022) === 0;
  } catch {
    return false;
  }
}

/** Enable dist/.compile-cache (`dir`) for this process when it is ours (see above); the directory or
 *  undefined. Never throws: without a cache a run only starts a little slower. */
export function enableOwnCompileCache(dir: string, env: NodeJS.ProcessEnv = process.env, mod: CompileCacheModule = nodeModule as CompileCacheModule): string | undefined {
  if (typeof mod.enableCompileCache !== 'function') return undefined; // node < 22.1
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
 *  that cannot be loaded (a partial build) ends the process with status 1 and one line. */
export async function start(name: string, main: URL): Promise<void> {
  restoreMovedEnv();
  const dir = enableOwnCompileCache(fileURLToPath(new URL('../../../.compile-cache', import.meta.url)));
  if (dir !== undefined) (globalThis as Record<symbol, unknown>)[OWN_COMPILE_CACHE_KEY] = dir;
  try {
    await import(main.href);
  } catch (e) {
    process.stderr.write(`${name}: cannot load ${fileURLToPath(main)}: ${e instanceof Error ? e.message : String(e)} (npm run build makes it)\n`);
    process.exit(1);
  }
}
