// Authenticate-then-decode of one data chunk in the worker pool, per format version. The chunk sits
// in a slot at SLOT_PREFIX; the decoded bytes are returned as a view into the same slot. Nothing is
// returned as data unless its HMAC / scrypt MAC verified first.
import { QvmBackupError, fail, isQvmBackupError, type ErrorContext } from '../../errors.js';
import type { BackupHeader } from '../../format/backup-header.js';
import type { WorkerPool } from '../../pipeline/worker-pool.js';
import type { Slot } from '../../pipeline/slot-pool.js';
import { hexEqual } from '../../../workers/hmac.js';
import { cipherParams, evpBytesToKey, type CipherParams } from '../../../workers/openssl-enc.js';
import type { DerivedScryptKey, TaskFailure } from '../../../workers/task-types.js';
import { readScryptHeader } from '../../../workers/scrypt-file.js';
import { SLOT_PREFIX, type SlotLayout } from './slot-layout.js';
import type { KdfBudget, KdfCost } from './kdf-budget.js';
import { taskFailureError } from './small-decode.js';

/** A key derived ahead for a v4 chunk (deriveV4Early), or null: decodeV4 derives it itself. */
export type EarlyKey = Promise<DerivedScryptKey | null>;

/** A key derived ahead for a chunk that will not be decoded: zeroed once it is there. */
export function wipeEarly(early: EarlyKey | undefined): void {
  void early?.then((k) => k?.key.fill(0));
}

/** The scrypt passphrase of format 4 chunk `name` (`vm3/private.img.000`, `qubes.xml.000`): backup
 *  id, chunk name and the user's passphrase (FORMAT §5.3). */
export function v4ChunkPassphrase(backupId: string | undefined, name: string, passphrase: string): string {
  return `${backupId ?? ''}!${name}!${passphrase}`;
}

/** A decoded chunk (a view into its slot) or why it was rejected. */
export type DecodedChunk = { ok: true; data: Uint8Array } | { ok: false; error: QvmBackupError };

/** Identifies a chunk in messages and scrypt passphrases. */
export interface ChunkRef {
  vm: string;
  base: string;
  index: number;
  /** `<base>.NNN` (without `.enc` / `.hmac`) */
  name: string;
}

/** Per-file state of a v3 encrypted stream: key, chained IV and the unaligned tail carried over. */
export interface V3StreamState {
  key?: Buffer;
  iv: Uint8Array | Promise<Uint8Array>;
  carry: Uint8Array;
  /** a final piece was dispatched: only empty chunks may follow */
  finished: boolean;
}

export interface DecoderOptions {
  header: BackupHeader;
  passphrase: string;
  pool: WorkerPool;
  layout: SlotLayout;
  /** --max-memory's bounds on the derivations the chunks ask for */
  kdf: KdfBudget;
  signal?: AbortSignal;
}

const SALTED = Buffer.from('Salted__', 'latin1');

/** Dispatches chunk tasks for one archive. */
export class ChunkDecoder {
  readonly #o: DecoderOptions;
  readonly #key: Buffer;
  #cipher: CipherParams | null;

  constructor(o: DecoderOptions) {
    this.#o = o;
    this.#key = Buffer.from(o.passphrase, 'utf8');
    this.#cipher = null;
    if (o.header.version !== 4 && o.header.encrypted) {
      const name = o.header.cryptoAlgorithm ?? 'aes-256-cbc';
      try {
        this.#cipher = cipherParams(name);
      } catch (e) {
        fail('ERR_UNSUPPORTED', `unsupported cipher ${JSON.stringify(name.slice(0, 64))}: ${e instanceof Error ? e.message : String(e)}`, {}, e);
      }
    }
  }

  /** Fresh state for a v3 file. */
  newStreamState(): V3StreamState {
    return { iv: new Uint8Array(0), carry: new Uint8Array(0), finished: false };
  }

  /**
   * v4: start deriving a chunk's key from its scrypt header (`head`: the first 128 bytes, read
   * before the rest of the chunk has a slot and is read into it). The parameters are checked
   * against --max-memory and the derivation waits for its share of the KDF memory, as in decodeV4.
   * Never rejects: null when it cannot (a header that does not parse or asks too much, a failed or
   * cancelled task), and decodeV4 then derives in its own task and reports what was wrong.
   */
  deriveV4Early(head: Uint8Array, ref: ChunkRef): EarlyKey {
    const { kdf } = this.#o;
    const h = readScryptHeader(head);
    if ('ok' in h) return Promise.resolve(null);
    let cost: KdfCost;
    try {
      cost = kdf.check(head, ref.name, this.#context(ref));
    } catch {
      return Promise.resolve(null);
    }
    const params = { salt: h.salt, logN: h.logN, r: h.r, p: h.p };
    const task = { passphrase: this.#chunkPassphrase(ref), ...params };
    return kdf.run(cost, (memory) => this.#o.pool.run('scryptDerive', { ...task, ...memory }, this.#runOpts(ref)), this.#o.signal).then(
      (r) => (r.ok ? { key: r.key, ...params } : null),
      () => null,
    );
  }

  /** v4: scrypt-verify and decrypt in place (plaintext starts 96 bytes into the chunk). The
   *  chunk's own KDF parameters are checked against --max-memory before anything is derived;
   *  `early` (deriveV4Early's) saves the derivation here. */
  decodeV4(slot: Slot, size: number, ref: ChunkRef, early?: EarlyKey): Promise<DecodedChunk> {
    const out = SLOT_PREFIX + 96;
    const { kdf } = this.#o;
    const task = {
      passphrase: this.#chunkPassphrase(ref),
      input: slot.slice(SLOT_PREFIX, size),
      output: slot.slice(out, Math.max(0, Math.min(size - 128, slot.bytes.length - out))),
      ...kdf.limits,
    };
    return this.#guard(ref, async () => {
      const derived = early === undefined ? null : await early;
      let r;
      if (derived !== null) {
        try {
          r = await this.#o.pool.run('scryptDecrypt', { ...task, derived }, this.#runOpts(ref));
        } finally {
          derived.key.fill(0); // the worker had its own copy
        }
      } else {
        r = await kdf.run(kdf.check(slot.bytes.subarray(SLOT_PREFIX, SLOT_PREFIX + size), ref.name, this.#context(ref)), (memory) => this.#o.pool.run('scryptDecrypt', { ...task, ...memory }, this.#runOpts(ref)), this.#o.signal);
      }
      return r.ok ? { ok: true, data: slot.bytes.subarray(out, out + r.length) } : this.#failed(r, ref);
    });
  }

  /** The passphrase of a v4 chunk: backup id, chunk name and the user's passphrase (FORMAT §5.3). */
  #chunkPassphrase(ref: ChunkRef): string {
    return v4ChunkPassphrase(this.#o.header.backupId, ref.name, this.#o.passphrase);
  }

  /** v2: HMAC-verify, then decrypt and/or decompress the chunk (each chunk is self-contained). */
  decodeV2(slot: Slot, size: number, ref: ChunkRef, hmacHex: string): Promise<DecodedChunk> {
    const h = this.#o.header;
    const hmac = { algorithm: h.hmacAlgorithm, key: this.#key };
    if (!h.encrypted && !h.compressed) return this.#verifyOnly(slot, size, ref, hmacHex);
    const output = this.#o.layout.output;
    const outOffset = output?.offset ?? SLOT_PREFIX + 16;
    const outLength = output?.length ?? size;
    const task = {
      cipher: h.encrypted ? (h.cryptoAlgorithm ?? 'aes-256-cbc') : null,
      passphrase: this.#o.passphrase,
      input: slot.slice(SLOT_PREFIX, size),
      output: slot.slice(outOffset, Math.min(outLength, slot.bytes.length - outOffset)),
      decompress: (h.compressed ? (h.encrypted ? 'zlib' : 'gzip') : 'none') as 'zlib' | 'gzip' | 'none',
      hmac,
      expectHmacHex: hmacHex,
    };
    return this.#guard(ref, async () => {
      const r = await this.#o.pool.run('opensslOpen', task, this.#runOpts(ref));
      return r.ok ? { ok: true, data: slot.bytes.subarray(outOffset, outOffset + r.length) } : this.#failed(r, ref);
    });
  }

  /**
   * v3: HMAC-verify, then (if encrypted) decrypt one piece of the file's continuous openssl stream.
   * Call in chunk order; `final` = no further non-empty chunk of this file follows. The chained IV
   * and the unaligned tail are taken from the ciphertext now, so pieces decrypt in parallel.
   */
  decodeV3(state: V3StreamState, slot: Slot, size: number, ref: ChunkRef, hmacHex: string, final: boolean): Promise<DecodedChunk> {
    const p = this.#cipher;
    if (p === null) return this.#verifyOnly(slot, size, ref, hmacHex);
    if (state.finished) {
      if (size === 0) return this.#verifyOnly(slot, size, ref, hmacHex);
      return Promise.resolve(this.#error('ERR_CORRUPT', `${ref.name}: data after the end of the encrypted stream`, ref));
    }
    const bytes = slot.bytes;
    let start = SLOT_PREFIX;
    const end = SLOT_PREFIX + size;
    if (ref.index === 0) {
      if (size < 16 || !SALTED.equals(bytes.subarray(start, start + 8))) {
        return this.#verifyOnly(slot, size, ref, hmacHex).then((v) => (v.ok ? this.#error('ERR_CORRUPT', `${ref.name}: encrypted stream does not start with Salted__`, ref) : v));
      }
      const { key, iv } = evpBytesToKey(this.#key, bytes.slice(start + 8, start + 16), p.keyLen, p.ivLen);
      state.key = key;
      state.iv = iv;
      start += 16;
    }
    const carryIn = state.carry;
    start -= carryIn.length;
    bytes.set(carryIn, start);
    const len = end - start;
    const unit = p.mode === 'cbc' || p.mode === 'ecb' ? p.blockSize : p.ivLen;
    const usable = final ? len : len - (len % unit);
    state.carry = bytes.slice(start + usable, end);
    state.finished = final;
    const ivIn = state.iv;
    // ctr/ofb: the next IV is known only from this piece's result; settled on every path
    let settleIv: ((iv: Uint8Array) => void) | undefined;
    if (p.mode === 'cbc' || p.mode === 'cfb') {
      if (usable >= unit) state.iv = bytes.slice(start + usable - unit, start + usable);
    } else if (p.mode !== 'ecb') {
      state.iv = new Promise<Uint8Array>((resolve) => (settleIv = resolve));
    }
    const key = state.key ?? Buffer.alloc(p.keyLen);
    const combined = ref.index > 0 && carryIn.length === 0 && usable === size;
    const run = this.#guard(ref, async () => {
      if (!combined) {
        const v = await this.#verifyOnly(slot, size, ref, hmacHex);
        if (!v.ok) return v;
      }
      const task = {
        mode: 'decrypt' as const,
        cipher: p.name,
        key,
        iv: await ivIn,
        final,
        input: slot.slice(start, usable),
        output: slot.slice(start, usable),
        ...(combined ? { hmac: { algorithm: this.#o.header.hmacAlgorithm, key: this.#key }, expectHmacHex: hmacHex } : {}),
      };
      const r = await this.#o.pool.run('cipherPiece', task, this.#runOpts(ref));
      if (!r.ok) return this.#failed(r, ref);
      settleIv?.(r.nextIv);
      return { ok: true, data: bytes.subarray(start, start + r.length) };
    });
    // a failed piece leaves the IV unknown: later pieces fail too (their VM is failed already)
    return run.finally(() => settleIv?.(new Uint8Array(0)));
  }

  /** HMAC-only check (unencrypted v2/v3 chunks); the data is the chunk itself. */
  #verifyOnly(slot: Slot, size: number, ref: ChunkRef, hmacHex: string): Promise<DecodedChunk> {
    const task = { algorithm: this.#o.header.hmacAlgorithm, key: this.#key, input: slot.slice(SLOT_PREFIX, size) };
    return this.#guard(ref, async () => {
      const r = await this.#o.pool.run('hmacSlice', task, this.#runOpts(ref));
      if (!r.ok) return this.#failed(r, ref);
      if (!hexEqual(r.hex, hmacHex)) return this.#error('ERR_CHUNK_AUTH', `${ref.name}: HMAC verification failed (corrupted chunk)`, ref);
      return { ok: true, data: slot.bytes.subarray(SLOT_PREFIX, SLOT_PREFIX + size) };
    });
  }

  #runOpts(ref: ChunkRef): { context: ErrorContext; signal?: AbortSignal } {
    const context = this.#context(ref);
    return this.#o.signal ? { context, signal: this.#o.signal } : { context };
  }

  #context(ref: ChunkRef): ErrorContext {
    return { vm: ref.vm, file: ref.base, chunk: ref.name };
  }

  #failed(f: TaskFailure, ref: ChunkRef): DecodedChunk {
    return { ok: false, error: taskFailureError(f, ref.name, this.#context(ref)) };
  }

  #error(code: 'ERR_CORRUPT' | 'ERR_CHUNK_AUTH', message: string, ref: ChunkRef): DecodedChunk {
    return { ok: false, error: new QvmBackupError(code, message, this.#context(ref)) };
  }

  /** Never rejects: thrown errors become a failed chunk (cancellation is handled by the caller). */
  async #guard(ref: ChunkRef, f: () => Promise<DecodedChunk>): Promise<DecodedChunk> {
    try {
      return await f();
    } catch (e) {
      const err = isQvmBackupError(e) ? e : new QvmBackupError('ERR_INTERNAL', `${ref.name}: ${e instanceof Error ? e.message : String(e)}`, this.#context(ref), e);
      return { ok: false, error: err };
    }
  }
}
