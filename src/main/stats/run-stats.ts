// The stage profile of one run (--stats; the `stats` object of the --json summary): per stage its
// busy time (the sum of its intervals: several files or workers at once add up) and its active time
// (wall time during which at least one interval of it was open), worker-pool utilisation, child
// process spawns and the main thread's event-loop utilisation. Every hook costs a clock read or
// two per file, chunk or task — never per byte — and nothing at all when the profile is off.
import { performance } from 'node:perf_hooks';
import type { Bound, StageReport, StatsReport } from './report-types.js';

/** Milliseconds from an arbitrary origin (performance.now, or a fake clock in tests). */
export type Clock = () => number;

interface StageAcc {
  busyMs: number;
  activeMs: number;
  count: number;
  open: number;
  openedAt: number;
}

export type { StageReport, StatsReport } from './report-types.js';

type Elu = ReturnType<typeof performance.eventLoopUtilization>;

const round = (ms: number): number => Math.round(ms) / 1000;

/** The stage of the time spent waiting for the user (not part of wall_s). */
export const USER_STAGE = 'waiting for the user (passphrase, confirmation; not in wall_s)';

export class RunStats {
  readonly enabled: boolean;
  readonly #clock: Clock;
  readonly #stages = new Map<string, StageAcc>();
  readonly #started: number;
  readonly #elu: Elu | undefined;
  readonly #bound: ((r: StatsReport) => Bound) | undefined;
  #threads = 0;
  #workerMs = 0;
  #tasks = 0;
  #derivations = 0;
  #engines: (() => { wasm: number; openssl: number }) | undefined;
  #spawns = 0;
  #spawnMs = 0;
  /** time spent waiting for the user (passphrase, confirmation), left out of the wall time */
  #userMs = 0;
  #userIdle = 0;
  #userActive = 0;

  constructor(o: { enabled: boolean; clock?: Clock; measureEventLoop?: boolean; bound?: (r: StatsReport) => Bound }) {
    this.enabled = o.enabled;
    this.#bound = o.bound;
    this.#clock = o.clock ?? (() => performance.now());
    this.#started = o.enabled ? this.#clock() : 0;
    this.#elu = o.enabled && o.measureEventLoop !== false ? performance.eventLoopUtilization() : undefined;
  }

  /** A profile that records nothing. */
  static off(): RunStats {
    return new RunStats({ enabled: false });
  }

  /** Open an interval of `stage`; returns its end function (call once). */
  begin(stage: string): () => void {
    if (!this.enabled) return noop;
    const t0 = this.#clock();
    let acc = this.#stages.get(stage);
    if (acc === undefined) this.#stages.set(stage, (acc = { busyMs: 0, activeMs: 0, count: 0, open: 0, openedAt: 0 }));
    if (acc.open++ === 0) acc.openedAt = t0;
    const a = acc;
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      const t1 = this.#clock();
      a.busyMs += t1 - t0;
      a.count++;
      if (--a.open === 0) a.activeMs += t1 - a.openedAt;
    };
  }

  /** Time `fn` (sync or async) as one interval of `stage`. */
  time<T>(stage: string, fn: () => T): T {
    if (!this.enabled) return fn();
    const end = this.begin(stage);
    let r: T;
    try {
      r = fn();
    } catch (e) {
      end();
      throw e;
    }
    if (r instanceof Promise) return r.finally(end) as T;
    end();
    return r;
  }

  /** Add time measured elsewhere (a worker's own task time) to `stage`. */
  add(stage: string, ms: number, count = 1): void {
    if (!this.enabled) return;
    let acc = this.#stages.get(stage);
    if (acc === undefined) this.#stages.set(stage, (acc = { busyMs: 0, activeMs: 0, count: 0, open: 0, openedAt: 0 }));
    acc.busyMs += ms;
    acc.count += count;
  }

  /** Where the derivations per scrypt engine are counted (the worker pool's shared counters). */
  setKdfEngineCounts(read: () => { wasm: number; openssl: number }): void {
    this.#engines = read;
  }

  /** The worker pool's size (for utilisation). */
  setThreads(n: number): void {
    this.#threads = n;
  }

  /** A worker task ended after `ms` of the worker's time; `derived`: it ran one scrypt derivation. */
  workerTask(stage: string, ms: number, derived: boolean): void {
    if (derived) this.#derivations++;
    if (!this.enabled) return;
    this.#workerMs += ms;
    this.#tasks++;
    this.add(stage, ms);
  }

  /** A key derivation outside the workers (WorkerPool.deriveWhileLoading) took `ms`: counted as
   *  a derivation, its time in `stage` (not worker time). */
  derivedHere(stage: string, ms: number): void {
    this.#derivations++;
    this.add(stage, ms);
  }

  /** Key derivations run so far (counted even when the profile is off: tests read it). */
  get keyDerivations(): number {
    return this.#derivations;
  }

  /** Run `fn` (the passphrase prompt or command, the confirmation) as time spent waiting for the
   *  user: recorded as its own stage and left out of the wall time and the event-loop share, so
   *  that a slow typist does not dilute the profile's shares. */
  async userWait<T>(fn: () => Promise<T>): Promise<T> {
    if (!this.enabled) return fn();
    const t0 = this.#clock();
    const e0 = this.#elu !== undefined ? performance.eventLoopUtilization() : undefined;
    try {
      return await fn();
    } finally {
      const ms = this.#clock() - t0;
      this.#userMs += ms;
      this.add(USER_STAGE, ms);
      if (e0 !== undefined) {
        const d = performance.eventLoopUtilization(performance.eventLoopUtilization(), e0);
        this.#userIdle += d.idle;
        this.#userActive += d.active;
      }
    }
  }

  /** A child process was started; `ms`: main-thread time the start took (fork + exec happen there). */
  spawned(ms: number): void {
    if (!this.enabled) return;
    this.#spawns++;
    this.#spawnMs += ms;
  }

  /** The profile so far. */
  report(): StatsReport {
    const now = this.#clock();
    const wallMs = Math.max(0, now - this.#started - this.#userMs);
    const stages: StageReport[] = [];
    for (const [stage, a] of this.#stages) {
      const active = a.activeMs + (a.open > 0 ? now - a.openedAt : 0);
      stages.push({ stage, busy_s: round(a.busyMs), active_s: round(active), count: a.count });
    }
    const capacity = this.#threads * wallMs;
    let elu = 0;
    if (this.#elu) {
      const d = performance.eventLoopUtilization(this.#elu);
      const active = Math.max(0, d.active - this.#userActive);
      const idle = Math.max(0, d.idle - this.#userIdle);
      elu = active + idle > 0 ? active / (active + idle) : 0;
    }
    const report: StatsReport = {
      wall_s: round(wallMs),
      stages,
      workers: { threads: this.#threads, busy_s: round(this.#workerMs), utilisation: capacity > 0 ? Math.round((1000 * this.#workerMs) / capacity) / 1000 : 0, tasks: this.#tasks },
      key_derivations: this.#derivations,
      ...(this.#engines !== undefined ? { key_derivation_engines: this.#engines() } : {}),
      spawns: { count: this.#spawns, main_thread_s: round(this.#spawnMs) },
      event_loop_utilisation: Math.round(1000 * elu) / 1000,
    };
    if (this.#bound !== undefined) {
      const b = this.#bound(report);
      report.bound = { ...b, share: Math.round(1000 * b.share) / 1000 };
    }
    return report;
  }
}

function noop(): void {}

const pct = (x: number): string => `${Math.round(100 * x)} %`;

/** The profile as the text --stats prints at the end of a run. */
export function formatStats(r: StatsReport): string {
  const w = Math.max(5, ...r.stages.map((s) => s.stage.length));
  const lines = [`Stage profile (wall ${r.wall_s.toFixed(2)} s):`, `  ${'stage'.padEnd(w)}  ${'busy s'.padStart(8)}  ${'active s'.padStart(8)}  ${'count'.padStart(6)}`];
  for (const s of r.stages) lines.push(`  ${s.stage.padEnd(w)}  ${s.busy_s.toFixed(2).padStart(8)}  ${s.active_s.toFixed(2).padStart(8)}  ${String(s.count).padStart(6)}`);
  lines.push(`  workers: ${r.workers.threads} threads, ${r.workers.busy_s.toFixed(2)} busy s in ${r.workers.tasks} tasks, utilisation ${pct(r.workers.utilisation)}`);
  const e = r.key_derivation_engines;
  lines.push(`  key derivations: ${r.key_derivations}${e !== undefined && e.wasm + e.openssl > 0 ? ` (scrypt in WebAssembly ${e.wasm}, node:crypto ${e.openssl})` : ''}`);
  lines.push(`  child processes: ${r.spawns.count}, ${r.spawns.main_thread_s.toFixed(2)} s of the main thread to start them`);
  lines.push(`  main thread event loop: ${pct(r.event_loop_utilisation)} busy`);
  if (r.bound !== undefined) lines.push(`  bounded by: ${r.bound.resource} (${r.bound.stage}) — ${r.bound.why}`);
  return lines.join('\n');
}
