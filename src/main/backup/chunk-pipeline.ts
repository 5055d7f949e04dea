// The backup data path for one file (one inner archive), formats 3 and 4.
//
//   tar stdout ──> [compress-stage: 4 MiB blocks, gzip or zstd in workers, in order]
//              ──> chunker: fill a pooled chunk slot up to --chunk-size
//              ──> worker: v4 scrypt file (in place) | v3 CBC piece (IV chained) then HMAC | HMAC only
//              ──> OrderedWriter: outer tar members in order, then the slot is released
//
// Backpressure: the chunker blocks in `chunks.acquire()` when every chunk slot is in flight; the
// compress stage blocks on its block slots. Files are chunked one after another (the next file's
// tar starts only after this file's last chunk was dispatched), so slot waits can never form a cycle.
// Not guaranteed: on failure the outer archive is left truncated — the caller aborts the sink.
import { randomBytes } from 'node:crypto';
import type { Slot, SlotPool } from '../pipeline/slot-pool.js';
import type { WorkerPool } from '../pipeline/worker-pool.js';
import type { Semaphore } from '../pipeline/async-queue.js';
import { QvmBackupError } from '../errors.js';
import { chunkName, hmacName } from '../format/archive-names.js';
import { formatHmacFile } from '../format/hmac-file.js';
import { evpBytesToKey, cipherParams } from '../../workers/openssl-enc.js';
import { compressPieces, rawPieces, type Piece } from './compress-stage.js';
import { encryptedChunkJob } from './encrypted-pieces.js';
import type { OrderedWriter, WriteJobResult } from './ordered-writer.js';
import type { TaskFailure } from '../../workers/task-types.js';
import type { BlockCodec } from '../../workers/compress.js';
import type { RunStats } from '../stats/run-stats.js';

export const SCRYPT_PREFIX = 96;
export const SCRYPT_SUFFIX = 32;
const SALTED_HEADER = 16;

/** Settings shared by every file of one backup. */
export interface StreamSettings {
  format: 2 | 3 | 4;
  passphrase: Buffer;
  chunkSize: number;
  /** in-process block compression, or null when not compressing in-process (none or a program) */
  blocks: { codec: BlockCodec; level: number } | null;
  encrypted: boolean;
  cipher: string;
  hmacAlgorithm: string;
  backupId: string;
  /** format 4's KDF; keepKdfMemory: the memory plan holds one derivation per thread, so each
   *  worker may keep its derivation memory between chunks (workers/scrypt-romix.ts) */
  scrypt: { logN: number; r: number; p: number; keepKdfMemory?: boolean };
}

/** Shared resources of one backup run. */
export interface StreamResources {
  pool: WorkerPool;
  blockIn: SlotPool;
  blockOut: SlotPool;
  chunks: SlotPool;
  /** format 2 only: slots for the compressed/encrypted copy of a volume (separate, so no wait cycle) */
  chunksOut?: SlotPool;
  /** limits concurrent scrypt derivations (memory: 128·r·N bytes each) */
  kdf: Semaphore;
  writer: OrderedWriter;
  signal: AbortSignal;
  /** the stage profile (waits for chunk slots) */
  stats?: RunStats;
}

function taskError(r: TaskFailure, chunk: string): QvmBackupError {
  return new QvmBackupError('ERR_INTERNAL', `${chunk}: ${r.message}`, { chunk });
}

/**
 * Stream one file's inner archive (`src`) into chunks of the outer archive. Resolves when the last
 * chunk has been queued for writing (not written); returns the number of chunks.
 */
export async function streamFileV34(base: string, src: AsyncIterable<Uint8Array>, s: StreamSettings, res: StreamResources): Promise<number> {
  const pieces: AsyncIterable<Piece> =
    s.blocks !== null
      ? compressPieces(src, { pool: res.pool, inSlots: res.blockIn, outSlots: res.blockOut, ...s.blocks, signal: res.signal, file: base })
      : rawPieces(src);
  const v4 = s.format === 4;
  const v3enc = !v4 && s.encrypted;
  let index = 0;
  let slot: Slot | null = null;
  let fill = 0;
  // v3 encryption state: one openssl stream per file, pieces chained through the IV
  let key: Uint8Array = new Uint8Array(0);
  let ivChain: Promise<Uint8Array> = Promise.resolve(new Uint8Array(0));
  let saltHeader: Buffer | null = null;
  let blockSize = 16;
  if (v3enc) {
    const cp = cipherParams(s.cipher);
    blockSize = cp.blockSize;
    const salt = randomBytes(8);
    const k = evpBytesToKey(s.passphrase, salt, cp.keyLen, cp.ivLen);
    key = k.key;
    ivChain = Promise.resolve(k.iv);
    saltHeader = Buffer.concat([Buffer.from('Salted__'), salt]);
  }
  // where plaintext starts in a chunk slot, and how much fits
  const startOf = (i: number) => (v4 ? SCRYPT_PREFIX : v3enc && i === 0 ? SALTED_HEADER : 0);
  const capOf = (i: number) => s.chunkSize - (v3enc && i === 0 ? SALTED_HEADER : 0);

  // v4: each chunk's key is derived as soon as its slot is taken, while the chunk is still being
  // filled — the KDF (seconds at logN 19) overlaps compression instead of following it
  let pendingKey: Promise<{ salt: Uint8Array; key: Uint8Array }> | null = null;
  const deriveKey = (i: number): Promise<{ salt: Uint8Array; key: Uint8Array }> => {
    const name = chunkName(base, i, 3); // the passphrase binds the name without `.enc`
    const salt = randomBytes(32);
    const p = (async () => {
      await res.kdf.acquire(res.signal);
      try {
        const r = await res.pool.run('scryptDerive', { passphrase: `${s.backupId}!${name}!${s.passphrase.toString('utf8')}`, salt, ...s.scrypt }, { signal: res.signal, context: { chunk: name } });
        if (!r.ok) throw taskError(r, name);
        return { salt, key: r.key };
      } finally {
        res.kdf.release();
      }
    })();
    p.catch(() => {});
    return p;
  };

  const dispatch = (chunkSlot: Slot, len: number, i: number, final: boolean) => {
    const name = chunkName(base, i, s.format);
    const release = () => res.chunks.release(chunkSlot);
    let job: Promise<WriteJobResult>;
    if (v4) {
      const derived = pendingKey ?? deriveKey(i);
      pendingKey = null;
      job = (async () => {
        const d = await derived;
        // written as it is encrypted (encrypted-pieces.ts): the job is there once the task is asked for
        const size = len + SCRYPT_PREFIX + SCRYPT_SUFFIX;
        const progress = new Int32Array(new SharedArrayBuffer(4));
        const task = res.pool.run(
          'scryptEncrypt',
          { passphrase: '', ...s.scrypt, derived: d, input: chunkSlot.slice(SCRYPT_PREFIX, len), output: chunkSlot.slice(0, size), progress },
          { signal: res.signal, context: { chunk: name } },
        );
        return encryptedChunkJob({ name, bytes: chunkSlot.bytes, size, progress, task, failed: (r) => taskError(r, name), release, ...(res.stats ? { stats: res.stats } : {}) });
      })();
    } else {
      const hmac = { algorithm: s.hmacAlgorithm, key: s.passphrase };
      const start = startOf(i);
      let encrypted: Promise<number>;
      if (v3enc) {
        if (i === 0) chunkSlot.bytes.set(saltHeader!, 0);
        const piece = ivChain.then((iv) =>
          res.pool.run(
            'cipherPiece',
            { mode: 'encrypt', cipher: s.cipher, key, iv, final, input: chunkSlot.slice(start, len), output: chunkSlot.slice(start, len + (final ? blockSize : 0)) },
            { signal: res.signal, context: { chunk: name } },
          ),
        );
        ivChain = piece.then((r) => {
          if (!r.ok) throw taskError(r, name);
          return r.nextIv;
        });
        ivChain.catch(() => {});
        encrypted = piece.then((r) => {
          if (!r.ok) throw taskError(r, name);
          return start + r.length;
        });
      } else encrypted = Promise.resolve(len);
      job = encrypted.then(async (total) => {
        const h = await res.pool.run('hmacSlice', { ...hmac, input: chunkSlot.slice(0, total) }, { signal: res.signal, context: { chunk: name } });
        if (!h.ok) throw taskError(h, name);
        return { members: [{ name, parts: [chunkSlot.bytes.subarray(0, total)] }, { name: hmacName(name), parts: [formatHmacFile(h.hex)] }], release };
      });
    }
    job.catch(release); // on failure the slot comes back here; on success the writer releases it
    res.writer.enqueue(job);
  };

  try {
    for await (const piece of pieces) {
      let off = 0;
      const data = piece.data;
      try {
        while (off < data.length) {
          if (slot === null) {
            slot = res.stats ? await res.stats.time('wait for a chunk slot', () => res.chunks.acquire(res.signal)) : await res.chunks.acquire(res.signal);
            fill = 0;
            if (v4) pendingKey = deriveKey(index);
          }
          const cap = capOf(index);
          const n = Math.min(data.length - off, cap - fill);
          slot.bytes.set(data.subarray(off, off + n), startOf(index) + fill);
          fill += n;
          off += n;
          if (fill === cap) {
            const full: Slot = slot;
            slot = null;
            dispatch(full, cap, index, false);
            index++;
          }
        }
      } finally {
        piece.done();
      }
    }
    // the last chunk; a v3 encrypted stream always needs a final piece for the padding
    if (slot !== null || index === 0 || v3enc) {
      const last: Slot = slot ?? (await res.chunks.acquire(res.signal));
      const len = slot !== null ? fill : 0;
      slot = null;
      dispatch(last, len, index, true);
      index++;
    }
  } catch (e) {
    if (slot !== null) res.chunks.release(slot);
    throw e;
  }
  return index;
}
