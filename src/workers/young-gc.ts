// Prompt reuse of the memory node:crypto allocates. `cipher.update` returns a new Buffer on every call
// (Node has no update-into API); V8 frees those buffers only at its next collection, and for memory
// outside its heap that comes after ~64 MiB more. Until then every slice lands in memory the process
// has never touched: on this kind of machine a page fault per 4 KiB (LIMITS §0, ~340 MB/s), which
// made a worker's first 100 MiB chunk decrypt 4-6x slower than a warm one, and the steady state ~1.5x
// slower than the cipher itself. A minor collection (a scavenge of the young generation: the dead
// slice buffers, ~0.1 ms) every few MiB keeps the garbage in a few MiB of warm memory that malloc
// hands out again.
//
// The collector is reached through V8's gc extension: `globalThis.gc` when node runs with
// --expose-gc (or under the name node's command line gave it), else the flag is set for one fresh
// context (a known, documented-as-unsupported use of v8.setFlagsFromString) and cleared again; a flag
// the command line set is never changed. Where neither works the slices still work, only slower.
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

type GcFunction = (options?: { type?: 'minor' | 'major'; execution?: 'sync' | 'async' }) => void;

/** Output bytes between two collections (64 slices of 64 KiB). */
export const COLLECT_EVERY_BYTES = 4 * 1024 * 1024;

let cached: GcFunction | null | undefined;

/** Tries at the flag: each other thread clears it once, and a clear between our set and our read
 *  loses that try (seen with 8 workers starting at once); more tries than threads get through. */
const EXPOSE_TRIES = 32;

/** V8's collector of this thread, or null where the runtime does not give it. */
export function youngGc(): GcFunction | null {
  if (cached !== undefined) return cached;
  const exposed = (globalThis as { gc?: unknown }).gc;
  if (typeof exposed === 'function') return (cached = exposed as GcFunction);
  const host = hostGcName();
  // the host chose the flag (e.g. --expose-gc-as): use what it exposed and never change the flag,
  // whose clearing would take its function from the contexts and workers it creates later
  if (host !== undefined) return (cached = lookUp(host));
  try {
    for (let i = 0; i < EXPOSE_TRIES && !cached; i++) {
      setFlagsFromString('--expose-gc');
      cached = exposedInNewContext();
    }
  } finally {
    setFlagsFromString('--no-expose-gc');
  }
  return (cached ??= null);
}

function exposedInNewContext(): GcFunction | null {
  try {
    const f: unknown = runInNewContext('gc');
    return typeof f === 'function' ? (f as GcFunction) : null;
  } catch {
    return null; // ReferenceError: the flag was cleared (or is not settable)
  }
}

/** The global name under which node's command line exposed the collector ('' for --no-expose-gc),
 *  or undefined when it did not mention the flag (NODE_OPTIONS takes --expose-gc only: globalThis.gc). */
function hostGcName(): string | undefined {
  let name: string | undefined;
  for (const arg of process.execArgv) {
    const m = /^--(no-?)?expose[-_]gc(?:[-_]as=(.*))?$/.exec(arg);
    if (m) name = m[1] !== undefined ? '' : m[2] ?? 'gc';
  }
  return name;
}

function lookUp(name: string): GcFunction | null {
  const f = name === '' ? undefined : (globalThis as Record<string, unknown>)[name];
  return typeof f === 'function' ? (f as GcFunction) : null;
}

/** A minor collection, where the runtime gives one. */
function collectYoung(): void {
  youngGc()?.({ type: 'minor' });
}

/** Counts allocated bytes and runs a minor collection after each COLLECT_EVERY_BYTES. */
export class GarbagePacer {
  #since = 0;
  readonly #collect: () => void;

  constructor(collect: () => void = collectYoung) {
    this.#collect = collect;
  }

  /** `bytes` more were allocated (and are garbage once copied out). */
  allocated(bytes: number): void {
    this.#since += bytes;
    if (this.#since < COLLECT_EVERY_BYTES) return;
    this.#since = 0;
    this.#collect();
  }
}
