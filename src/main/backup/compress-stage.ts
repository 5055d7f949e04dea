// Stage 1 of the backup pipeline: cut a byte stream (tar's stdout) into fixed-size blocks in pooled
// shared slots, compress each block in a worker (in parallel), and hand the compressed blocks back in
// order. Concatenated gzip members (zstd frames) are one valid stream for `gzip -d` (`zstd -d`) and
// for Qubes' readers.
import { setMaxListeners } from 'node:events';
import type { Slot, SlotPool } from '../pipeline/slot-pool.js';
import type { WorkerPool } from '../pipeline/worker-pool.js';
import { AsyncQueue } from '../pipeline/async-queue.js';
import { QvmBackupError } from '../errors.js';
import type { BlockCodec } from '../../workers/compress.js';

/** A run of bytes handed downstream; call `done()` once copied (releases its slot). */
export interface Piece {
  data: Uint8Array;
  done(): void;
}

export interface CompressStageOptions {
  pool: WorkerPool;
  inSlots: SlotPool;
  outSlots: SlotPool;
  codec: BlockCodec;
  level: number;
  signal: AbortSignal;
  /** for error messages */
  file: string;
}

/** Pass a stream through unchanged, as pieces. */
export async function* rawPieces(src: AsyncIterable<Uint8Array>): AsyncGenerator<Piece> {
  for await (const data of src) yield { data, done() {} };
}

/** Compress `src` in parallel blocks (block = `inSlots.slotBytes`), yielding compressed blocks in order. */
export async function* compressPieces(src: AsyncIterable<Uint8Array>, o: CompressStageOptions): AsyncGenerator<Piece> {
  const results = new AsyncQueue<Promise<Piece>>();
  const local = new AbortController();
  const signal = AbortSignal.any([o.signal, local.signal]);
  // listening on it: every task in flight (one per out slot) and the one acquire waiting — bounded
  // by design, and above Node's default warning level of 10 with 8 threads or more
  setMaxListeners(Math.max(10, o.outSlots.size + 2), signal);
  const blockBytes = o.inSlots.slotBytes;
  const dispatch = async (slot: Slot, len: number) => {
    let out: Slot;
    try {
      out = await o.outSlots.acquire(signal);
    } catch (e) {
      o.inSlots.release(slot);
      throw e;
    }
    const p = o.pool
      .run('compressBlock', { codec: o.codec, level: o.level, input: slot.slice(0, len), output: out.slice(0, out.bytes.length) }, { signal, context: { file: o.file } })
      .then(
        (r) => {
          o.inSlots.release(slot);
          if (!r.ok) {
            o.outSlots.release(out);
            throw new QvmBackupError('ERR_INTERNAL', `compression failed for ${o.file}: ${r.message}`, { file: o.file });
          }
          return { data: out.bytes.subarray(0, r.length), done: () => o.outSlots.release(out) };
        },
        (e: unknown) => {
          o.inSlots.release(slot);
          o.outSlots.release(out);
          throw e;
        },
      );
    p.catch(() => {}); // observed by the consumer; avoid an unhandled rejection meanwhile
    results.push(p);
  };
  const producer = (async () => {
    let slot: Slot | null = null;
    let fill = 0;
    try {
      for await (const chunk of src) {
        signal.throwIfAborted();
        let off = 0;
        while (off < chunk.length) {
          if (slot === null) slot = await o.inSlots.acquire(signal);
          const n = Math.min(chunk.length - off, blockBytes - fill);
          slot.bytes.set(chunk.subarray(off, off + n), fill);
          fill += n;
          off += n;
          if (fill === blockBytes) {
            const s: Slot = slot;
            slot = null;
            fill = 0;
            await dispatch(s, blockBytes);
          }
        }
      }
      if (slot !== null) {
        const s: Slot = slot;
        slot = null;
        if (fill > 0) await dispatch(s, fill);
        else o.inSlots.release(s);
      }
      results.close();
    } catch (e) {
      if (slot !== null) o.inSlots.release(slot);
      results.fail(e);
    }
  })();
  let finished = false;
  try {
    for await (const p of results) yield await p;
    finished = true;
  } finally {
    if (!finished) {
      // stopped early (error or abort): release every block still in flight
      local.abort(new QvmBackupError('ERR_CANCELLED', 'compression stage stopped'));
      const left = results.drain();
      results.fail(new QvmBackupError('ERR_CANCELLED', 'compression stage stopped'));
      for (const p of left) p.then((piece) => piece.done(), () => {});
    }
    await producer;
  }
}
