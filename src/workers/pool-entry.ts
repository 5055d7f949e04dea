// The module piscina loads in every worker thread: the tasks of chunk-worker.ts, each wrapped so
// that (1) a task cancelled before it started is skipped (it answers null and never touches its
// memory), and (2) anything it throws crosses the thread as a PortableError (plain fields survive
// structured clone; an Error's class, `code` and context would not).
import { performance } from 'node:perf_hooks';
import { workerData } from 'node:worker_threads';
import * as tasks from './chunk-worker.js';
import { countDerivationsIn, setKdfEngineMode } from './kdf-engine.js';
import { countKeptMemoryIn } from './scrypt-romix.js';
import { TASK_STARTED, TASK_WAITING, type PoolMessage, type PortableError, type TaskMap, type TaskName } from './task-types.js';

/** A thrown value as a PortableError (name, message, stack, code and context kept). */
export function toPortableError(e: unknown): PortableError {
  if (!(e instanceof Error)) return { portableError: true, name: 'Error', message: String(e) };
  const { code, context } = e as Error & { code?: unknown; context?: unknown };
  return {
    portableError: true,
    name: e.name,
    message: e.message,
    ...(e.stack !== undefined ? { stack: e.stack } : {}),
    ...(typeof code === 'string' ? { code } : {}),
    ...(typeof context === 'object' && context !== null ? { context: { ...(context as Record<string, unknown>) } } : {}),
  };
}

function guard<T, R>(task: (t: T) => R): (m: PoolMessage<T>) => R | null {
  return (m: PoolMessage<T>): R | null => {
    if (Atomics.compareExchange(m.state, 0, TASK_WAITING, TASK_STARTED) !== TASK_WAITING) return null;
    const t0 = performance.now();
    try {
      return task(m.task);
    } catch (e) {
      // a plain object on purpose: it crosses the thread boundary by structured clone intact
      // eslint-disable-next-line @typescript-eslint/only-throw-error
      throw toPortableError(e);
    } finally {
      // the task's own time (the stage profile's worker busy time), in microseconds
      if (m.state.length > 1) Atomics.store(m.state, 1, Math.min(0x7fffffff, Math.round((performance.now() - t0) * 1000)));
    }
  };
}

export const compressBlock = guard(tasks.compressBlock);
export const gunzipMember = guard(tasks.gunzipMember);
export const unzstdFrame = guard(tasks.unzstdFrame);
export const scryptEncrypt = guard(tasks.scryptEncrypt);
export const scryptDerive = guard(tasks.scryptDerive);
export const scryptDecrypt = guard(tasks.scryptDecrypt);
export const cipherPiece = guard(tasks.cipherPiece);
export const opensslSeal = guard(tasks.opensslSeal);
export const opensslOpen = guard(tasks.opensslOpen);
export const hmacSlice = guard(tasks.hmacSlice);
export const dropKdfMemory = guard(tasks.dropKdfMemory);
export default compressBlock;

// Every task of TaskMap is exported, with its exact types (a missing one fails to compile).
const exported: { [K in TaskName]: (m: PoolMessage<TaskMap[K]['task']>) => TaskMap[K]['result'] | null } = { compressBlock, gunzipMember, unzstdFrame, scryptEncrypt, scryptDerive, scryptDecrypt, cipherPiece, opensslSeal, opensslOpen, hmacSlice, dropKdfMemory };
void exported;

// Tell the main thread this worker's modules are loaded (WorkerPool.destroy waits for it: on Node 20
// a worker terminated while it is still loading them can abort the whole process).
const data = workerData as { loadedWorkers?: Int32Array; kdfEngine?: string; keptKdf?: Int32Array; kdfEngines?: Int32Array } | null | undefined;
// QVMB_KDF=openssl or =wasm fixes the scrypt engine (kdf-engine.ts), for comparisons
if (data?.kdfEngine === 'openssl' || data?.kdfEngine === 'wasm' || data?.kdfEngine === 'auto') setKdfEngineMode(data.kdfEngine);
if (data?.kdfEngines instanceof Int32Array) countDerivationsIn(data.kdfEngines);
// how many workers keep memory for scrypt, for the pool (WorkerPool.dropKeptKdfMemory)
if (data?.keptKdf instanceof Int32Array) countKeptMemoryIn(data.keptKdf);
const loaded = data?.loadedWorkers;
if (loaded instanceof Int32Array) {
  Atomics.add(loaded, 0, 1);
  Atomics.notify(loaded, 0);
}
