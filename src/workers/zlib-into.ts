// Synchronous zlib (gzip, gunzip, inflate; zstd where the runtime has it) straight from
// one memory range into another, with no intermediate Buffers: drives the zlib handle the way Node's
// own sync path does, but hands it the caller's output memory. Falls back to the public *Sync API
// plus one copy if the internals change.
import * as zlib from 'node:zlib';
import type { Transform } from 'node:stream';
import { asBuffer } from './buffers.js';
import { CodecError } from './codec-error.js';
import { ZSTD_WINDOW_LOG_MAX, zstdCompressOptions, zstdZlib } from './zstd-zlib.js';

/** 'zstd' compresses, 'unzstd' decompresses */
export type ZlibKind = 'gzip' | 'gunzip' | 'inflate' | 'zstd' | 'unzstd';

interface ZlibHandle {
  writeSync(flush: number, input: Uint8Array, inOff: number, inLen: number, out: Uint8Array, outOff: number, outLen: number): void;
}
interface ZlibInternals {
  _handle?: ZlibHandle | null;
  _writeState?: Uint32Array;
}

const SCRATCH = new Uint8Array(64);

/** The runtime's zstd; only called for kind 'zstd', which callers offer only where it exists. */
function zstd(): NonNullable<typeof zstdZlib> {
  if (zstdZlib === null) throw new CodecError('bad-params', 'this Node.js has no zstd in node:zlib (Node >= 22.15 has)');
  return zstdZlib;
}

function create(kind: ZlibKind, level: number, size: number): zlib.Gzip | zlib.Gunzip | zlib.Inflate | Transform {
  if (kind === 'zstd') return zstd().createZstdCompress(zstdCompressOptions(zstd(), level, size));
  if (kind === 'unzstd') return zstd().createZstdDecompress({ params: { [zstd().c.windowLogMax]: ZSTD_WINDOW_LOG_MAX } });
  if (kind === 'gzip') return zlib.createGzip({ level });
  return kind === 'gunzip' ? zlib.createGunzip() : zlib.createInflate();
}

/** gzip and zstd make output from all of their input; the others must end exactly. */
const compresses = (kind: ZlibKind): boolean => kind === 'gzip' || kind === 'zstd';

function badData(kind: ZlibKind, e: unknown): CodecError {
  return new CodecError('bad-data', `${kind}: corrupt input: ${(e as Error | null)?.message ?? 'zlib error'}`);
}

/** The error zlib recorded on the stream (set synchronously, before the 'error' event fires). */
function recordedError(engine: object): unknown {
  const sym = Object.getOwnPropertySymbols(engine).find((s) => s.description === 'kError');
  return sym === undefined ? null : ((engine as Record<symbol, unknown>)[sym] ?? null);
}

/** Whether the fast path (zlib handle writing into our memory) is available on this Node. */
export function zlibDirectAvailable(): boolean {
  const z = zlib.createGunzip() as unknown as ZlibInternals & zlib.Gunzip;
  const ok = typeof z._handle?.writeSync === 'function' && z._writeState instanceof Uint32Array;
  z.close();
  return ok;
}
const DIRECT = zlibDirectAvailable();

/** Whether exact zstd decoding (the zstd handle writing into our memory) is available: node:zlib has
 *  zstd and its handle has the same internals as zlib's. */
export function zstdDirectAvailable(): boolean {
  if (zstdZlib === null || !DIRECT) return false;
  const z = create('unzstd', 0, 0) as unknown as ZlibInternals & { close(): void };
  const ok = typeof z._handle?.writeSync === 'function' && z._writeState instanceof Uint32Array;
  z.close();
  return ok;
}

/** Run the whole of `input` through zlib into `output`; returns the bytes written, or 'too-large'
 *  when `output` cannot hold the result. Throws CodecError('bad-data') on corrupt compressed input.
 *  `exact` (decoders, direct path only): input left after the stream ended fails even when it is
 *  zeros (otherwise zero padding is accepted, as gzip -d does). */
export function zlibInto(kind: ZlibKind, input: Uint8Array, output: Uint8Array, level = 6, opts: { publicApi?: boolean; exact?: boolean } = {}): number | 'too-large' {
  if (opts.exact && (!DIRECT || opts.publicApi)) throw new CodecError('bad-params', 'exact decoding needs the zlib handle (the public API cannot tell where the stream ended)');
  return DIRECT && !opts.publicApi ? direct(kind, input, output, level, opts.exact ?? false) : viaPublicApi(kind, input, output, level);
}

function direct(kind: ZlibKind, input: Uint8Array, output: Uint8Array, level: number, exact: boolean): number | 'too-large' {
  const engine = create(kind, level, input.length);
  const internals = engine as unknown as ZlibInternals;
  const handle = internals._handle;
  const state = internals._writeState;
  if (!handle || !state) throw new Error('zlib internals unavailable');
  let error: unknown = null;
  engine.on('error', (e) => {
    error = e;
  });
  const finish = kind === 'zstd' || kind === 'unzstd' ? zstd().c.flushEnd : zlib.constants.Z_FINISH;
  try {
    handle.writeSync(finish, input, 0, input.length, output, 0, output.length);
    if (error !== null || engine.destroyed) throw badData(kind, error ?? recordedError(engine));
    let availIn = state[1] ?? 0;
    const written = output.length - (state[0] ?? 0);
    if (written === output.length) {
      // Output full: finished exactly, or more is pending. Ask for more into a scratch buffer.
      handle.writeSync(finish, input, input.length - availIn, availIn, SCRATCH, 0, SCRATCH.length);
      if (error !== null || engine.destroyed) throw badData(kind, error ?? recordedError(engine));
      availIn = state[1] ?? 0;
      if ((state[0] ?? 0) < SCRATCH.length || (compresses(kind) && availIn > 0)) return 'too-large';
    }
    if (availIn > 0 && compresses(kind)) return 'too-large';
    if (availIn > 0 && (exact || input.subarray(input.length - availIn).some((b) => b !== 0))) {
      throw badData(kind, new Error(`${availIn} bytes of trailing garbage`));
    }
    if (!compresses(kind) && written === 0 && input.length > 0) throw badData(kind, new Error('no output'));
    return written;
  } finally {
    (engine as { close(): void }).close();
  }
}

function viaPublicApi(kind: ZlibKind, input: Uint8Array, output: Uint8Array, level: number): number | 'too-large' {
  const opts = { maxOutputLength: Math.max(1, output.length), chunkSize: 1024 * 1024 };
  let out: Buffer;
  try {
    const src = asBuffer(input);
    if (kind === 'zstd') out = zstd().zstdCompressSync(src, { ...opts, ...zstdCompressOptions(zstd(), level, src.length) });
    else if (kind === 'unzstd') out = zstd().zstdDecompressSync(src, { ...opts, params: { [zstd().c.windowLogMax]: ZSTD_WINDOW_LOG_MAX } });
    else out = kind === 'gzip' ? zlib.gzipSync(src, { ...opts, level }) : kind === 'gunzip' ? zlib.gunzipSync(src, opts) : zlib.inflateSync(src, opts);
  } catch (e) {
    if ((e as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE') return 'too-large';
    throw badData(kind, e);
  }
  if (out.length > output.length) return 'too-large';
  output.set(out, 0);
  return out.length;
}
