// Promise-returning write to a Node Writable that resolves only once the stream no longer
// references the bytes. A Writable keeps the caller's buffer (no copy) in its own queue and in
// libuv until the write callback fires; `write()` returning true only says "below the high-water
// mark". Our chunk bytes live in reused shared slots, so resolving earlier lets the producer
// overwrite bytes that are still waiting to go out (a silently corrupt archive).
import type { Writable } from 'node:stream';

/**
 * Write `data`; resolves after its write callback fired and, when the write asked for
 * backpressure, after 'drain'. Rejects on the stream's error, or when `signal` aborts (the caller
 * gave up on the stream; the bytes may then still be referenced by it).
 */
export function writableWrite(stream: Writable, data: Uint8Array, failed: () => Error | null, signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const early = failed() ?? (signal?.aborted ? (signal.reason as Error) : null);
    if (early) return reject(early);
    let settled = false;
    let written = false;
    let drained = true;
    const cleanup = (): void => {
      stream.off('drain', onDrain);
      stream.off('error', onError);
      stream.off('close', onClose);
      signal?.removeEventListener('abort', onAbort);
    };
    const fail = (err: Error): void => {
      if (settled) return;
      settled = true;
      cleanup();
      reject(err);
    };
    const check = (): void => {
      // A destroyed stream never emits 'drain'; its callback has fired, so nothing is referenced.
      if (settled || !written || !(drained || stream.destroyed)) return;
      settled = true;
      cleanup();
      resolve();
    };
    const onDrain = (): void => {
      drained = true;
      check();
    };
    // 'error' comes after the stream was destroyed (its fd closed): libuv will not read the bytes.
    const onError = (e: Error): void => fail(e);
    const onClose = (): void => {
      if (!written) fail(Object.assign(new Error('stream closed before the write completed'), { code: 'ERR_STREAM_DESTROYED' }));
      else check();
    };
    const onAbort = (): void => fail(signal?.reason as Error);
    stream.on('error', onError);
    stream.on('close', onClose);
    signal?.addEventListener('abort', onAbort, { once: true });
    let ok: boolean;
    try {
      ok = stream.write(data, (e) => {
        if (e) return fail(e);
        written = true;
        check();
      });
    } catch (e) {
      return fail(e as Error);
    }
    // 'drain' is emitted just before the callbacks of the write that emptied the buffer, so the
    // listener must be in place now, before any callback can run.
    if (!ok) {
      drained = false;
      stream.on('drain', onDrain);
    }
  });
}
