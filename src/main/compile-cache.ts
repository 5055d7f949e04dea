// The compile cache of our own (dist/.compile-cache), for the worker threads: node >= 22.1 keeps the
// code it compiled there and reuses it at the next start, ~40 ms of each thread's start. The start
// module (cli/start.ts, which the launchers run before the command's bundle) enables it for the main
// thread when the directory is safe to use, and leaves its path here, under a global key: not in
// the environment, so that no program a run starts (tar, a --source-command, a --dest-vm command)
// inherits it. worker-pool.ts hands it to the workers (NODE_COMPILE_CACHE in their environment). A
// cache the user set (or disabled with NODE_DISABLE_COMPILE_CACHE) is theirs: node and the
// environment have it, and this stays undefined.

/** Where the start module leaves the directory it enabled. */
export const OWN_COMPILE_CACHE_KEY: unique symbol = Symbol.for('qvm-backup.own-compile-cache');

function ownCompileCache(): string | undefined {
  const dir = (globalThis as Record<symbol, unknown>)[OWN_COMPILE_CACHE_KEY];
  return typeof dir === 'string' && dir !== '' ? dir : undefined;
}

/** The start module's compile cache directory, for the worker threads; undefined: none of ours. */
export const OWN_COMPILE_CACHE: string | undefined = ownCompileCache();
