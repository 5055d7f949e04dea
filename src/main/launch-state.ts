// What the start file (cli/start.ts, which the launchers run before the command's bundle) leaves for
// the rest of the run, under a global key: not in the environment, which the programs a run starts
// inherit as the user set it.
// - The compile cache of our own (dist/.compile-cache), for the worker threads: node >= 22.8 keeps
//   the code it compiled there and reuses it at the next start, ~40 ms of each thread's start.
//   worker-pool.ts hands it to the workers (NODE_COMPILE_CACHE in their environment). A cache the
//   user set (or disabled with NODE_DISABLE_COMPILE_CACHE) is theirs: node and the environment have
//   it, and this stays undefined.
// - The environment node itself was started with where it differs from the user's (GLIBC_TUNABLES
//   as the launcher set it, no NODE_EXTRA_CA_CERTS), for a node child of our own (io/scrypt-child.ts).

/** Where the start file leaves the state. */
export const LAUNCH_STATE_KEY: unique symbol = Symbol.for('qvm-backup.launch-state');

export interface LaunchState {
  /** the compile cache directory the start file enabled */
  compileCache?: string;
  /** variables for a node child of ours on top of process.env, where node's own differ from the
   *  user's (NODE_EXTRA_CA_CERTS is left out in any case: ownNodeChildEnv) */
  nodeEnv?: Record<string, string | undefined>;
}

function launchState(): LaunchState {
  const s = (globalThis as Record<symbol, unknown>)[LAUNCH_STATE_KEY];
  return typeof s === 'object' && s !== null ? (s as LaunchState) : {};
}

function ownCompileCache(): string | undefined {
  const dir = launchState().compileCache;
  return typeof dir === 'string' && dir !== '' ? dir : undefined;
}

/** The start file's compile cache directory, for the worker threads; undefined: none of ours. */
export const OWN_COMPILE_CACHE: string | undefined = ownCompileCache();

/** The environment of a node child of our own: the user's, with what the launcher gave node itself
 *  (its malloc tunables), and without NODE_EXTRA_CA_CERTS (node 20 reads that file first, ~45 ms;
 *  our children open no TLS connection). */
export function ownNodeChildEnv(): NodeJS.ProcessEnv {
  return { ...process.env, NODE_EXTRA_CA_CERTS: undefined, ...launchState().nodeEnv };
}
