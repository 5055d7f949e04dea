// A format 4 chunk written while it is encrypted. The worker encrypts a chunk front to back in its
// slot (the scrypt header, then the ciphertext slice by slice, then the MAC) and says in a shared
// word how many bytes from the start are final (ScryptEncryptTask.progress). The ordered writer
// writes those while the rest is encrypted, instead of waiting for the whole chunk: at the end of a
// backup the last chunks' encryption and their writes overlap instead of following each other.
// The outer member's size is known before: a scrypt file is its plaintext plus 128 bytes.
//
// Nothing else is written early: the bytes are ciphertext (or the header) that the worker no longer
// touches; a failed task fails the member (the run then removes the partial archive, as it did).
import { QvmBackupError } from '../errors.js';
import { STAGE } from '../stats/bound.js';
import type { RunStats } from '../stats/run-stats.js';
import type { ScryptEncryptResult, TaskFailure } from '../../workers/task-types.js';
import type { WriteJobResult } from './ordered-writer.js';

/** Longest one wait for the word lasts before it is read again: a waiter always ends, even if a
 *  wake-up were lost (the task's end wakes it in any case). */
const WAIT_SLICE_MS = 1000;

/** Atomics.waitAsync (node >= 16; in TypeScript's lib from es2024 on, newer than ours). */
type WaitAsync = (a: Int32Array, index: number, value: number, timeoutMs: number) => { async: false; value: string } | { async: true; value: Promise<string> };
const waitAsync = (Atomics as unknown as { waitAsync: WaitAsync }).waitAsync;

/**
 * The bytes of the scrypt file being made in `bytes` (from its start, `size` in all) as the task
 * says they are final in `progress[0]`; the rest once the task ended. Fails with the task's error,
 * or `failed(r)` for a failure it returns, or when it made another size than `size`.
 */
export async function* encryptedPieces(
  bytes: Uint8Array,
  progress: Int32Array,
  task: Promise<ScryptEncryptResult>,
  size: number,
  failed: (r: TaskFailure) => Error,
  stats?: RunStats,
): AsyncGenerator<Uint8Array> {
  let ended = false;
  const end = task.then(
    () => void (ended = true),
    () => void (ended = true),
  );
  let done = 0;
  for (;;) {
    // no await between this read and the test of `ended` below: once the task is seen to have
    // ended, this read came after its last store
    const now = Atomics.load(progress, 0);
    if (now > size) throw new QvmBackupError('ERR_INTERNAL', `scrypt file said final up to ${now} bytes where ${size} were expected`);
    if (now > done) {
      yield bytes.subarray(done, now);
      done = now;
      continue;
    }
    if (ended) break;
    const w = waitAsync(progress, 0, now, WAIT_SLICE_MS);
    if (w.async) {
      const stop = stats?.begin(STAGE.backupWaitChunk);
      await Promise.race([w.value, end]);
      stop?.();
    }
  }
  const r = await task;
  if (!r.ok) throw failed(r);
  if (r.length !== size || done !== size) throw new QvmBackupError('ERR_INTERNAL', `scrypt file of ${r.length} bytes (${done} said final) where ${size} were expected`);
}

/** The write job of chunk `name` whose scrypt file (`size` bytes) `task` is making in `bytes`: one
 *  member written as encryptedPieces yields it. Its `release` (called by the writer when it is done
 *  with the member, or gives up) calls `release` only once the task ended: until then the worker
 *  still writes into the slot. */
export function encryptedChunkJob(o: {
  name: string;
  bytes: Uint8Array;
  size: number;
  progress: Int32Array;
  task: Promise<ScryptEncryptResult>;
  failed: (r: TaskFailure) => Error;
  release: () => void;
  stats?: RunStats;
}): WriteJobResult {
  const taskEnded = o.task.then(
    () => undefined,
    () => undefined,
  );
  const pieces = encryptedPieces(o.bytes, o.progress, o.task, o.size, o.failed, o.stats);
  return { members: [{ name: o.name, size: o.size, pieces }], release: () => void taskEnded.then(o.release) };
}
