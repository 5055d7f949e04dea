// The worker thread pool: the project's only `new Piscina(...)`. Runs the typed tasks of
// task-types.ts in src/workers/pool-entry.ts and turns worker errors and aborts into
// QvmBackupError, keeping their code and context (errors lose their class when they cross a thread).
//
// Cancelling never terminates a worker in the middle of a task: piscina does that for an aborted
// running task, and on Node 20 terminating a worker at the wrong moment (loading its module,
// creating a zlib handle) aborts the whole process; its answer, already on the way, also made
// piscina emit 'error'. Instead each task carries a shared state word: a cancelled task that has
// not started is skipped by the worker and rejected at once; one that has started is rejected
// when it ends, so its caller never frees memory a worker is still writing. Workers load their
// module with import(), and destroy() waits until every worker has loaded it before terminating
// it (a worker terminated inside require(esm) aborted the process too).
import { OWN_COMPILE_CACHE } from '../launch-state.js';
import { scrypt } from 'node:crypto';
import { statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { TransferListItem } from 'node:worker_threads';
import { Piscina } from 'piscina';
import { QvmBackupError, isQvmBackupError, type ErrorCode, type ErrorContext } from '../errors.js';
import type { RunStats } from '../stats/run-stats.js';
import { TASK_CANCELLED, TASK_WAITING, isPortableError, type DerivedScryptKey, type PoolMessage, type PortableError, type TaskMap, type TaskName } from '../../workers/task-types.js';
import { SMALL_DERIVATION_BYTES } from '../../workers/kdf-engine.js';
import { scryptCost, scryptMaxmem, type ScryptParams } from '../../workers/scrypt-file.js';

/** dist/src/main/pipeline/worker-pool.js → dist/src/workers/pool-entry.js */
export const CHUNK_WORKER_URL = new URL('../../workers/pool-entry.js', import.meta.url);

/**
 * The file the workers load: the one-file bundle of `entry` (scripts/bundle.mjs: `x.js` →
 * `x.bundle.mjs`) when it exists and is not older than `entry`, else `entry` itself (a build that
 * ran tsc only is never shadowed by an older bundle).
 */
export function workerFile(entry: URL = CHUNK_WORKER_URL): string {
  const plain = fileURLToPath(entry);
  const bundle = plain.replace(/\.js$/, '.bundle.mjs');
  try {
    return statSync(bundle).mtimeMs >= statSync(plain).mtimeMs ? bundle : plain;
  } catch {
    return plain;
  }
}

export interface WorkerPoolOptions {
  /** fixed number of worker threads (min = max) */
  threads: number;
  /** the run's stage profile: each task's worker time and the key derivations are added to it */
  stats?: RunStats;
  /** the scrypt engine of every derivation (workers/kdf-engine.ts); default: QVMB_KDF=openssl or
   *  =wasm, else each worker's faster one */
  kdfEngine?: 'auto' | 'wasm' | 'openssl';
}

/** deriveWhileLoading's largest work N·r·p: logN 15 at r 8, p 1 (~60 ms here) */
const WHILE_LOADING_MAX_WORK = 2 ** 15 * 8;
/** deriveWhileLoading's stage: its time is the main thread's wait, not worker time */
const STAGE_DERIVE_WHILE_LOADING = 'key derivation (libuv, while the workers load)';

/** The stage of the profile a task's worker time counts for (none: the time is not work). */
const TASK_STAGE: Record<TaskName, string | null> = {
  compressBlock: 'compress (workers)',
  gunzipMember: 'decompress (workers)',
  unzstdFrame: 'decompress (workers)',
  scryptDerive: 'key derivation (workers)',
  scryptEncrypt: 'encrypt+MAC (workers)',
  scryptDecrypt: 'derive+authenticate+decrypt (workers)',
  cipherPiece: 'cipher (workers)',
  opensslSeal: 'encrypt+HMAC (workers)',
  opensslOpen: 'authenticate+decrypt (workers)',
  hmacSlice: 'HMAC (workers)',
  dropKdfMemory: null,
};

/** Whether a task runs one scrypt key derivation (v4: a key derived ahead, or a chunk encrypted or
 *  decrypted without one). */
function derives(name: TaskName, task: unknown): boolean {
  return name === 'scryptDerive' || ((name === 'scryptDecrypt' || name === 'scryptEncrypt') && (task as { derived?: unknown }).derived === undefined);
}

export interface RunOptions {
  signal?: AbortSignal;
  /** ArrayBuffers moved (not copied) to the worker; they are detached here afterwards */
  transferList?: TransferListItem[];
  /** attached to any error thrown (VM, file, chunk) */
  context?: ErrorContext;
}

const IDLE_TIMEOUT_MS = 24 * 60 * 60 * 1000;
/** destroy() lets running tasks end first; longer than any one task (scrypt at logN 22: ~25 s). */
const DESTROY_GRACE_MS = 60_000;
/** dropKeptKdfMemory's workers wait this long at most for each other: longer than any task (a
 *  derivation at the largest work --max-memory allows takes ~100 s here). */
const BARRIER_MS = 10 * 60_000;
/** destroy() waits this long at most for workers still loading their modules. */
const LOAD_GRACE_MS = 30_000;

/** piscina loads the worker module with require() first; on Node 20 that is require(esm), and a
 *  worker terminated inside it aborts the process (V8 fatal error). Without it piscina falls back to
 *  import(), which a termination interrupts cleanly. */
const WORKER_EXEC_ARGV = process.allowedNodeEnvironmentFlags.has('--no-experimental-require-module') ? ['--no-experimental-require-module'] : [];

/** QVMB_KDF=openssl or =wasm (anything else: chosen by speed in each worker) */
function kdfEngineEnv(): 'auto' | 'openssl' | 'wasm' {
  const v = process.env['QVMB_KDF'];
  return v === 'openssl' || v === 'wasm' ? v : 'auto';
}

/** piscina's message when a worker answers a task it no longer knows (after destroy). */
const LATE_ANSWER = /^Unexpected message from Worker/;

/** A worker's PortableError as a QvmBackupError: a QvmBackupError thrown there keeps its code;
 *  any other error becomes ERR_INTERNAL with its `code` in the context and in the cause. */
function fromWorker(name: string, e: PortableError, context: ErrorContext): QvmBackupError {
  const cause = Object.assign(new Error(e.message), { name: e.name, ...(e.code !== undefined ? { code: e.code } : {}), ...(e.stack !== undefined ? { stack: e.stack } : {}) });
  const own = e.name === 'QvmBackupError' && e.code !== undefined;
  const ctx = { ...context, ...e.context, ...(e.code !== undefined && !own ? { errorCode: e.code } : {}) };
  return new QvmBackupError(own ? (e.code as ErrorCode) : 'ERR_INTERNAL', own ? e.message : `${name} failed: ${e.message}`, ctx, cause);
}

/** Atomics.waitAsync (Node ≥ 16; not in this TypeScript lib). */
const waitAsync = (Atomics as unknown as { waitAsync(a: Int32Array, i: number, v: number, ms: number): { async: boolean; value: Promise<string> | string } }).waitAsync;

interface InFlight {
  state: Int32Array;
  settled: Promise<void>;
}

/** A fixed-size pool of chunk workers. The surface is deliberately small and maps 1:1 onto
 *  piscina's (and tinypool's) `run(task, { name, transferList })`, so the engine can be
 *  swapped without touching callers. */
export class WorkerPool {
  readonly threads: number;
  readonly #pool: Piscina;
  readonly #failed = new AbortController();
  readonly #inFlight = new Set<InFlight>();
  /** incremented by each worker once its modules are loaded (pool-entry.ts) */
  readonly #loaded = new Int32Array(new SharedArrayBuffer(4));
  readonly #stats: RunStats | undefined;
  /** how many workers keep scrypt memory between derivations (workers/scrypt-romix.ts) */
  readonly #keptKdf = new Int32Array(new SharedArrayBuffer(4));
  /** scrypt derivations per engine, counted by the workers: [WebAssembly, node:crypto] */
  readonly #kdfEngines = new Int32Array(new SharedArrayBuffer(8));
  /** barriers of dropKeptKdfMemory in progress: released when the pool stops */
  readonly #barriers = new Set<Int32Array>();
  readonly #kdfEngine: 'auto' | 'wasm' | 'openssl';
  /** node:crypto refused a derivation on this thread (deriveWhileLoading): not tried again */
  #noScryptHere = false;
  #destroying = false;
  /** destroy()'s promise, once called */
  #destroyed: Promise<void> | undefined;

  constructor(opts: WorkerPoolOptions) {
    if (!Number.isInteger(opts.threads) || opts.threads < 1) throw new RangeError(`threads must be a positive integer, got ${opts.threads}`);
    this.threads = opts.threads;
    this.#stats = opts.stats;
    this.#kdfEngine = opts.kdfEngine ?? kdfEngineEnv();
    opts.stats?.setThreads(opts.threads);
    opts.stats?.setKdfEngineCounts(() => this.kdfEngineCounts);
    this.#pool = new Piscina({
      filename: workerFile(),
      minThreads: opts.threads,
      maxThreads: opts.threads,
      idleTimeout: IDLE_TIMEOUT_MS,
      // QVMB_KDF=openssl or =wasm: every scrypt derivation by that engine (workers/kdf-engine.ts), to compare them
      workerData: { loadedWorkers: this.#loaded, keptKdf: this.#keptKdf, kdfEngines: this.#kdfEngines, kdfEngine: this.#kdfEngine },
      execArgv: WORKER_EXEC_ARGV,
      // the start file's compile cache (launch-state.ts), which is not in process.env
      ...(OWN_COMPILE_CACHE !== undefined ? { env: { ...process.env, NODE_COMPILE_CACHE: OWN_COMPILE_CACHE } } : {}),
    });
    // Without a listener, piscina's 'error' event kills the process with a stack trace.
    this.#pool.on('error', (e: unknown) => this.#onPoolError(e));
  }

  /** Aborted (reason: the QvmBackupError) when the pool itself failed, e.g. a worker died
   *  between tasks; every later run() rejects with that error. Runs should stop on it. */
  get failed(): AbortSignal {
    return this.#failed.signal;
  }

  #onPoolError(e: unknown): void {
    const msg = e instanceof Error ? e.message : String(e);
    if (this.#destroying && LATE_ANSWER.test(msg)) return; // a task answered after destroy() gave up on it
    if (this.#failed.signal.aborted) return;
    this.#releaseBarriers();
    this.#failed.abort(new QvmBackupError('ERR_INTERNAL', `worker pool failed: ${msg}`, {}, e));
  }

  #cancelled(name: string, context: ErrorContext, reason: unknown): QvmBackupError {
    return new QvmBackupError('ERR_CANCELLED', `${name} cancelled`, context, reason);
  }

  #error(name: string, e: unknown, context: ErrorContext): QvmBackupError {
    if (isQvmBackupError(e)) return e;
    if (isPortableError(e)) return fromWorker(name, e, context);
    if (this.#failed.signal.aborted) return this.#failed.signal.reason as QvmBackupError;
    if (this.#destroying) return this.#cancelled(name, context, e);
    const msg = e instanceof Error ? e.message : String(e);
    const code = (e as { code?: unknown } | null)?.code;
    return new QvmBackupError('ERR_INTERNAL', `${name} failed: ${msg}`, { ...context, ...(typeof code === 'string' ? { errorCode: code } : {}) }, e);
  }

  /** Run task `name` in a worker; resolves with its result value (expected failures are `{ ok: false }`).
   *  Rejects with ERR_CANCELLED when `signal` aborts — at once if the task has not started, else when
   *  it has ended (its memory is free then) —, with the pool's failure once it failed, and with
   *  fromWorker()'s error when the worker threw. */
  async run<K extends TaskName>(name: K, task: TaskMap[K]['task'], opts: RunOptions = {}): Promise<TaskMap[K]['result']> {
    const context = opts.context ?? {};
    const { signal } = opts;
    if (this.#failed.signal.aborted) throw this.#failed.signal.reason;
    if (this.#destroying) throw this.#cancelled(name, context, new Error('the worker pool was destroyed'));
    if (signal?.aborted) throw this.#cancelled(name, context, signal.reason);
    const state = new Int32Array(new SharedArrayBuffer(8)); // [state, worker time in µs]
    const message: PoolMessage<TaskMap[K]['task']> = { task, state };
    const runOpts: Parameters<Piscina['run']>[1] = { name };
    if (opts.transferList) runOpts.transferList = opts.transferList as unknown as NonNullable<typeof runOpts>['transferList'];
    const answer = this.#pool.run(message, runOpts) as Promise<TaskMap[K]['result'] | null>;
    const entry: InFlight = { state, settled: answer.then(() => undefined, () => undefined) };
    this.#inFlight.add(entry);
    void entry.settled.then(() => this.#inFlight.delete(entry));
    return new Promise<TaskMap[K]['result']>((resolve, reject) => {
      let aborted = false;
      const onAbort = (): void => {
        aborted = true;
        // not started yet: the worker will skip it, so nothing references its memory any more
        if (Atomics.compareExchange(state, 0, TASK_WAITING, TASK_CANCELLED) === TASK_WAITING) reject(this.#cancelled(name, context, signal?.reason));
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      answer.then(
        (r) => {
          signal?.removeEventListener('abort', onAbort);
          const stage = TASK_STAGE[name];
          if (r !== null && this.#stats && stage !== null) this.#stats.workerTask(stage, Atomics.load(state, 1) / 1000, derives(name, task));
          if (aborted) reject(this.#cancelled(name, context, signal?.reason));
          else if (r === null) reject(this.#cancelled(name, context, new Error('the worker pool was destroyed')));
          else resolve(r);
        },
        (e: unknown) => {
          signal?.removeEventListener('abort', onAbort);
          reject(aborted ? this.#cancelled(name, context, signal?.reason) : this.#error(name, e, context));
        },
      );
    });
  }

  /**
   * Derive a small scrypt key (up to 32 MiB and N·r·p = 2^18: logN 15 at r 8, tens of ms) here, by node:crypto on
   * libuv's thread pool (the event loop stays free), while no worker has loaded its modules yet:
   * a run's first derivations (a restore's backup header and qubes.xml) then start as soon as their
   * bytes are read instead of ~0.1 s later, when the workers are ready. null: not here — a worker
   * is ready, the derivation is larger, QVMB_KDF=wasm, or node:crypto refuses scrypt — so the
   * caller runs it in the pool. The derivation is counted (stage profile, engines) like a worker's.
   */
  async deriveWhileLoading(passphrase: Uint8Array, salt: Uint8Array, q: ScryptParams): Promise<DerivedScryptKey | null> {
    if (this.#noScryptHere || this.#kdfEngine === 'wasm' || this.#destroying || this.#failed.signal.aborted) return null;
    // small in memory and in work: a hostile header with little memory but a large p would keep
    // libuv's thread (which cannot be stopped) and a Ctrl-C waiting for seconds
    const cost = scryptCost(q);
    if (Atomics.load(this.#loaded, 0) > 0 || cost.bytes > SMALL_DERIVATION_BYTES || cost.work > WHILE_LOADING_MAX_WORK) return null;
    const t0 = performance.now();
    const key = await new Promise<Buffer | null>((resolve) => {
      try {
        scrypt(passphrase, salt, 64, { N: 2 ** q.logN, r: q.r, p: q.p, maxmem: scryptMaxmem(q) }, (e, k) => resolve(e ? null : k));
      } catch {
        resolve(null);
      }
    });
    if (key === null) {
      this.#noScryptHere = true;
      return null;
    }
    Atomics.add(this.#kdfEngines, 1, 1);
    this.#stats?.derivedHere(STAGE_DERIVE_WHILE_LOADING, performance.now() - t0);
    return { key, salt, logN: q.logN, r: q.r, p: q.p };
  }

  /** scrypt derivations run so far (by the workers, and deriveWhileLoading's), per engine */
  get kdfEngineCounts(): { wasm: number; openssl: number } {
    return { wasm: Atomics.load(this.#kdfEngines, 0), openssl: Atomics.load(this.#kdfEngines, 1) };
  }

  /** How many workers keep scrypt memory between derivations now. */
  get keptKdfHolders(): number {
    return Atomics.load(this.#keptKdf, 0);
  }

  /**
   * Make every worker release the memory it keeps for scrypt: one dropKdfMemory task per worker,
   * each held at a barrier until all have arrived, so that every worker takes exactly one (an idle
   * worker gets no other message: piscina's workers block between tasks). The caller makes sure
   * no derivation that keeps its memory runs or starts meanwhile, and lets the long tasks it
   * started end first (the workers that arrived wait for the others). Rejects with ERR_CANCELLED
   * when `signal` aborts or the pool is destroyed, and with ERR_INTERNAL when not every worker
   * took part within `ms` (longer than any task).
   */
  async dropKeptKdfMemory(signal?: AbortSignal, ms = BARRIER_MS): Promise<void> {
    if (Atomics.load(this.#keptKdf, 0) === 0) return;
    signal?.throwIfAborted();
    const barrier = new Int32Array(new SharedArrayBuffer(8));
    this.#barriers.add(barrier);
    const giveUp = (): void => this.#release(barrier);
    signal?.addEventListener('abort', giveUp, { once: true });
    try {
      const task = { barrier, workers: this.threads, timeoutMs: ms };
      // a stop rejects the tasks still queued at once; the ones at the barrier are let go
      const results = await Promise.all(Array.from({ length: this.threads }, () => this.run('dropKdfMemory', task, signal ? { signal } : {})));
      if (signal?.aborted) throw this.#cancelled('dropKdfMemory', {}, signal.reason);
      const left = Atomics.load(this.#keptKdf, 0);
      if (left !== 0 || !results.every((r) => r.all)) throw new QvmBackupError('ERR_INTERNAL', `the workers did not all release their key derivation memory within ${ms / 1000} s (${left} still keep it)`);
    } finally {
      signal?.removeEventListener('abort', giveUp);
      this.#barriers.delete(barrier);
    }
  }

  #release(barrier: Int32Array): void {
    Atomics.store(barrier, 1, 1);
    Atomics.notify(barrier, 0);
  }

  /** Let the workers waiting at a barrier go (the pool stops). */
  #releaseBarriers(): void {
    for (const b of this.#barriers) this.#release(b);
  }

  /** Number of tasks waiting for a free worker. */
  get queueSize(): number {
    return this.#pool.queueSize;
  }

  /** Stop all workers: tasks not started are cancelled, running ones may end (up to a grace
   *  period), then the threads are terminated. */
  /** Ends the pool (running tasks first); the same promise for every call. */
  destroy(): Promise<void> {
    this.#destroyed ??= this.#destroy();
    return this.#destroyed;
  }

  async #destroy(): Promise<void> {
    this.#destroying = true;
    this.#releaseBarriers();
    for (const t of this.#inFlight) Atomics.compareExchange(t.state, 0, TASK_WAITING, TASK_CANCELLED);
    if (this.#inFlight.size > 0) {
      let timer: NodeJS.Timeout | undefined;
      const grace = new Promise<void>((r) => (timer = setTimeout(r, DESTROY_GRACE_MS)));
      await Promise.race([Promise.all([...this.#inFlight].map((t) => t.settled)), grace]);
      clearTimeout(timer);
    }
    await this.#workersLoaded(LOAD_GRACE_MS);
    await this.#pool.destroy();
  }

  /** Resolves once every initial worker has loaded its modules, or after `ms`, or at once when
   *  the pool failed (a worker that cannot load never will). */
  async #workersLoaded(ms: number): Promise<void> {
    const end = Date.now() + ms;
    for (;;) {
      const n = Atomics.load(this.#loaded, 0);
      const left = end - Date.now();
      if (n >= this.threads || left <= 0 || this.#failed.signal.aborted) return;
      const w = waitAsync(this.#loaded, 0, n, Math.min(left, 100));
      if (w.async) await w.value;
    }
  }
}
