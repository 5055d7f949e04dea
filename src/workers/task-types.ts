// Task and result types of the worker pool: the only types shared between the main thread and
// the workers. Chunk bytes never cross threads by copy: they live in SharedArrayBuffer slots
// (`SharedSlice`, pooled and reused by the main thread) or in transferred ArrayBuffers.
// Expected failures (a MAC mismatch, bad parameters) come back as values `{ ok: false }`,
// because thrown errors lose their class and fields when they cross a thread.

/** A byte range inside a SharedArrayBuffer owned by the main thread's slot pool. */
export interface SharedSlice {
  sab: SharedArrayBuffer;
  offset: number;
  length: number;
}

/** Reasons a decode task can fail without throwing. */
export type FailReason = 'mac-mismatch' | 'bad-format' | 'bad-params' | 'too-large' | 'bad-padding' | 'bad-data';

export interface TaskFailure {
  ok: false;
  reason: FailReason;
  message: string;
}

/** compressBlock: one block into one complete gzip member or zstd frame (node:zlib, in-process). */
export interface CompressBlockTask {
  /** default gzip; zstd only where the runtime has it (blockCodecAvailable) */
  codec?: 'gzip' | 'zstd';
  level: number;
  input: SharedSlice;
  /** where the member is written; `output.length` is the capacity */
  output: SharedSlice;
}
export type CompressBlockResult = { ok: true; length: number } | TaskFailure;

/** gunzipMember: one gzip member that fills `input` exactly, decompressed into `output`, whose
 *  length is the member's decompressed size (its trailer's ISIZE): anything else fails 'bad-data'. */
export interface GunzipMemberTask {
  input: SharedSlice;
  output: SharedSlice;
}
export type GunzipMemberResult = { ok: true; length: number } | TaskFailure;

/** unzstdFrame: one zstd frame that fills `input` exactly, decompressed into `output`, whose length
 *  is the frame's content size (from its header): anything else fails 'bad-data'. */
export interface UnzstdFrameTask {
  input: SharedSlice;
  output: SharedSlice;
}
export type UnzstdFrameResult = { ok: true; length: number } | TaskFailure;

/** scryptEncrypt: Tarsnap scrypt file v0 of `input`, written to `output` (capacity >= input+128).
 *  In place is allowed when output.offset + 96 === input.offset on the same SAB. */
export interface ScryptEncryptTask {
  passphrase: string;
  logN: number;
  r: number;
  p: number;
  input: SharedSlice;
  output: SharedSlice;
  /** a key derived earlier by `scryptDerive` for this passphrase and salt (skips the KDF here) */
  derived?: { salt: Uint8Array; key: Uint8Array };
  /** the worker may keep the derivation's memory for its next one (scrypt-romix.ts) */
  keepKdfMemory?: boolean;
  /** Int32Array on a SharedArrayBuffer: [0] is how many bytes of the file are final in `output`
   *  (from its start), stored as they are and notified (Atomics.notify) every few MiB and when the
   *  task ends, however it ends: the writer writes them while the rest is encrypted */
  progress?: Int32Array;
}
export type ScryptEncryptResult = { ok: true; length: number } | TaskFailure;

/** scryptDerive: only the KDF (seconds at logN 19), so it can run while the chunk is still filling. */
export interface ScryptDeriveTask {
  passphrase: string;
  salt: Uint8Array;
  logN: number;
  r: number;
  p: number;
  /** the worker may keep the derivation's memory for its next one (scrypt-romix.ts) */
  keepKdfMemory?: boolean;
}
export type ScryptDeriveResult = { ok: true; key: Uint8Array } | TaskFailure;

/** scryptDecrypt: verify and decrypt a scrypt file; plaintext to `output` (capacity >= len-128). */
export interface ScryptDecryptTask {
  passphrase: string;
  input: SharedSlice;
  output: SharedSlice;
  /** refuse, before deriving, files whose KDF would need more memory than this (scryptCost bytes) */
  maxKdfBytes: number;
  /** ... or more work than this (N·r·p) */
  maxKdfWork?: number;
  /** the worker may keep the derivation's memory for its next one (scrypt-romix.ts) */
  keepKdfMemory?: boolean;
  /** the key a scryptDerive task already derived from this file's header (read early, while the
   *  rest of the chunk was still arriving): used only if the header's salt and parameters are the
   *  ones it was derived for */
  derived?: DerivedScryptKey;
}
/** A scryptDerive result with the salt and parameters it was derived for. */
export interface DerivedScryptKey {
  key: Uint8Array;
  salt: Uint8Array;
  logN: number;
  r: number;
  p: number;
}
export type ScryptDecryptResult = { ok: true; length: number; logN: number; r: number; p: number } | TaskFailure;

/** cbcChain: one piece of a continuous openssl-enc stream (v3), encrypted or decrypted with a key
 *  and IV chained from the previous piece (IV = last ciphertext block of the previous piece).
 *  Optional HMAC over the bytes written (v3 encrypt) or read (v3 decrypt). */
export interface CipherPieceTask {
  mode: 'encrypt' | 'decrypt';
  cipher: string;
  key: Uint8Array;
  iv: Uint8Array;
  /** last piece of the stream: add (encrypt) or check and strip (decrypt) PKCS#7 padding */
  final: boolean;
  input: SharedSlice;
  /** may equal input (in place); capacity must allow +block size on a final encrypt */
  output: SharedSlice;
  hmac?: { algorithm: string; key: Uint8Array };
  /** decrypt only: expected HMAC hex of the input; checked BEFORE anything is decrypted */
  expectHmacHex?: string;
}
export type CipherPieceResult =
  | { ok: true; length: number; /** last ciphertext block = IV of the next piece */ nextIv: Uint8Array; hmacHex?: string }
  | TaskFailure;

/** opensslSealChunk: a whole `openssl enc` file (Salted__ + salt + ciphertext) for one chunk (v2). */
export interface OpensslSealTask {
  cipher: string;
  passphrase: string;
  input: SharedSlice;
  output: SharedSlice;
  hmac?: { algorithm: string; key: Uint8Array };
}
export type OpensslSealResult = { ok: true; length: number; hmacHex?: string } | TaskFailure;

/** opensslOpenChunk: HMAC-verify (if expectHmacHex), then decrypt a whole `openssl enc` file and
 *  optionally inflate (`zlib` = R2-beta3 `openssl enc -z`) or gunzip the result (v2 compressed). */
export interface OpensslOpenTask {
  /** null: not encrypted (only verify and maybe decompress) */
  cipher: string | null;
  passphrase: string;
  input: SharedSlice;
  output: SharedSlice;
  decompress: 'none' | 'gzip' | 'zlib';
  hmac?: { algorithm: string; key: Uint8Array };
  expectHmacHex?: string;
}
export type OpensslOpenResult = { ok: true; length: number } | TaskFailure;

/** hmacSlice: HMAC of a slice (v2/v3 unencrypted chunks, verification). */
export interface HmacTask {
  algorithm: string;
  key: Uint8Array;
  input: SharedSlice;
}
export type HmacResult = { ok: true; hex: string } | TaskFailure;

/** dropKdfMemory: release the memory this worker keeps for scrypt (scrypt-romix.ts), then wait
 *  until `workers` tasks of this barrier arrived, so that each worker takes exactly one. `barrier`:
 *  [arrived, given up (set by the pool when it stops)]. */
export interface DropKdfMemoryTask {
  barrier: Int32Array;
  workers: number;
  timeoutMs: number;
}
/** `all`: every worker took its task before the time ran out */
export type DropKdfMemoryResult = { ok: true; all: boolean };

/** Map from task name (the piscina `name` option) to its task and result types. */
export interface TaskMap {
  compressBlock: { task: CompressBlockTask; result: CompressBlockResult };
  gunzipMember: { task: GunzipMemberTask; result: GunzipMemberResult };
  unzstdFrame: { task: UnzstdFrameTask; result: UnzstdFrameResult };
  scryptEncrypt: { task: ScryptEncryptTask; result: ScryptEncryptResult };
  scryptDerive: { task: ScryptDeriveTask; result: ScryptDeriveResult };
  scryptDecrypt: { task: ScryptDecryptTask; result: ScryptDecryptResult };
  cipherPiece: { task: CipherPieceTask; result: CipherPieceResult };
  opensslSeal: { task: OpensslSealTask; result: OpensslSealResult };
  opensslOpen: { task: OpensslOpenTask; result: OpensslOpenResult };
  hmacSlice: { task: HmacTask; result: HmacResult };
  dropKdfMemory: { task: DropKdfMemoryTask; result: DropKdfMemoryResult };
}
export type TaskName = keyof TaskMap;

/** What a worker throws instead of an Error (pool-entry.ts): structured clone keeps only an
 *  Error's message and stack, so its name, `code` and context are carried as plain fields. */
export interface PortableError {
  portableError: true;
  name: string;
  message: string;
  stack?: string;
  /** the thrown error's `code` (a Node/OpenSSL code, or a QvmBackupError code) */
  code?: string;
  context?: Record<string, unknown>;
}

/** True for a PortableError received from a worker. */
export function isPortableError(e: unknown): e is PortableError {
  return typeof e === 'object' && e !== null && (e as { portableError?: unknown }).portableError === true;
}

/** What WorkerPool posts to a worker: the task plus a shared state word, so a cancelled task that
 *  has not started is skipped and one that has started is known to use its memory until it ends. */
export interface PoolMessage<T> {
  task: T;
  /** Int32Array on a SharedArrayBuffer: [0] one of the TASK_* values; [1] (if present) set by the
   *  worker to the task's run time in microseconds */
  state: Int32Array;
}
export const TASK_WAITING = 0;
export const TASK_CANCELLED = 1;
export const TASK_STARTED = 2;
