// Bounds on the scrypt key derivations a format 4 archive may ask for. Each scrypt file (the header
// copy, qubes.xml.000.enc, every data chunk) states its own logN, r, p, and they are only
// authenticated once the derivation is done; so they are checked against --max-memory (memory per
// derivation) and a work budget (N·r·p) BEFORE anything is derived, and derivations run only as many
// at once as the memory allows.
import { QvmBackupError, type ErrorContext } from '../../errors.js';
import { checkScryptParams, readScryptHeader, scryptCost, type KdfMemory, type ScryptParams } from '../../../workers/scrypt-file.js';
import { runsInModule, WASM_SCRYPT_MAX_BYTES } from '../../../workers/scrypt-romix.js';
import { MIN_CHUNK_MEMORY_BYTES } from './restore-memory.js';

const MiB = 1024 * 1024;
/** Kept out of a derivation's share of --max-memory: two 100 MiB chunks in flight (255, not 256:
 *  so that logN n at r = 8, a few KiB over 2^(n+10) bytes, fits in a round --max-memory). */
export const CHUNK_ROOM_BYTES = 255 * MiB;
/** A derivation may always use this much (logN 16 at r = 8), even under a tiny --max-memory. */
const MIN_KDF_BYTES = 65 * MiB;
/** Work (N·r·p) always allowed: logN 22 at r = 8, p = 1, ~22 s here (Qubes' writer aims at 5 s). */
export const DEFAULT_MAX_KDF_WORK = 2 ** 25;
/** Smallest default --max-memory of a restore: one derivation of logN 21, r = 8 (2 GiB, what
 *  `scrypt enc` picks on big machines) beside two chunks. */
export const RESTORE_MIN_MAX_MEMORY = 2560 * MiB;

/** What one derivation may cost under --max-memory `maxMemory`. */
export interface KdfLimits {
  maxKdfBytes: number;
  maxKdfWork: number;
}

/** Per-derivation limits for `maxMemory`: its memory minus the chunks' room; work at least the
 *  default budget, and as much as a p = 1 derivation of the allowed memory does. */
export function kdfLimitsFor(maxMemory: number): KdfLimits {
  const maxKdfBytes = Math.max(maxMemory - CHUNK_ROOM_BYTES, MIN_KDF_BYTES);
  return { maxKdfBytes, maxKdfWork: Math.max(DEFAULT_MAX_KDF_WORK, Math.floor(maxKdfBytes / 128)) };
}

/** --max-memory needed for `q`: the inverse of kdfLimitsFor, rounded up to MiB. */
function neededMaxMemory(q: ScryptParams): number {
  const { bytes, work } = scryptCost(q);
  return Math.ceil((Math.max(bytes, work * 128) + CHUNK_ROOM_BYTES) / MiB) * MiB;
}

const mib = (n: number): string => `${Math.round(n / MiB)} MiB`;

/** The workers that derive: how many, and how to make them all release the memory they keep. */
export interface KdfWorkers {
  readonly threads: number;
  dropKeptKdfMemory(signal?: AbortSignal): Promise<void>;
}

/**
 * What the workers of one pool keep between derivations, shared by every budget on that pool (the
 * head's, then the data stage's): each thread may hold up to `each` bytes. Derivations that keep
 * their memory are counted while they run, so that a drop waits for them.
 */
class KeptMemory {
  each = 0;
  #running = 0;
  #idle: (() => void)[] = [];
  #dropping: Promise<void> | null = null;

  constructor(readonly workers: KdfWorkers) {}

  /** resolves when no drop is under way */
  settled(): Promise<void> {
    return this.#dropping ?? Promise.resolve();
  }

  /** a drop is under way */
  get dropping(): boolean {
    return this.#dropping !== null;
  }

  started(): () => void {
    this.#running++;
    return () => {
      if (--this.#running === 0) for (const wake of this.#idle.splice(0)) wake();
    };
  }

  /**
   * Make every worker release what it keeps, once the derivations keeping it have ended (no new
   * grant meanwhile: every decision waits for settled()). `each` becomes 0 only once the workers
   * have released it: after a failure it is still counted as kept.
   */
  drop(signal?: AbortSignal): Promise<void> {
    return (this.#dropping ??= (async () => {
      if (this.#running > 0) await new Promise<void>((resolve) => this.#idle.push(resolve));
      await this.workers.dropKeptKdfMemory(signal);
      this.each = 0;
    })().finally(() => (this.#dropping = null)));
  }
}

const keptByPool = new WeakMap<KdfWorkers, KeptMemory>();

/** What one derivation costs: its memory, and whether it runs in the WebAssembly module (only those
 *  keep their memory: scrypt-romix.ts). A plain number is a derivation of r = 8, p = 1: it runs
 *  there up to the module's size limit. */
export interface KdfCost {
  bytes: number;
  inModule: boolean;
}

/** A grant to derive: whether the worker keeps the memory, and what to give back after. */
interface Grant {
  keep: boolean;
  done: () => void;
}

/** --max-memory and the derivations it allows; a gate runs them only as many at once as fit. */
export class KdfBudget {
  readonly limits: KdfLimits;
  readonly threads: number;
  readonly #gate: KdfGate;
  /** derivations that keep their memory, at once: as many as the gate would hold (see #decide) */
  readonly #admitted: KdfGate;
  /** memory the workers may keep between derivations, all together (see run) */
  readonly #keepRoom: number;
  readonly #kept: KeptMemory | null;
  /** what the gate holds for the memory the workers keep (threads × kept.each) */
  #reserved = 0;
  /** decisions are taken one at a time, in order */
  #decided: Promise<unknown> = Promise.resolve();
  /** this budget had the workers release their memory for a derivation that did not fit */
  #released = false;

  /** `gateBytes`: memory for concurrent derivations (default all of `maxMemory`); `workers`: the
   *  pool that derives (without one, one thread and nothing kept). */
  constructor(
    readonly maxMemory: number,
    gateBytes = maxMemory,
    workers?: KdfWorkers,
  ) {
    this.limits = kdfLimitsFor(maxMemory);
    this.threads = workers?.threads ?? 1;
    this.#gate = new KdfGate(Math.max(gateBytes, this.limits.maxKdfBytes));
    this.#admitted = new KdfGate(this.#gate.capacity);
    this.#keepRoom = Math.min(gateBytes, maxMemory - MIN_CHUNK_MEMORY_BYTES);
    if (workers === undefined) this.#kept = null;
    else {
      let k = keptByPool.get(workers);
      if (k === undefined) keptByPool.set(workers, (k = new KeptMemory(workers)));
      this.#kept = k;
    }
  }

  /**
   * Check the parameters of scrypt file `file` (named `what` in messages) against the limits and
   * return its memory cost; throws ERR_TOO_LARGE when it asks for more than --max-memory allows.
   * A file whose header cannot be read costs 0 here: the worker reports its format error.
   */
  check(file: Uint8Array, what: string, context: ErrorContext): KdfCost {
    const h = readScryptHeader(file);
    if ('ok' in h) return { bytes: 0, inModule: false };
    const q: ScryptParams = { logN: h.logN, r: h.r, p: h.p };
    const params = `scrypt logN=${q.logN} r=${q.r} p=${q.p}`;
    const invalid = checkScryptParams(q);
    if (invalid !== null) throw new QvmBackupError('ERR_UNSUPPORTED', `${what}: unsupported ${params}: ${invalid}`, context);
    const { bytes, work } = scryptCost(q);
    const { maxKdfBytes, maxKdfWork } = this.limits;
    const allow = `allow it with --max-memory ${neededMaxMemory(q) / MiB}M or more`;
    if (bytes > maxKdfBytes) {
      throw new QvmBackupError('ERR_TOO_LARGE', `${what}: this archive asks for ${mib(bytes)} per key derivation (${params}); --max-memory ${mib(this.maxMemory)} allows ${Math.floor(maxKdfBytes / MiB)} MiB (the rest is for two chunks); ${allow}`, context);
    }
    if (work > maxKdfWork) {
      throw new QvmBackupError('ERR_TOO_LARGE', `${what}: this archive asks for N·r·p = 2^${Math.log2(work).toFixed(1)} of work per key derivation (${params}), as slow as a ${mib(work * 128)} one; --max-memory ${mib(this.maxMemory)} allows 2^${Math.log2(maxKdfWork).toFixed(1)}; ${allow}`, context);
    }
    return { bytes, inModule: runsInModule(q.logN, q.r, q.p) };
  }

  /**
   * Run `f` (a derivation of `bytes`) once the memory in use leaves room for it. `f` is told
   * whether its worker may keep the derivation's memory for the next one.
   *
   * The memory the workers keep is held in the gate as threads × the largest kept size, for as
   * long as they keep it: a derivation that fits in it runs in it (nothing more to count); one
   * that is larger becomes the kept size when every thread holding that much fits in this stage's
   * share of --max-memory (what is left beside two chunks: restore-memory.ts), else it runs in
   * node:crypto beside the kept memory, with its own bytes from the gate; and when those do not fit
   * beside it, every worker first releases what it keeps. So the derivations running and the
   * memory kept stay within the gate together, whatever mix of parameters an archive holds.
   */
  async run<T>(cost: number | KdfCost, f: (memory: KdfMemory) => Promise<T>, signal?: AbortSignal): Promise<T> {
    const { bytes, inModule } = typeof cost === 'number' ? { bytes: cost, inModule: cost <= WASM_SCRYPT_MAX_BYTES } : cost;
    const turn = this.#decided;
    const decision = (async () => {
      await turn;
      signal?.throwIfAborted();
      return this.#decide(bytes, inModule, signal);
    })();
    this.#decided = decision.catch(() => undefined);
    // an abort ends the wait at once; a grant that came at the same time is given back
    const grant = await new Promise<Grant>((resolve, reject) => {
      const onAbort = (): void => {
        reject(signal?.reason);
        void decision.then((g) => g.done(), () => undefined);
      };
      if (signal?.aborted) return onAbort();
      signal?.addEventListener('abort', onAbort, { once: true });
      decision.then(
        (g) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(g);
        },
        (e: unknown) => {
          signal?.removeEventListener('abort', onAbort);
          reject(e);
        },
      );
    });
    try {
      return await f(grant.keep ? { keepKdfMemory: true } : {});
    } finally {
      grant.done();
    }
  }

  async #decide(bytes: number, inModule: boolean, signal?: AbortSignal): Promise<Grant> {
    const kept = this.#kept;
    if (kept === null || bytes <= 0) {
      const w = await this.#gate.acquire(bytes, signal);
      return { keep: false, done: () => this.#gate.release(w) };
    }
    for (;;) {
      await kept.settled();
      // kept by an earlier stage beyond what this one may keep: released first
      if (this.threads * kept.each > this.#keepRoom) await this.#drop(kept, signal);
      // a size is kept only where the module runs it (the worker releases its memory otherwise)
      // and, after this budget had to release memory for a derivation, no more (parameters that
      // alternate would release and fault in the kept memory again and again)
      const keepable = inModule && !this.#released && this.threads * bytes <= this.#keepRoom;
      if (bytes > kept.each && keepable) kept.each = bytes;
      await this.#reserve(signal);
      if (inModule && bytes <= kept.each) {
        // its memory is counted in the reservation; how many are handed to the pool at once is
        // what the gate alone would admit (more would queue ahead of the chunks' other tasks there)
        const w = await this.#admitted.acquire(bytes, signal);
        // another budget on this pool may have begun a release meanwhile: decide again after it
        if (kept.dropping || bytes > kept.each) {
          this.#admitted.release(w);
          continue;
        }
        const ended = kept.started();
        return {
          keep: true,
          done: () => {
            ended();
            this.#admitted.release(w);
          },
        };
      }
      if (bytes > this.#gate.capacity - this.#reserved) {
        this.#released = true;
        await this.#drop(kept, signal);
      }
      const w = await this.#gate.acquire(bytes, signal);
      return { keep: false, done: () => this.#gate.release(w) };
    }
  }

  /**
   * Release the workers' kept memory once nothing of this budget runs: its derivations that do not
   * keep are waited for too, so that the release tasks do not wait behind them at their barrier.
   */
  async #drop(kept: KeptMemory, signal?: AbortSignal): Promise<void> {
    const all = await this.#gate.acquire(this.#gate.capacity - this.#reserved, signal);
    try {
      await kept.drop(signal);
    } finally {
      this.#gate.release(all);
    }
    await this.#reserve(signal);
  }

  /** Hold threads × kept.each in the gate (more once a larger size is kept, none after a drop). */
  async #reserve(signal?: AbortSignal): Promise<void> {
    const want = this.threads * (this.#kept?.each ?? 0);
    if (want < this.#reserved) {
      this.#gate.release(this.#reserved - want);
      this.#reserved = want;
    } else if (want > this.#reserved) {
      const more = want - this.#reserved;
      await this.#gate.acquire(more, signal);
      this.#reserved = want;
    }
  }
}

/** Weighted semaphore over bytes; FIFO, so a large derivation is not starved by small ones. */
class KdfGate {
  #free: number;
  readonly #waiters: { weight: number; resolve: () => void }[] = [];

  constructor(readonly capacity: number) {
    this.#free = capacity;
  }

  /** Take `bytes` (at most the capacity); resolves to the weight taken. */
  async acquire(bytes: number, signal?: AbortSignal): Promise<number> {
    signal?.throwIfAborted();
    const weight = Math.min(Math.max(bytes, 0), this.capacity);
    if (this.#waiters.length === 0 && weight <= this.#free) {
      this.#free -= weight;
      return weight;
    }
    await new Promise<void>((resolve, reject) => {
      const onAbort = (): void => {
        const i = this.#waiters.indexOf(w);
        if (i < 0) return;
        this.#waiters.splice(i, 1);
        this.#wake();
        reject(signal?.reason);
      };
      const w = {
        weight,
        resolve: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
      };
      this.#waiters.push(w);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
    return weight;
  }

  release(weight: number): void {
    this.#free += weight;
    this.#wake();
  }

  #wake(): void {
    for (let w = this.#waiters[0]; w !== undefined && w.weight <= this.#free; w = this.#waiters[0]) {
      this.#waiters.shift();
      this.#free -= w.weight;
      w.resolve();
    }
  }
}
