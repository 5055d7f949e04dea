// Which engine derives a scrypt key on this thread: our WebAssembly module (scrypt-romix.ts) or
// node:crypto (OpenSSL). The keys are the same; the speed is not, and neither engine is the faster
// everywhere. Measured on this kind of machine (BENCHMARKS.md): one host ran a logN 19 derivation
// in ~0.85 s in the module against ~1.25 s in OpenSSL; after a restart (another host) the module
// took ~1.5 s and OpenSSL ~1.0–1.2 s with huge pages (its compute ~0.6x the module's at logN 9–12).
// So each thread measures before its first derivation larger than 32 MiB: a small one (logN 9, r 8:
// 512 KiB, ~1 ms) in each engine, five times in turns, the fastest run of each counted. Derivations
// up to 32 MiB (logN 15 at r 8) are not worth it at first: the measurement costs 15-30 ms of a
// worker's first task, on the way to the first chunk, where the engines differ by a few ms; OpenSSL
// derives them until a larger one measured (and the module if OpenSSL refuses scrypt), or until the
// thread has derived SMALL_UNMEASURED of them: a run of many small VMs (one derivation per file)
// then measures once, as the engines differ by a few ms on every one of the many still to come.
// Then:
// - memory this thread already keeps, large enough, is used: nothing to fault in (unless the
//   module was timed slower than OpenSSL at a size it was sent: the last point);
// - the module derives when it computes at least as fast: it also keeps its memory where the
//   caller's budget allows, so no derivation faults in fresh pages;
// - otherwise OpenSSL derives. Where the runtime tells a thread's own CPU time (process.
//   threadCpuUsage, Node 24; not Node 20) its large derivations are timed with what the small run
//   did not see: above 32 MiB OpenSSL maps its memory per derivation and unmaps it after (512 MiB
//   at logN 19), and that first touch costs 0.1–1.4 s on this VM depending on huge pages and on
//   the host. One that took longer than the module would have (its measured rate, +30 %) sends
//   every derivation of that memory size or more to the module from then on (but see the last
//   point). The wall clock cannot tell that from the other threads holding the cores (two workers
//   and the main thread on two cores flipped logN 17 to the module in one run of two, review): on
//   Node 20 the probe decides.
// - the module's rate is the probe's, whose memory fits the caches; a large derivation's does not,
//   and the module can be slower there than the probe says (here at logN 19: ~1.5 s against
//   OpenSSL's ~1.0 s, and one Node 24 backup of three sent its sizes to the module and took 24 %
//   longer). So once sizes went to the module, its first derivation of one in memory it already
//   keeps (not its first of a size, which faults that memory in) is timed too, once: slower per
//   unit of work (N·r·p) than the fastest of OpenSSL's timed ones by BACK_MARGIN (a thread's CPU
//   time only ever errs upward), every size it was sent goes back to OpenSSL for good, none is
//   sent to it again, and the kept memory is released. Where the probe chose the module outright,
//   nothing is timed (it also keeps its memory there).
// A failing measurement never fails a derivation: OpenSSL failing there leaves the module, the
// module failing leaves what ran before this choice existed (the module where it can, else OpenSSL).
// QVMB_KDF=openssl or =wasm (passed by the pool) fixes the engine, for comparisons.
import { scryptSync } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { dropKeptMemory, keptBytes, moduleRunner, romixBytes, runsInModule, scryptWasm } from './scrypt-romix.js';
import { youngGc } from './young-gc.js';

export type KdfEngineMode = 'auto' | 'wasm' | 'openssl';
export type KdfEngine = 'wasm' | 'openssl';
/** ms per unit of work (N·r·p) of each engine, as measured on this thread */
export interface KdfRates {
  wasm: number;
  openssl: number;
}

/** The measurement: logN 9, r 8, p 1 (512 KiB). Its V fits the caches where a large one's does
 *  not, which favours neither engine much (OpenSSL/module 0.6 at logN 9–12, ~0.7–1.1 at logN 19
 *  with its fresh pages, here). Five runs of each in turns, the fastest counted: runs of ~1 ms share
 *  the cores with the other threads starting up, and the first ones land in fresh memory. */
const PROBE = { logN: 9, r: 8, p: 1 } as const;
const PROBE_RUNS = 5;
/** OpenSSL's derivation must exceed the module's expected time by this factor to send its size to
 *  the module (single derivations vary, and the module's first derivation of a size faults its
 *  memory in). */
const MARGIN = 1.3;
/** ... and the module, timed after that, must exceed OpenSSL's fastest timed derivation by this
 *  (per unit of work) to send them back: a module derivation in kept memory varied by ~3 % here,
 *  OpenSSL's by 10-12 % (Node 24, logN 17 and 18, 12 runs each: BENCHMARKS). */
const BACK_MARGIN = 1.1;
/** glibc's largest mmap threshold (64-bit): OpenSSL's memory for a derivation larger than this is
 *  mapped fresh and unmapped every time; a smaller one comes from the heap and is reused, so its
 *  cost is the compute the probe measured. Only larger derivations are timed. */
const FRESH_EVERY_TIME = 32 * 2 ** 20;
/** A "small" derivation: up to this memory it goes to OpenSSL unmeasured (the probe costs more than
 *  the engines differ by; until a thread has run SMALL_UNMEASURED of them), and
 *  WorkerPool.deriveWhileLoading may run it before the workers load. */
export const SMALL_DERIVATION_BYTES = FRESH_EVERY_TIME;
/** Small derivations a thread runs in OpenSSL before it measures (those the measurement could
 *  change: `keep`, the engine not fixed): a restore of a 1 GiB image (3-4 per worker) never pays
 *  for the probe, one of many small VMs pays it once and gains on each derivation after it where
 *  the module is the faster (logN 14 here, one derivation: ~24 ms in the module keeping its memory
 *  against ~29 in OpenSSL; on the host before, OpenSSL computed faster). */
const SMALL_UNMEASURED = 8;
/** A timed derivation shorter than this says nothing (the thread clock moves by ticks). */
const MIN_SAMPLE_MS = 100;

/** This thread's time on a core in ms (process.threadCpuUsage, Node ≥ 23.9), or null (Node 20). */
const threadCpuMs: (() => number) | null = ((): (() => number) | null => {
  const usage = (process as { threadCpuUsage?: () => { user: number; system: number } }).threadCpuUsage;
  if (typeof usage !== 'function') return null;
  return () => {
    const u = usage.call(process);
    return (u.user + u.system) / 1000;
  };
})();
/** the thread clock's step at most (a tick at HZ 100) */
const TICK_MS = 10;

type Timer = <T>(f: () => T) => { value: T; ms: number };

/** Times a call by how long it kept this thread busy, in ms: its time on a core by `clock` (a
 *  derivation's own work and page faults, not the time the other threads — two workers and the
 *  main thread on two cores here — held the core), never more than the wall time. */
const onCpu = (clock: () => number): Timer => (f) => {
  const c0 = clock();
  const t0 = performance.now();
  const value = f();
  const wall = performance.now() - t0;
  return { value, ms: Math.min(wall, clock() - c0 + TICK_MS) };
};
/** how OpenSSL's derivations are timed where nothing else is asked; null: they are not (no thread clock) */
const RUNTIME_TIMER: Timer | null = threadCpuMs === null ? null : onCpu(threadCpuMs);

let mode: KdfEngineMode = 'auto';
/** undefined: not measured yet; null: the module does not run here */
let rates: KdfRates | null | undefined;
/** memory size from which OpenSSL's derivations were found slower than the module's would be */
let moduleFrom = Infinity;
/** the module, timed after that, was found slower than OpenSSL: OpenSSL derives from then on */
let moduleSlower = false;
/** the fastest of OpenSSL's timed large derivations, in ms per unit of work (N·r·p) */
let opensslBestMsPerUnit = Infinity;
/** the module, sent sizes by OpenSSL's timings, was timed (that decided, either way) */
let moduleTimed = false;
/** derivations per engine on this thread's pool (shared with the pool; [wasm, openssl]) */
let counts: Int32Array | undefined;
let timer: Timer | null = RUNTIME_TIMER;
/** small derivations run in OpenSSL before anything was measured (SMALL_UNMEASURED) */
let smallUnmeasured = 0;

/** Fix the engine (QVMB_KDF), or 'auto' (the default): by measured speed. */
export function setKdfEngineMode(m: KdfEngineMode): void {
  mode = m;
}

/** Count this thread's derivations per engine in `counter` ([wasm, openssl], shared by the pool). */
export function countDerivationsIn(counter: Int32Array): void {
  counts = counter;
}

/** For tests: set what was measured (undefined: the next derivation measures), forget the rest;
 *  `time` replaces the clock of OpenSSL's derivations. */
export function resetKdfEngineForTest(r?: KdfRates | null, time?: Timer): void {
  rates = r;
  moduleFrom = Infinity;
  moduleSlower = false;
  opensslBestMsPerUnit = Infinity;
  moduleTimed = false;
  timer = time ?? RUNTIME_TIMER;
  smallUnmeasured = 0;
}

/** For tests: whether OpenSSL's large derivations are timed on this runtime (a thread clock). */
export function timesOpenSslForTest(): boolean {
  return RUNTIME_TIMER !== null;
}

/** For tests: what this thread measured (undefined: not yet). */
export function measuredRatesForTest(): KdfRates | null | undefined {
  return rates;
}

function measure(): KdfRates | null {
  const units = 2 ** PROBE.logN * PROBE.r * PROBE.p;
  let wasm = Infinity;
  let openssl = Infinity;
  let refused = false;
  try {
    const run = moduleRunner(PROBE.logN, PROBE.r, PROBE.p);
    if (run === null) return null;
    const pass = Buffer.alloc(8);
    const salt = Buffer.alloc(32);
    const time = (f: () => unknown): number => {
      const t = performance.now();
      f();
      return performance.now() - t;
    };
    for (let i = 0; i < PROBE_RUNS; i++) {
      wasm = Math.min(wasm, time(() => run(pass, salt)));
      // OpenSSL without scrypt (a provider that refuses it): the module only
      if (!refused) {
        try {
          openssl = Math.min(openssl, time(() => scryptSync(pass, salt, 64, { N: 2 ** PROBE.logN, r: PROBE.r, p: PROBE.p })));
        } catch {
          refused = true;
          openssl = Infinity;
        }
      }
    }
  } catch {
    return null; // the module failed: scryptWasm decides as it did before there was a choice
  }
  return { wasm: wasm / units, openssl: openssl / units };
}

/** Which engine this thread would run a derivation of these parameters with now. */
export function engineFor(logN: number, r: number, p: number): KdfEngine {
  if (mode === 'openssl' || !runsInModule(logN, r, p)) return 'openssl';
  if (mode === 'wasm') return 'wasm';
  const bytes = romixBytes(2 ** logN, r, p);
  if (moduleSlower) return 'openssl';
  if (keptBytes() >= bytes || bytes >= moduleFrom) return 'wasm';
  if (rates === undefined && bytes <= SMALL_DERIVATION_BYTES && smallUnmeasured < SMALL_UNMEASURED) return 'openssl';
  if (rates === undefined) {
    rates = measure();
    // the probe's instance (unreachable now) reserved its own address space, ~10 GiB with V8's
    // guard regions: collected before a kept instance may need the room
    try {
      youngGc()?.();
    } catch {
      // a host-provided collector that fails: the space comes back at the next collection
    }
  }
  return rates === null || rates.wasm <= rates.openssl ? 'wasm' : 'openssl';
}

/**
 * scrypt(passphrase, salt, 2^logN, r, p) of `dkLen` bytes by the engine engineFor() chooses.
 * `keep`: the caller's budget counts this thread as keeping a derivation's memory; `maxmem` is
 * node:crypto's limit.
 */
export function deriveScrypt(passphrase: Uint8Array, salt: Uint8Array, logN: number, r: number, p: number, dkLen: number, keep: boolean, maxmem: number): Buffer {
  const units = 2 ** logN * r * p;
  const bytes = romixBytes(2 ** logN, r, p);
  if (engineFor(logN, r, p) === 'wasm') {
    // sent to the module by OpenSSL's timings, into memory it keeps already: timed against them, once
    const clock = mode === 'auto' && bytes >= moduleFrom && !moduleTimed && keptBytes() >= bytes ? timer : null;
    const run = (): Buffer | null => scryptWasm(passphrase, salt, logN, r, p, dkLen, keep);
    const t = clock !== null ? clock(run) : { value: run(), ms: 0 };
    const key = t.value;
    if (key !== null && clock !== null) learnModule(t.ms, units);
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
  // timed only where OpenSSL was chosen over the module for its speed, and pays fresh memory
  if (timer !== null && mode === 'auto' && rates != null && rates.openssl < rates.wasm && bytes > FRESH_EVERY_TIME && runsInModule(logN, r, p)) {
    const t = timer(run);
    key = t.value;
    learn(bytes, t.ms, units, rates.wasm);
  } else {
    try {
      key = run();
    } catch (e) {
      // chosen without measuring (a small derivation) and refused (OpenSSL without scrypt): measure
      // now; the module derives where it runs
      if (rates !== undefined || mode !== 'auto') throw e;
      rates = measure();
      const k = engineFor(logN, r, p) === 'wasm' ? scryptWasm(passphrase, salt, logN, r, p, dkLen, keep) : null;
      if (k === null) throw e;
      if (counts !== undefined) Atomics.add(counts, 0, 1);
      return k;
    }
  }
  // counted only where the measurement could change the engine: the module keeps its memory only
  // with `keep` (without it, it runs only in memory kept already), and runs these parameters
  if (rates === undefined && keep && mode === 'auto' && bytes <= SMALL_DERIVATION_BYTES && runsInModule(logN, r, p)) smallUnmeasured++;
  if (counts !== undefined) Atomics.add(counts, 1, 1);
  return key;
}

/** An OpenSSL derivation of `bytes` took `ms` for `units` of work where the module's probe rate
 *  (ms per unit) is `moduleRate`: recorded; slower by MARGIN, that size and larger go to the module
 *  (unless it was timed slower already: its rate is per unit of work, so no size goes to it again). */
function learn(bytes: number, ms: number, units: number, moduleRate: number): void {
  if (ms < MIN_SAMPLE_MS) return;
  opensslBestMsPerUnit = Math.min(opensslBestMsPerUnit, ms / units);
  if (ms > moduleRate * units * MARGIN && !moduleSlower) moduleFrom = Math.min(moduleFrom, bytes);
}

/** The module, sent sizes by learn(), took `ms` for `units` of work in memory it kept (a sample
 *  under MIN_SAMPLE_MS says nothing: the next is timed). Slower than OpenSSL's fastest by
 *  BACK_MARGIN, every size it was sent goes back to OpenSSL for good. */
function learnModule(ms: number, units: number): void {
  if (ms < MIN_SAMPLE_MS) return;
  moduleTimed = true;
  if (ms / units <= opensslBestMsPerUnit * BACK_MARGIN) return;
  moduleSlower = true;
  moduleFrom = Infinity;
  // not kept beside OpenSSL's memory (this derivation's key is out already)
  try {
    dropKeptMemory();
  } catch {
    // a host-provided collector that fails: the memory comes back at the next collection
  }
}
