// scrypt (RFC 7914) with its memory-hard step in WebAssembly SIMD (scripts/scrypt-wasm.mjs) and the
// two PBKDF2-HMAC-SHA256 steps in node:crypto. Why a module of our own beside node:crypto's scryptSync
// (OpenSSL), and which of the two derives, is kdf-engine.ts's business:
// - OpenSSL's Salsa20/8 is scalar C; on one host of this kind the SIMD module took ~0.85 CPU-s for a
//   logN 19, r = 8 derivation where OpenSSL took ~1.25 s, on another OpenSSL was the faster;
// - OpenSSL allocates its 512 MiB (at logN 19) per derivation and frees it after, so every
//   derivation faults in fresh pages: 0.1–1.4 s on this VM, where freed memory goes back to the
//   host (BENCHMARKS.md). A worker may instead keep its module's memory between derivations
//   (`keep`), when the caller's memory budget holds one derivation per thread anyway.
// The memory the derivation used is zeroed before returning (kept or not): it holds B =
// PBKDF2(P, S), from which a passphrase guess could be checked without the memory-hard work.
import { pbkdf2Sync } from 'node:crypto';
import { ROMIX_WASM_BASE64 } from './scrypt-romix-wasm.js';
import { youngGc } from './young-gc.js';

/** Largest memory (bytes) a derivation runs with in the module; larger ones use OpenSSL's. */
export const WASM_SCRYPT_MAX_BYTES = 3 * 2 ** 30;
const PAGE = 65536;
/** Largest B (128·r·p bytes) run here (r = 8, p = 1: 1 KiB). */
const B_MAX_BYTES = 2 ** 20;

// the WebAssembly global, as far as used here (the project's type libraries do not declare it)
interface WasmMemory {
  readonly buffer: ArrayBuffer;
  grow(pages: number): number;
}
const Wasm = (globalThis as unknown as { WebAssembly: { Module: new (bytes: Uint8Array) => object; Instance: new (m: object) => { exports: unknown } } }).WebAssembly;

interface Romix {
  memory: WasmMemory;
  romix: (b: number, x: number, y: number, v: number, r: number, n: number) => void;
}

let module: object | undefined;
/** the runtime cannot compile or run the module (no WebAssembly SIMD): node:crypto from now on */
let opensslOnly = false;
/** this thread's kept instance (its memory only grows, until dropKeptMemory) */
let kept: Romix | undefined;
/** shared with the pool: how many threads keep an instance (the pool's workerData gives it) */
let holders: Int32Array | undefined;

/** Count this thread's kept instance in `counter` (shared by the pool's threads). */
export function countKeptMemoryIn(counter: Int32Array): void {
  holders = counter;
}

/**
 * Release the kept instance's memory now (the pool asks every thread when a derivation would not
 * fit beside what they keep): dropped, then a full collection frees the module's memory (measured:
 * gone from the RSS within milliseconds), and the shared count goes down.
 */
export function dropKeptMemory(): void {
  if (kept === undefined) return;
  kept = undefined;
  try {
    youngGc()?.();
  } finally {
    // counted down even when the collector throws: this thread keeps nothing any more
    if (holders !== undefined) {
      Atomics.sub(holders, 0, 1);
      Atomics.notify(holders, 0);
    }
  }
}

function instantiate(): Romix {
  module ??= new Wasm.Module(Buffer.from(ROMIX_WASM_BASE64, 'base64'));
  const e = new Wasm.Instance(module).exports as Romix;
  return { memory: e.memory, romix: e.romix };
}

/** Memory for one derivation: B (128·r·p), X and Y (128·r each), V (128·r·N). */
export function romixBytes(N: number, r: number, p: number): number {
  return 128 * r * (p + 2 + N);
}

/**
 * The instance to run with, its memory grown to `bytes`, or null. Without `keep` only an instance
 * this thread already keeps and large enough is used: a new one's memory would be released only
 * when the collector finds it, and the budget counts on a derivation's memory being freed when it
 * ends (OpenSSL frees its own at once).
 */
function instanceFor(bytes: number, keep: boolean): Romix | null {
  if (!keep) return kept !== undefined && kept.memory.buffer.byteLength >= bytes ? kept : null;
  if (kept === undefined) {
    try {
      kept = instantiate();
      if (holders !== undefined) Atomics.add(holders, 0, 1);
    } catch {
      opensslOnly = true; // a runtime without WebAssembly SIMD: node:crypto from now on
      return null;
    }
  }
  try {
    growTo(kept, bytes);
  } catch {
    return null; // out of memory: OpenSSL may still manage, or fail with its own error
  }
  return kept;
}

/** Grow the instance's memory to at least `bytes` (throws where it cannot). */
function growTo(inst: Romix, bytes: number): void {
  const have = inst.memory.buffer.byteLength;
  if (have < bytes) inst.memory.grow(Math.ceil((bytes - have) / PAGE));
}

/**
 * Whether a derivation with these parameters runs in the module. Left to node:crypto: too large
 * for it, a B over 1 MiB (a huge p: here it would be copied twice more, and kept) and N >= 2^(16r),
 * which OpenSSL refuses (the result must never depend on where it ran). The restore's budget keeps
 * memory only for derivations that run here.
 */
export function runsInModule(logN: number, r: number, p: number): boolean {
  return logN >= 1 && romixBytes(2 ** logN, r, p) <= WASM_SCRYPT_MAX_BYTES && p * 128 * r <= B_MAX_BYTES && logN < 16 * r;
}

/**
 * scrypt(passphrase, salt, N = 2^logN, r, p) of `dkLen` bytes, or null when it does not run here
 * (memory over WASM_SCRYPT_MAX_BYTES, the module's memory could not grow, or no `keep` and no kept
 * memory large enough): the caller then uses node:crypto. `keep`: this thread keeps the memory for
 * its next derivation.
 */
export function scryptWasm(passphrase: Uint8Array, salt: Uint8Array, logN: number, r: number, p: number, dkLen: number, keep: boolean): Buffer | null {
  const bytes = romixBytes(2 ** logN, r, p);
  const inst = !opensslOnly && runsInModule(logN, r, p) ? instanceFor(bytes, keep) : null;
  if (inst === null) {
    // the budget counted this derivation as running in the memory this thread keeps: node:crypto's
    // must not come on top of it
    if (keep) dropKeptMemory();
    return null;
  }
  return deriveIn(inst, passphrase, salt, logN, r, p, dkLen);
}

/** One derivation in `inst` (its memory at least romixBytes large); the memory is zeroed after. */
function deriveIn(inst: Romix, passphrase: Uint8Array, salt: Uint8Array, logN: number, r: number, p: number, dkLen: number): Buffer {
  const N = 2 ** logN;
  const blockBytes = 128 * r;
  const bytes = romixBytes(N, r, p);
  const B = pbkdf2Sync(passphrase, salt, 1, p * blockBytes, 'sha256');
  const mem = new DataView(inst.memory.buffer, 0, bytes);
  try {
    // B into the module's lane order (scripts/scrypt-wasm.mjs); words are little-endian in both
    for (let s = 0; s < B.length; s += 64) for (let k = 0; k < 16; k++) mem.setUint32(s + 4 * k, B.readUInt32LE(s + 4 * LANE_ORDER[k]!), true);
    const x = p * blockBytes;
    for (let i = 0; i < p; i++) inst.romix(i * blockBytes, x, x + blockBytes, x + 2 * blockBytes, r, N);
    for (let s = 0; s < B.length; s += 64) for (let k = 0; k < 16; k++) B.writeUInt32LE(mem.getUint32(s + 4 * k, true), s + 4 * LANE_ORDER[k]!);
    return pbkdf2Sync(passphrase, B, 1, dkLen, 'sha256');
  } finally {
    new Uint8Array(inst.memory.buffer, 0, bytes).fill(0);
    B.fill(0);
  }
}

/**
 * For measuring the module against node:crypto (kdf-engine.ts): a derivation function running in
 * an instance of its own (not the kept one: nothing counted as kept changes), or null where the
 * module does not run here. The instance's memory is freed with the function.
 */
export function moduleRunner(logN: number, r: number, p: number): ((passphrase: Uint8Array, salt: Uint8Array) => Buffer) | null {
  if (opensslOnly || !runsInModule(logN, r, p)) return null;
  // any failure here only ends the measurement: instanceFor() decides whether the module runs
  let inst: Romix;
  try {
    inst = instantiate();
    growTo(inst, romixBytes(2 ** logN, r, p));
  } catch {
    return null;
  }
  return (passphrase, salt) => deriveIn(inst, passphrase, salt, logN, r, p, 64);
}

/** Bytes of module memory this thread keeps (0: none). */
export function keptBytes(): number {
  return kept === undefined ? 0 : kept.memory.buffer.byteLength;
}

/** Which word of a Salsa20 block sits at each position in the module's memory. */
const LANE_ORDER = [0, 5, 10, 15, 12, 1, 6, 11, 8, 13, 2, 7, 4, 9, 14, 3];

/** For tests: the memory this thread keeps (null when none), to see it zeroed after use. */
export function keptMemoryForTest(): Uint8Array | null {
  return kept === undefined ? null : new Uint8Array(kept.memory.buffer);
}
