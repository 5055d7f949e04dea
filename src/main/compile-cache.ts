// node >= 22.1 can keep the code it compiled for a module on disk and reuse it at the next start
// (NODE_COMPILE_CACHE): for our bundles that is ~40 ms of every run's start, which has one core busy
// and the other idle. The launchers (bin/) point it at dist/.compile-cache, beside the code it
// caches and as writable as it (never a shared directory such as /tmp: a cache another user can
// write would be code we run), and mark it as theirs with QVMB_OWN_COMPILE_CACHE=1.
// Node reads the variable when it starts, so the main thread's cache is set up by then; it is taken
// out of the environment here, at load, before anything is spawned: tar, a --source-command or a
// --dest-vm command never inherit it. The worker threads get it back explicitly (worker-pool.ts).
// A cache the user set (or disabled with NODE_DISABLE_COMPILE_CACHE) is theirs: left alone.

function takeOwnCompileCache(): string | undefined {
  if (process.env['QVMB_OWN_COMPILE_CACHE'] !== '1') return undefined;
  const dir = process.env['NODE_COMPILE_CACHE'];
  delete process.env['QVMB_OWN_COMPILE_CACHE'];
  delete process.env['NODE_COMPILE_CACHE'];
  return dir === '' ? undefined : dir;
}

/** The launcher's compile cache directory, for the worker threads; undefined: none of ours. */
export const OWN_COMPILE_CACHE: string | undefined = takeOwnCompileCache();
