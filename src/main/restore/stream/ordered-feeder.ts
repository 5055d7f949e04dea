// The single ordered consumer of the data pass: awaits each chunk's decode (which ran in parallel
// in the pool), hands verified bytes to the file's tar strictly in archive order, finishes each
// inner archive, and returns the chunk's slot only after the worker and tar are done with it.
import { AsyncQueue } from '../../pipeline/async-queue.js';
import type { Slot } from '../../pipeline/slot-pool.js';
import { QvmBackupError, isQvmBackupError } from '../../errors.js';
import type { DecodedChunk } from './chunk-decoder.js';
import type { InnerExtractor } from './file-extractor.js';
import type { SizeLimit } from './size-limit.js';

/** Per-VM state shared by the reader loop and the feeder. */
export interface VmRun {
  vm: string;
  subdir: string;
  stagingDir: string;
  failed: boolean;
  error?: QvmBackupError;
  files: string[];
  bytesRestored: number;
  /** what its inner archives may unpack to; none: no limit */
  sizeLimit?: SizeLimit;
  /** inner archives started and not yet extracted completely (restore-data.ts) */
  filesOpen?: number;
  /** onVmExtracted was called, and no inner archive of it started since */
  extractedSaid?: boolean;
}

/** One inner archive (chunk base) in the pass. */
export interface FileRun {
  base: string;
  /** null: not selected, its chunks are skipped */
  vm: VmRun | null;
  extractor?: InnerExtractor;
  /** the fresh directory this inner archive is extracted into (not in verify-only mode) */
  extractDir?: string;
}

/** Inner archives whose tar may still be finishing while the next one is fed. */
const MAX_FINISHING = 4;

export type FeedItem = { kind: 'chunk'; file: FileRun; job: Promise<DecodedChunk>; slot: Slot } | { kind: 'end'; file: FileRun };

export interface FeederDeps {
  /** where a chunk's slot goes back once it was fed (or dropped) */
  slots: { release(slot: Slot): void };
  open(file: FileRun): InnerExtractor;
  failVm(vm: VmRun, err: QvmBackupError): void;
  fed(file: FileRun, bytes: number): void;
  /** the inner archive was extracted completely (may throw: fails the VM) */
  fileDone(file: FileRun): Promise<void>;
}

/** Consumes FeedItems in order; never rejects. */
export class OrderedFeeder {
  readonly #q = new AsyncQueue<FeedItem>();
  readonly #d: FeederDeps;
  readonly #finishing = new Set<Promise<void>>();
  readonly done: Promise<void>;

  constructor(deps: FeederDeps) {
    this.#d = deps;
    this.done = this.#run();
  }

  push(item: FeedItem): void {
    this.#q.push(item);
  }

  close(): void {
    this.#q.close();
  }

  /** Stop a file's tar now (its VM failed); the feeder drops its remaining items. */
  async abortFile(file: FileRun): Promise<void> {
    const ext = file.extractor;
    if (ext) await ext.abort();
  }

  async #run(): Promise<void> {
    for await (const item of this.#q) {
      if (item.kind === 'chunk') await this.#chunk(item.file, item.job, item.slot);
      else await this.#end(item.file);
    }
    await Promise.all(this.#finishing);
  }

  async #chunk(file: FileRun, job: Promise<DecodedChunk>, slot: Slot): Promise<void> {
    const r = await job; // never rejects; the worker may still use the slot until it settles
    try {
      const vm = file.vm;
      if (vm === null || vm.failed) return;
      if (!r.ok) return await this.#fail(file, r.error);
      const ext = (file.extractor ??= this.#d.open(file));
      if (r.data.length > 0) await ext.write(r.data);
      this.#d.fed(file, r.data.length);
    } catch (e) {
      await this.#fail(file, asError(e, file));
    } finally {
      this.#d.slots.release(slot);
    }
  }

  async #end(file: FileRun): Promise<void> {
    const vm = file.vm;
    if (vm === null) return;
    const ext = file.extractor;
    if (vm.failed) {
      if (ext) await ext.abort();
      return;
    }
    if (!ext) return;
    // tar's exit (and fileDone) overlaps with feeding the next inner archives
    const p = (async () => {
      try {
        await ext.finish();
        await this.#d.fileDone(file);
      } catch (e) {
        await this.#fail(file, asError(e, file));
      }
    })();
    this.#finishing.add(p);
    void p.then(() => this.#finishing.delete(p));
    if (this.#finishing.size >= MAX_FINISHING) await Promise.race(this.#finishing);
  }

  async #fail(file: FileRun, err: QvmBackupError): Promise<void> {
    if (file.vm) this.#d.failVm(file.vm, err);
    await file.extractor?.abort();
  }
}

function asError(e: unknown, file: FileRun): QvmBackupError {
  if (isQvmBackupError(e)) return e;
  return new QvmBackupError('ERR_INTERNAL', `${file.base}: ${e instanceof Error ? e.message : String(e)}`, { file: file.base, vm: file.vm?.vm }, e);
}
