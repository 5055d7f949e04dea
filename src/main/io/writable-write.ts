// Promise-returning write to a Node Writable that honours backpressure ('drain') and reports the
// stream's errors (EPIPE and the like) to the caller.
import type { Writable } from 'node:stream';

/** Write `data`; resolves once the stream accepts more (after 'drain' if needed), rejects on error. */
export function writableWrite(stream: Writable, data: Uint8Array, failed: () => Error | null): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const early = failed();
    if (early) return reject(early);
    let settled = false;
    const done = (err?: Error | null): void => {
      if (settled) return;
      settled = true;
      stream.off('drain', onDrain);
      stream.off('error', onError);
      if (err) reject(err);
      else resolve();
    };
    const onDrain = (): void => done();
    const onError = (e: Error): void => done(e);
    stream.on('error', onError);
    let ok: boolean;
    try {
      ok = stream.write(data, (e) => {
        if (e) done(e);
      });
    } catch (e) {
      return done(e as Error);
    }
    if (ok) done();
    else stream.on('drain', onDrain);
  });
}
