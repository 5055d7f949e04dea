// Which engine derives a scrypt key on this thread: our WebAssembly module (scrypt-romix.ts) or
// node:crypto (OpenSSL). The keys are the same; the speed is not, and neither engine is the faster
// everywhere. Measured on this kind of machine (BENCHMARKS.md): one host ran a logN 19 derivation
// in ~0.85 s in the module against ~1.25 s in OpenSSL; after a restart (another host) the module
// took ~1.5 s and OpenSSL ~1.0–1.2 s with huge pages, its compute alone ~0.6x the module's. So each
// thread measures before its first derivation: a small one (logN 9, r 8: 512 KiB, a few ms) in each
// engine, three times, the faster run of each kept. Then:
// - memory this thread already keeps, large enough, is always used: nothing to fault in;
// - the module derives when it computes at least as fast: it also keeps its memory where the
//   caller's budget allows, so no derivation faults in fresh pages;
// - otherwise OpenSSL derives, and each of its derivations is timed with what the small run did
//   not see: OpenSSL allocates its memory per derivation (512 MiB at logN 19) and frees it after,
//   and that first touch costs 0.1–1.4 s on this VM depending on huge pages and on the host. A
//   derivation that took longer than the module would have (its measured rate, +10 %) sends every
//   derivation of that memory size or more to the module from then on.
// QVMB_KDF=openssl or =wasm (passed by the pool) fixes the engine, for comparisons.
import { scryptSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { dropKeptMemory, keptBytes, moduleRunner, romixBytes, runsInModule, scryptWasm } from './scrypt-romix.js';

export type KdfEngineMode = 'auto' | 'wasm' | 'openssl';
export type KdfEngine = 'wasm' | 'openssl';

/** The measurement: logN 9, r 8, p 1 (512 KiB; its V fits the caches as a large one's does not,
 *  but per unit of work the two engines kept their ratio from logN 8 to 19 here). Three runs of
 *  each, the fastest counted: the first two of OpenSSL's land in fresh memory (glibc maps the first
 *  and takes the second from a grown heap), and so does the module's first. */
const PROBE = { logN: 9, r: 8, p: 1 } as const;
const PROBE_RUNS = 3;
/** OpenSSL's derivations of a size must average over the module's expected time by this factor
 *  before that size goes to the module: single derivations vary, and the module's first derivation
 *  of a size faults its memory in. */
const MARGIN = 1.3;
/** glibc's largest mmap threshold (64-bit): OpenSSL's memory for a derivation larger than this is
 *  mapped fresh and unmapped every time, a smaller one comes from the heap and is reused. */
const FRESH_EVERY_TIME = 32 * 2 ** 20;
/** Below FRESH_EVERY_TIME, OpenSSL's first two derivations of a size land in fresh memory (glibc
 *  maps the first, the second grows the heap), as the module's first does, and are not counted;
 *  then two must be too slow. Above it every derivation pays that, the first one tells. */
const warmUp = (bytes: number): number => (bytes > FRESH_EVERY_TIME ? 0 : 2);
const minSamples = (bytes: number): number => (bytes > FRESH_EVERY_TIME ? 1 : 2);

/** This thread's time on a core, in ms: the first field of /proc/thread-self/schedstat (ns), or
 *  null where that file is not readable. The kernel brings it up to date at each tick, so it may
 *  lag by one (TICK_MS at most, HZ 100). */
const threadCpuMs: (() => number) | null = ((): (() => number) | null => {
  const read = (): number => Number(readFileSync('/proc/thread-self/schedstat', 'latin1').split(' ', 1)[0]) / 1e6;
  try {
    return Number.isFinite(read()) ? read : null;
  } catch {
    return null; // not Linux, or no scheduler statistics
  }
})();
const TICK_MS = 10;

/** How long `f` kept this thread busy, in ms: its time on a core where known (a derivation's own work
 *  and page faults, not the time the other threads — two workers and the main thread on two cores
 *  here — held the core), never more than the wall time. */
function timed<T>(f: () => T): { value: T; ms: number } {
  const c0 = threadCpuMs?.() ?? 0;
  const t0 = performance.now();
  const value = f();
  const wall = performance.now() - t0;
  return { value, ms: threadCpuMs === null ? wall : Math.min(wall, threadCpuMs() - c0 + TICK_MS) };
}

let mode: KdfEngineMode = 'auto';
/** ms per unit of work (N·r·p) of each engine on this thread; null: the module does not run here */
let rates: { wasm: number; openssl: number } | null | undefined;
/** memory size from which OpenSSL's derivations were found slower than the module's would be */
let moduleFrom = Infinity;
/** OpenSSL's timed derivations per memory size: count and ms per unit of work, summed */
const observed = new Map<number, { seen: number; n: number; msPerUnit: number }>();
/** derivations per engine on this thread's pool (shared with the pool; [wasm, openssl]) */
let counts: Int32Array | undefined;

/** Fix the engine (QVMB_KDF), or 'auto' (the default): by measured speed. */
export function setKdfEngineMode(m: KdfEngineMode): void {
  mode = m;
}

/** Count this thread's derivations per engine in `counter` ([wasm, openssl], shared by the pool). */
export function countDerivationsIn(counter: Int32Array): void {
  counts = counter;
}

/** For tests: set what was measured (undefined: the next derivation measures), forget the rest. */
export function resetKdfEngineForTest(r?: { wasm: number; openssl: number } | null): void {
  rates = r;
  moduleFrom = Infinity;
  observed.clear();
}

/** For tests: what this thread measured (undefined: not yet). */
export function measuredRatesForTest(): { wasm: number; openssl: number } | null | undefined {
  return rates;
}

function measure(): { wasm: number; openssl: number } | null {
  const run = moduleRunner(PROBE.logN, PROBE.r, PROBE.p);
  if (run === null) return null;
  const pass = Buffer.alloc(8);
  const salt = Buffer.alloc(32);
  const N = 2 ** PROBE.logN;
  let wasm = Infinity;
  let openssl = Infinity;
  for (let i = 0; i < PROBE_RUNS; i++) {
    // runs of ~1 ms: the wall clock (the thread's own time moves by ticks), the fastest of three
    let t = performance.now();
    run(pass, salt);
    wasm = Math.min(wasm, performance.now() - t);
    t = performance.now();
    scryptSync(pass, salt, 64, { N, r: PROBE.r, p: PROBE.p });
    openssl = Math.min(openssl, performance.now() - t);
  }
  const units = N * PROBE.r * PROBE.p;
  return { wasm: wasm / units, openssl: openssl / units };
}

/** Which engine this thread would run a derivation of these parameters with now. */
export function engineFor(logN: number, r: number, p: number): KdfEngine {
  if (mode === 'openssl' || !runsInModule(logN, r, p)) return 'openssl';
  if (mode === 'wasm') return 'wasm';
  const bytes = romixBytes(2 ** logN, r, p);
  if (keptBytes() >= bytes || bytes >= moduleFrom) return 'wasm';
  if (rates === undefined) rates = measure();
  return rates === null || rates.wasm <= rates.openssl ? 'wasm' : 'openssl';
}

/**
 * scrypt(passphrase, salt, 2^logN, r, p) of `dkLen` bytes by the engine engineFor() chooses.
 * `keep`: the caller's budget counts this thread as keeping a derivation's memory; `maxmem` is
 * node:crypto's limit.
 */
export function deriveScrypt(passphrase: Uint8Array, salt: Uint8Array, logN: number, r: number, p: number, dkLen: number, keep: boolean, maxmem: number): Buffer {
  if (engineFor(logN, r, p) === 'wasm') {
    const key = scryptWasm(passphrase, salt, logN, r, p, dkLen, keep);
    if (key !== null) {
      if (counts !== undefined) Atomics.add(counts, 0, 1);
      return key;
    }
  } else if (keep) {
    // the budget counts this derivation as this thread's kept memory: what the thread keeps (too
    // small for it) must not stay beside node:crypto's
    dropKeptMemory();
  }
  const run = (): Buffer => scryptSync(passphrase, salt, dkLen, { N: 2 ** logN, r, p, maxmem });
  let key: Buffer;
  // timed only where OpenSSL was chosen over the module for its speed
  if (mode === 'auto' && rates != null && rates.openssl < rates.wasm && runsInModule(logN, r, p)) {
    const t = timed(run);
    learn(romixBytes(2 ** logN, r, p), t.ms / (2 ** logN * r * p));
    key = t.value;
  } else {
    key = run();
  }
  if (counts !== undefined) Atomics.add(counts, 1, 1);
  return key;
}

/** An OpenSSL derivation of `bytes` took `msPerUnit`: counted after warmUp(bytes) of that size; when
 *  the counted ones (minSamples at least) average too slow against the module, that size and larger
 *  go to the module. */
function learn(bytes: number, msPerUnit: number): void {
  const o = observed.get(bytes) ?? { seen: 0, n: 0, msPerUnit: 0 };
  observed.set(bytes, o);
  if (++o.seen <= warmUp(bytes)) return;
  o.n++;
  o.msPerUnit += msPerUnit;
  if (rates != null && o.n >= minSamples(bytes) && o.msPerUnit / o.n > rates.wasm * MARGIN) moduleFrom = Math.min(moduleFrom, bytes);
}
