// The shape of a run's stage profile (run-stats.ts makes it, bound.ts reads it).
export interface StageReport {
  stage: string;
  busy_s: number;
  active_s: number;
  count: number;
}

export interface StatsReport {
  wall_s: number;
  stages: StageReport[];
  workers: { threads: number; busy_s: number; utilisation: number; tasks: number };
  key_derivations: number;
  /** of those, how many each scrypt engine ran (workers/kdf-engine.ts), when a worker pool counted them */
  key_derivation_engines?: { wasm: number; openssl: number };
  spawns: { count: number; main_thread_s: number };
  event_loop_utilisation: number;
  /** which resource bounded the run (see bound.ts), when the run says how to tell */
  bound?: Bound;
}

export type BoundResource = 'cpu' | 'source' | 'destination' | 'main thread' | 'mixed';

export interface Bound {
  /** cpu: the worker threads' compression / key derivation / ciphers; source: reading the VM files
   *  (backup) or the archive (restore); destination: writing the archive (backup) or the restored
   *  files (restore); main thread: the orchestration itself; mixed: no one of them took half the run */
  resource: BoundResource;
  /** the stage that shows it */
  stage: string;
  /** that stage's (or the workers') share of the run's wall time, 0-1 */
  share: number;
  /** one sentence with the figures */
  why: string;
}
