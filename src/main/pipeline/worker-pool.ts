// The worker thread pool: the project's only `new Piscina(...)`. Runs the typed tasks of
// task-types.ts in src/workers/chunk-worker.ts and turns thrown worker errors and aborts into
// QvmBackupError (errors lose their class when they cross a thread).
import { fileURLToPath } from 'node:url';
import type { TransferListItem } from 'node:worker_threads';
import { Piscina } from 'piscina';
import { QvmBackupError, type ErrorContext } from '../errors.js';
import type { TaskMap, TaskName } from '../../workers/task-types.js';

/** dist/src/main/pipeline/worker-pool.js → dist/src/workers/chunk-worker.js */
export const CHUNK_WORKER_URL = new URL('../../workers/chunk-worker.js', import.meta.url);

export interface WorkerPoolOptions {
  /** fixed number of worker threads (min = max) */
  threads: number;
}

export interface RunOptions {
  signal?: AbortSignal;
  /** ArrayBuffers moved (not copied) to the worker; they are detached here afterwards */
  transferList?: TransferListItem[];
  /** attached to any error thrown (VM, file, chunk) */
  context?: ErrorContext;
}

const IDLE_TIMEOUT_MS = 24 * 60 * 60 * 1000;

function isAbort(e: unknown, signal: AbortSignal | undefined): boolean {
  return signal?.aborted === true || (e instanceof Error && e.name === 'AbortError');
}

/** A fixed-size pool of chunk workers. The surface is deliberately small and maps 1:1 onto
 *  piscina's (and tinypool's) `run(task, { name, transferList, signal })`, so the engine can be
 *  swapped without touching callers. */
export class WorkerPool {
  readonly threads: number;
  readonly #pool: Piscina;

  constructor(opts: WorkerPoolOptions) {
    if (!Number.isInteger(opts.threads) || opts.threads < 1) throw new RangeError(`threads must be a positive integer, got ${opts.threads}`);
    this.threads = opts.threads;
    this.#pool = new Piscina({
      filename: fileURLToPath(CHUNK_WORKER_URL),
      minThreads: opts.threads,
      maxThreads: opts.threads,
      idleTimeout: IDLE_TIMEOUT_MS,
    });
  }

  /** Run task `name` in a worker; resolves with its result value (expected failures are `{ ok: false }`),
   *  rejects with ERR_CANCELLED on abort and ERR_INTERNAL when the worker threw. */
  async run<K extends TaskName>(name: K, task: TaskMap[K]['task'], opts: RunOptions = {}): Promise<TaskMap[K]['result']> {
    const context = opts.context ?? {};
    try {
      const runOpts: Parameters<Piscina['run']>[1] = { name };
      if (opts.signal) runOpts.signal = opts.signal;
      if (opts.transferList) runOpts.transferList = opts.transferList as unknown as NonNullable<typeof runOpts>['transferList'];
      return (await this.#pool.run(task, runOpts)) as TaskMap[K]['result'];
    } catch (e) {
      if (isAbort(e, opts.signal)) throw new QvmBackupError('ERR_CANCELLED', `${name} cancelled`, context, e);
      const msg = e instanceof Error ? e.message : String(e);
      throw new QvmBackupError('ERR_INTERNAL', `${name} failed: ${msg}`, context, e);
    }
  }

  /** Number of tasks waiting for a free worker. */
  get queueSize(): number {
    return this.#pool.queueSize;
  }

  /** Stop all workers; pending tasks are rejected. */
  async destroy(): Promise<void> {
    await this.#pool.destroy();
  }
}
