// Orchestrates one backup: plan → summary → passphrase → pools → per-VM jobs through the chunk
// pipeline → outer archive → commit → backup_timestamp in the live qubes.xml.
// Nothing is written before the plan and the destination were checked; a failed or interrupted
// run removes its partial output (the file sink writes under a temporary name).
import { moved, movingWhile } from '../progress/activity.js';
import { boundedWait, orAbort } from '../pipeline/waits.js';
import { getMaxListeners, setMaxListeners } from 'node:events';
import { exactSize } from '../size-text.js';
import { chunkSizeMultiple, sizeLimitFor } from '../format/limits.js';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { QvmBackupError, fail, isQvmBackupError } from '../errors.js';
import { makeBackupId } from '../format/backup-header.js';
import { blockBound } from '../../workers/compress.js';
import { runFilterSync } from '../io/filter-program.js';
import { parseQubesXml, serializeQubesXml, cloneQubesXml, markBackupContent, setBackupTimestamp, type QubesXml } from '../qubes-xml/index.js';
import { SlotPool } from '../pipeline/slot-pool.js';
import { WorkerPool } from '../pipeline/worker-pool.js';
import { Semaphore } from '../pipeline/async-queue.js';
import { FirstFailure } from '../pipeline/first-failure.js';
import { lockHost, type HostLock } from '../io/host-lock.js';
import { saveHostQubesXml } from '../restore/install/host-qubes-xml.js';
import { OuterTarWriter, outerMemberHead, outerMemberTail } from '../tar/outer-tar-writer.js';
import { tarCreateStream, tarCreateMultiVolume, checkGnuTar } from '../tar/gnu-tar.js';
import { checkTmpdir } from '../io/tmpdir.js';
import { freeBytes, staleBackupPartials, touchedSink } from '../io/sink.js';
import { resolveDestination } from './destination.js';
import type { ProgressReporter } from '../progress/progress.js';
import { backupPlanJson, formatBackupSummary } from './backup-summary.js';
import { planBackup, type BackupFile, type VmJob } from './backup-plan.js';
import { streamFileV34, type StreamResources, type StreamSettings } from './chunk-pipeline.js';
import { streamFileV2 } from './v2-pipeline.js';
import { OrderedWriter } from './ordered-writer.js';
import { compressionJson, describeCompression } from './compression-plan.js';
import { resolveBackupSettings, settingsReport, type BackupChoices } from './settings.js';
import { writeHeader } from './header-stage.js';
import { RunStats } from '../stats/run-stats.js';
import { observeSpawns } from '../io/child-lifetime.js';
import { HoleMapper } from '../io/hole-map.js';
import { loadSpawner, readerNow } from '../io/spawn.js';
import { openInnerTar, PROGRAM_READ_BYTES, ReadBuffers } from './inner-tar-source.js';
import { compressWithProgram } from './program-compressor.js';
import { STAGE } from '../stats/bound.js';

export { defaultBackupName } from './destination.js';

/** The options of one backup: its choices (resolved and validated by settings.ts) and its wiring. */
export interface BackupOptions extends BackupChoices {
  location: string;
  destCommand?: string;
  /** --dest-vm: the archive goes to this VM's qubes.Backup service (dom0 = a local file) */
  destVm?: string;
  vms: string[];
  exclude: string[];
  qubesRoot: string;
  dom0Home: string;
  /** called after the plan was printed and confirmed; returns the passphrase */
  getPassphrase: () => Promise<string>;
  /** shown the plan (Qubes' summary text, and the same as structured data for --json); asks the
   *  user to go on (TTY without -y); return false to stop */
  confirm: (summary: string, plan: Record<string, unknown>) => Promise<boolean>;
  progress: ProgressReporter;
  signal: AbortSignal;
  now?: Date;
  /** the stage profile to fill (--stats); default: off */
  stats?: RunStats;
  /** who makes regular files' inner archives: in-process (default) or always GNU tar (benchmarks:
   *  QVMB_INNER_TAR=tar) */
  innerArchives?: 'in-process' | 'tar';
}

export interface BackupResult {
  path: string;
  bytesWritten: number;
  vms: string[];
  /** the user whose dom0 home is in the archive */
  dom0User?: string;
  chunks: number;
  /** which compression path ran: text for the summary line, fields for --json */
  compression: { text: string; json: Record<string, unknown> };
}

/** The inner tar archive of a file made in memory (qubes.xml, the empty placeholder). */
function innerTarOf(name: string, data: Uint8Array, mtimeSec: number): Uint8Array[] {
  return [outerMemberHead(name, data.length, { mtimeSec }), data, outerMemberTail(data.length)];
}

async function* bytesOf(parts: Uint8Array[]): AsyncGenerator<Uint8Array> {
  for (const p of parts) yield p;
}


/** Run a backup end to end. */
export async function runBackup(options: BackupOptions): Promise<BackupResult> {
  const now = options.now ?? new Date();
  const { progress, signal } = options;
  const stats = options.stats ?? RunStats.off();
  // 1. the settings (defaults, validation: once, frozen), then the collection — before anything is
  //    written or asked
  const s = resolveBackupSettings(options, makeBackupId(now, process.pid));
  const { threads, compression } = s;
  // a missing or non-GNU tar is reported before anything else happens; every backup starts
  // processes (tar for directories and the dom0 home, the hole-map helper)
  await Promise.all([checkGnuTar(undefined, signal), loadSpawner(), s.format === 2 ? checkTmpdir('format 2 passes each volume through a FIFO made there') : undefined]);
  const xmlPath = join(options.qubesRoot, 'qubes.xml');
  let xmlText: Buffer;
  try {
    xmlText = await readFile(xmlPath);
  } catch (e) {
    fail('ERR_USAGE', `cannot read ${xmlPath}: ${(e as Error).message} (set --qubes-root or QUBES_ROOT)`, {}, e);
  }
  // the host's own collection, not an archive: as the restore says it (exit 1), not as an
  // integrity failure (exit 5)
  let live: QubesXml;
  try {
    live = parseQubesXml(xmlText);
  } catch (e) {
    fail('ERR_IO', `the host collection ${xmlPath} cannot be used: ${(e as Error).message}`, { file: xmlPath }, e);
  }
  const plan = await stats.time('plan (stat the sources)', () => planBackup(live, { format: s.format, encrypted: options.encrypt, qubesRoot: options.qubesRoot, dom0Home: options.dom0Home, vms: options.vms, exclude: options.exclude }));
  if (plan.vms.length === 0 && !plan.dom0) fail('ERR_USAGE', 'nothing to back up: no VM selected');
  for (const w of plan.warnings) progress.warn(w);
  const dest = await resolveDestination(options.location, options.destCommand, now, options.destVm, live.domains.map((d) => d.name));
  if (dest.localDir !== undefined) {
    const free = await freeBytes(dest.localDir);
    // compressed output size is unknown: fail only when it obviously cannot fit
    const need = options.compress ? Math.ceil(plan.totalBytes / 20) : plan.totalBytes;
    if (free < need) fail('ERR_NO_SPACE', `not enough free space in ${dest.localDir}: ${free} bytes free, the backup needs ${options.compress ? 'at least about' : ''} ${need} bytes`);
    // what killed backups left there takes room a cron job would otherwise lose without a word
    const stale = await staleBackupPartials(dest.localDir);
    if (stale.length > 0) progress.warn(`${dest.localDir} holds ${stale.length} partial file${stale.length > 1 ? 's' : ''} of backups that were killed before they finished (${stale.slice(0, 3).join(', ')}${stale.length > 3 ? ', …' : ''}): not archives; remove ${stale.length > 1 ? 'them' : 'it'} unless another machine is writing there`);
  }
  // the marked copy of qubes.xml (step 3) is made now: format 2 needs it in one tar volume, which is
  // refused before the question and the passphrase
  const archived: QubesXml = cloneQubesXml(live);
  const included = new Map<number, { path: string; size: number }>();
  for (const v of plan.vms) included.set(v.qid, { path: v.backupPath, size: v.sizeBytes });
  if (plan.dom0) included.set(plan.dom0.qid, { path: plan.dom0.backupPath, size: plan.dom0.sizeBytes });
  markBackupContent(archived, included);
  const xmlFile: BackupFile = { name: 'qubes.xml', base: 'qubes.xml', sizeBytes: 0, dereference: false, inMemory: Buffer.from(serializeQubesXml(archived), 'utf8') };
  if (s.format === 2) {
    const volume = innerTarOf(xmlFile.base, xmlFile.inMemory!, 0).reduce((n, p) => n + p.length, 0);
    if (volume > s.chunkSize) fail('ERR_USAGE', `--chunk-size ${exactSize(s.chunkSize)}: qubes.xml (${volume} bytes as its tar volume) must fit in one format 2 volume; give at least --chunk-size ${(Math.ceil(volume / chunkSizeMultiple(2)) * chunkSizeMultiple(2)) / 1024}K`);
  }
  // 2. summary, confirmation, passphrase
  const chosen = new Set([...plan.vms.map((v) => v.name), ...(plan.dom0 ? [plan.dom0.name] : [])]);
  const notSelected = live.domains.map((d) => d.name).filter((n) => !chosen.has(n));
  progress.waitingForUser(true);
  const go = await options.confirm(formatBackupSummary(plan, notSelected), backupPlanJson(plan, notSelected)).finally(() => progress.waitingForUser(false));
  if (!go) fail('ERR_DECLINED', 'cancelled by the user: nothing done');
  progress.waitingForUser(true);
  const passphrase = Buffer.from(await options.getPassphrase().finally(() => progress.waitingForUser(false)), 'utf8');
  signal.throwIfAborted();


  // 4. resources: memory plan, pools
  const mem = s.memory;
  for (const w of mem.warnings) progress.warn(w);
  progress.settings?.(settingsReport(s));
  const { chunkSlotBytes } = mem;
  const chunks = new SlotPool({ slotBytes: chunkSlotBytes, slots: mem.chunkSlots, name: 'chunks' });
  const chunksOut = s.format === 2 ? new SlotPool({ slotBytes: chunkSlotBytes, slots: mem.chunkOutSlots, name: 'chunks-out' }) : undefined;
  const blockIn = new SlotPool({ slotBytes: mem.blockBytes, slots: mem.blockSlots, name: 'blocks-in' });
  const blockOut = new SlotPool({ slotBytes: blockBound(mem.blockBytes), slots: mem.blockSlots, name: 'blocks-out' });

  const sink = await dest.sink();
  // from here on every exit path aborts or commits the sink and destroys the pool
  let pool: WorkerPool;
  try {
    pool = new WorkerPool({ threads, stats });
  } catch (e) {
    await sink.abort();
    throw e;
  }
  // the archive goes out in pieces, each noted as movement (--stall-timeout): a chunk to a slow
  // destination takes long, a piece of it not
  const toFile = 'path' in sink;
  const outer = new OuterTarWriter(touchedSink(sink, moved, toFile ? 4 * 1024 * 1024 : 256 * 1024));
  let bytesIn = 0;
  // the input whose chunks reached the destination: what the percent and the ETA count (the
  // reads run ahead of a slow destination by up to --max-memory of chunks)
  let bytesDone = 0;
  let currentVm = '';
  const marks = { mark: () => bytesIn, done: (n: number) => (bytesDone = Math.max(bytesDone, Math.floor(n))) };
  const writer = new OrderedWriter(outer, (written) => progress.update(bytesIn, written, currentVm, bytesDone), stats, marks);
  const settings: StreamSettings = { ...s.stream, passphrase };
  // The first real failure (a write, tar, a worker, the pool) stops every other part at once —
  // producers would otherwise wait forever for slots only the writer releases — and is the one
  // reported; the cancellations it causes are not. A stop (a signal, a stall) before any failure is
  // reported as such; a failure before it stays the error (the command line then says both: the
  // signal's exit status, and the failure it was ending with).
  const failures = new FirstFailure(signal);
  let interrupted = signal.aborted;
  const onInterrupt = (): void => {
    if (!failures.failed) interrupted = true;
  };
  signal.addEventListener('abort', onInterrupt, { once: true });
  const runAbort = new AbortController();
  const stopAll = (e: unknown): void => {
    progress.phase(null); // the header's derivation may still run: it is no longer what the run waits for
    failures.record(e);
    if (!runAbort.signal.aborted) runAbort.abort(failures.cause);
  };
  const onPoolFailed = (): void => stopAll(pool.failed.reason);
  pool.failed.addEventListener('abort', onPoolFailed, { once: true });
  const runSignal = AbortSignal.any([signal, runAbort.signal]);
  // every chunk and block in flight waits on it (a slot, a key derivation permit, a worker task):
  // many listeners at once are the design, not a leak, and node's warning at 11 would reach stderr
  setMaxListeners(Math.max(getMaxListeners(runSignal), 4 * (mem.chunkSlots + mem.chunkOutSlots + mem.blockSlots + threads) + 16), runSignal);
  const res: StreamResources = { pool, blockIn, blockOut, chunks, ...(chunksOut ? { chunksOut } : {}), kdf: new Semaphore(mem.kdfConcurrency), writer, signal: runSignal, stats };
  const writing = writer.run();
  writing.catch(stopAll);
  let chunkCount = 0;
  const mtimeSec = Math.floor(now.getTime() / 1000);
  // A file's share of the progress is its planned size (the total is the sum of them): the bytes
  // of its inner archive as they are read, at most that size (the archive adds headers and
  // padding; a file that grew since the plan adds more), all of it once the file is done.
  const counted = async function* (src: AsyncIterable<Uint8Array>, base: number, size: number): AsyncGenerator<Uint8Array> {
    let seen = 0;
    for await (const c of src) {
      seen += c.length;
      bytesIn = base + Math.min(seen, size);
      moved();
      yield c;
    }
  };
  const externalFilter = compression.kind === 'program' ? compression : undefined;
  // tar's output through a compression program is compressed: what tar read from the disk is the
  // progress (the total is of the files' sizes), the file's size once tar is done with it
  const countedByTar = async function* (tar: { stdout: AsyncIterable<Uint8Array>; inputBytes: () => number | undefined }, base: number, size: number): AsyncGenerator<Uint8Array> {
    let last = 0;
    for await (const c of tar.stdout) {
      moved();
      const now = Date.now();
      if (now - last >= 100) {
        last = now;
        const r = tar.inputBytes();
        if (r !== undefined) bytesIn = base + Math.min(r, size);
      }
      yield c;
    }
  };

  /** A failure of GNU tar (or of what it ran), said for the VM whose file it was archiving. */
  const tarFailed = (e: unknown, f: BackupFile, job: VmJob | null): QvmBackupError =>
    isQvmBackupError(e) && e.code !== 'ERR_TAR_FAILED' ? e : new QvmBackupError('ERR_TAR_FAILED', `${job ? `VM ${job.name}: ` : ''}${(e as Error).message}`, { ...(isQvmBackupError(e) ? e.context : {}), vm: job?.name, file: f.base }, e);
  /** An inner archive's tar, started (its stdout is read by streamFile). */
  type StartedTar = { stdout: AsyncIterable<Uint8Array>; done: Promise<void>; inputBytes: () => number | undefined };
  const usesTar = (f: BackupFile): boolean => s.format !== 2 && f.inMemory === undefined;
  const startTar = (f: BackupFile, job: VmJob | null): StartedTar => {
    const tarRun = stats.begin(STAGE.backupSourceTar);
    const tar = tarCreateStream({ dir: f.dir!, name: f.name, archiveName: f.base, dereference: f.dereference, ...(externalFilter ? { compressProgram: [externalFilter.program, ...externalFilter.args].join(' ') } : {}), signal: runSignal });
    void tar.done.then(tarRun, tarRun);
    // tar's failure is the cause of whatever its broken stream does downstream: record it first
    const done = tar.done.catch((e: unknown) => {
      const err = tarFailed(e, f, job);
      stopAll(err);
      throw err;
    });
    done.catch(() => {});
    return { stdout: readerNow(tar.stdout), done, inputBytes: () => tar.inputBytes() };
  };

  // Regular files' inner archives are made in-process (inner-tar-source.ts) unless GNU tar is asked
  // for (options.innerArchives); a compression program then reads them from us (program-compressor.ts)
  // instead of from tar -I. Anything else goes to GNU tar (running the program itself).
  const inProcess = options.innerArchives !== 'tar';
  // (not said while the run stops: that is no news, and a group signal may have reached the helper)
  const mapper = new HoleMapper({
    onUnavailable: (why) => {
      if (!runSignal.aborted) progress.warn(`${why}; GNU tar makes the remaining sparse files' inner archives`);
    },
  });
  // (a compression program takes larger pieces: inner-tar-source.ts)
  const readBuffers = new ReadBuffers(externalFilter === undefined ? undefined : PROGRAM_READ_BYTES);
  const jobs = [...plan.vms, ...(plan.dom0 ? [plan.dom0] : [])];
  // What a restore will count of each VM's files against the size its qubes.xml states (written
  // before the data): a VM whose files grew since the plan (a running VM) past what a restore
  // accepts stops the backup, instead of an archive that only --ignore-size-limit restores. An
  // in-process file counts exactly, when it is opened (its data map: nothing of it is read first);
  // what GNU tar makes counts its planned disk usage (a lower bound), the directories from the start.
  // A VM over the limit whose files did not change since the plan (a file system whose disk usage
  // understates the data: 1 KiB blocks, compression) is backed up as before, with a warning.
  const countedForRestore = new Map<VmJob, number>();
  const overLimitWarned = new Set<VmJob>();
  /** VMs with a file that changed since the plan (the cause, when the sum passes the limit later) */
  const changedSincePlan = new Set<VmJob>();
  for (const v of jobs) countedForRestore.set(v, v.files.filter((f) => !f.regular && f.inMemory === undefined).reduce((a, f) => a + f.sizeBytes, 0));
  const countForRestore = (job: VmJob, f: BackupFile, bytes: number, changed: boolean): void => {
    const total = (countedForRestore.get(job) ?? 0) + bytes;
    countedForRestore.set(job, total);
    if (changed) changedSincePlan.add(job);
    const limit = sizeLimitFor(job.sizeBytes);
    if (total <= limit) return;
    const path = join(f.dir ?? '', f.name);
    // (the VM's name is put before it, as for every failure of its in-process files)
    if (changedSincePlan.has(job)) fail('ERR_IO', `its files grew since the backup was planned (a running VM?): ${path} brings its archive data to ${total} bytes, more than a restore accepts for the ${job.sizeBytes} bytes its qubes.xml states (up to ${limit}); the backup stopped`, { vm: job.name, file: path });
    if (overLimitWarned.has(job)) return;
    overLimitWarned.add(job);
    progress.warn(`VM ${job.name}: its data (${total} bytes as archived, at ${path}) is more than a restore accepts for the ${job.sizeBytes} bytes of disk usage its qubes.xml states (up to ${limit}; the file system's disk usage understates it): restoring this VM will need --ignore-size-limit`);
  };
  const startInner = (f: BackupFile, job: VmJob | null): StartedTar => {
    if (!inProcess) return startTar(f, job);
    const end = stats.begin(STAGE.backupSourceInProcess);
    let current: StartedTar | undefined;
    let inProcessSource = false;
    const where = job ? `VM ${job.name}: ` : '';
    const started = openInnerTar({ dir: f.dir!, name: f.name, archiveName: f.base, dereference: f.dereference, ...(f.regular ? { regular: true } : {}), ...(f.planned ? { planned: f.planned } : {}) }, { mapper, buffers: readBuffers, signal: runSignal }).then((src) => {
      if (src === null) {
        end();
        if (job && f.regular) countForRestore(job, f, f.sizeBytes, false);
        return (current = startTar(f, job));
      }
      void src.done.then(end, end);
      inProcessSource = true;
      if (job) countForRestore(job, f, src.restoreCountBytes ?? 0, src.changedSincePlan === true);
      if (externalFilter === undefined) return (current = src);
      const program = stats.begin(STAGE.backupCompressProgram);
      return compressWithProgram(src, externalFilter, { what: f.base, signal: runSignal }).then((compressed) => {
        void compressed.done.then(program, program);
        return (current = compressed);
      }, (e: unknown) => {
        program();
        throw e;
      });
    }, (e: unknown) => {
      // the file was replaced or removed since the plan: our failure, named with its VM below
      end();
      inProcessSource = true;
      throw e;
    });
    started.catch(() => {});
    const done = started.then((s) => s.done);
    done.catch(() => {}); // awaited by streamFile; a source started ahead may never be (the run failed)
    return {
      stdout: {
        async *[Symbol.asyncIterator]() {
          try {
            const s = await started;
            yield* s.stdout;
          } catch (e) {
            // the VM it belongs to, as tar's failures say it; the cause stays the first failure
            throw inProcessSource && isQvmBackupError(e) && (e.code === 'ERR_IO' || e.code === 'ERR_FILTER_FAILED') && where !== '' ? new QvmBackupError(e.code, `${where}${e.message}`, { ...e.context, vm: job?.name }, e) : e;
          }
        },
      },
      done,
      inputBytes: () => current?.inputBytes(),
    };
  };

  const streamFile = async (f: BackupFile, job: VmJob | null, started?: StartedTar) => {
    if (s.format === 2) {
      const volumes = f.inMemory
        ? bytesOf([Buffer.concat(innerTarOf(f.base, f.inMemory, mtimeSec))])
        : tarCreateMultiVolume({ dir: f.dir!, name: f.name, archiveName: f.base, dereference: f.dereference, tapeLengthKiB: Math.floor(s.chunkSize / 1024), signal: runSignal });
      const base = bytesIn;
      let seen = 0;
      try {
        chunkCount += await streamFileV2(f.base, volumes, settings, res, (n) => {
          seen += n;
          bytesIn = base + Math.min(seen, f.sizeBytes);
          moved();
        });
        bytesIn = base + f.sizeBytes;
      } catch (e) {
        throw isQvmBackupError(e) && e.code === 'ERR_TAR_FAILED' ? tarFailed(e, f, job) : e;
      }
      return;
    }
    if (f.inMemory) {
      let parts = innerTarOf(f.base, f.inMemory, mtimeSec);
      // small (qubes.xml, placeholders): the external filter runs once, synchronously
      if (externalFilter) {
        try {
          parts = [runFilterSync(externalFilter.program, 'compress', Buffer.concat(parts), undefined, externalFilter.args)];
        } catch (e) {
          fail('ERR_FILTER_FAILED', `${f.base}: ${(e as Error).message}`, { file: f.base, command: externalFilter.program }, e);
        }
      }
      chunkCount += await streamFileV34(f.base, bytesOf(parts), settings, res);
      return;
    }
    const tar = started ?? startInner(f, job);
    const base = bytesIn;
    chunkCount += await streamFileV34(f.base, externalFilter ? countedByTar(tar, base, f.sizeBytes) : counted(tar.stdout, base, f.sizeBytes), settings, res);
    await tar.done;
    bytesIn = base + f.sizeBytes;
  };

  progress.start('backup', plan.totalBytes);
  const unobserve = observeSpawns((ms) => stats.spawned(ms));
  try {
    // the data pass starts during the header's key derivation; the archive's first bytes wait for it
    const header = writeHeader(s, passphrase, pool, writer, runSignal, res.kdf);
    if (s.format === 4) {
      progress.phase('deriving the key of the backup header');
      const shown = (): void => progress.phase(null);
      header.then(shown, shown);
    }
    currentVm = 'qubes.xml';
    await streamFile(xmlFile, null);
    const order = jobs.flatMap((job) => job.files.map((f) => ({ f, job })));
    let k = 0;
    // the next file's tar is started while this one is chunked: with many small files its start
    // and its first reads overlap this file's work instead of following it (tar blocks once its
    // pipe is full, so this holds one pipe's worth of data). On a failure the run's signal kills it.
    let ahead: StartedTar | undefined;
    for (const job of jobs) {
      runSignal.throwIfAborted();
      currentVm = job.name;
      progress.update(bytesIn, outer.bytesWritten, currentVm, bytesDone);
      for (const f of job.files) {
        const next = order[++k];
        const mine = usesTar(f) ? (ahead ?? startInner(f, job)) : undefined;
        ahead = next !== undefined && usesTar(next.f) ? startInner(next.f, next.job) : undefined;
        const before = bytesIn;
        await stats.time('files: tar to chunks queued (main)', () => streamFile(f, job, mine));
        const vmName = job.name;
        const bytes = bytesIn - before || f.sizeBytes;
        // -v: said when the file's last chunk is written, not when it was queued
        writer.enqueue(Promise.resolve({ members: [], release() {}, written: () => progress.fileDone?.(vmName, f.base, bytes) }));
      }
      const name = job === plan.dom0 ? 'dom0 home' : job.name; // as the restore names it
      writer.enqueue(Promise.resolve({ members: [], release() {}, written: () => progress.vmDone(name, true) }));
    }
    writer.close();
    // the last writes may wait on a destination that stopped reading: a stop (a signal, a stall,
    // a failure) must reach the catch below, whose sink.abort() releases them
    await orAbort(writing, runSignal);
    // a failure recorded elsewhere (the pool, a tar whose stream looked complete) still fails the run
    runSignal.throwIfAborted();
    // a file's final fsync is local work that cannot be stopped halfway: it counts as moving; a
    // command's end is waited for with the stall check on (it can hang for ever)
    const commit = (): Promise<void> => sink.commit(runSignal);
    await stats.time(STAGE.backupCommit, () => (toFile ? movingWhile(commit) : commit()));
    // (ssh's "Permanently added …", a quota note: not lost because the command succeeded)
    const said = sink.said?.() ?? '';
    if (said !== '') progress.warn(`the ${sink.description} said on stderr: ${said}`);
  } catch (e) {
    stopAll(e);
    writer.abort(failures.cause);
    // abort the sink before waiting for the writer: a destination that stopped reading would
    // otherwise keep its write pending forever
    await sink.abort().catch(() => {});
    // bounded: a write stuck in the kernel (a dead mount) would hold the run for ever; its bytes
    // then stay referenced by a destination that is thrown away
    await boundedWait(writing.catch(() => undefined), WRITER_STOP_WAIT_MS);
    if (interrupted) throw new QvmBackupError('ERR_CANCELLED', `backup interrupted: ${abortedOutput(options.destCommand, options.location, dest.localDir !== undefined)}`, {}, failures.cause);
    throw failures.cause ?? e;
  } finally {
    unobserve();
    signal.removeEventListener('abort', onInterrupt);
    await mapper.close();
    pool.failed.removeEventListener('abort', onPoolFailed);
    await pool.destroy().catch(() => {});
  }
  const finalPath = 'path' in sink ? sink.path : dest.path;
  // 5. success: record backup_timestamp in the live qubes.xml (read and atomically replaced under
  //    the host lock, so a restore running meanwhile loses nothing)
  let lock: HostLock | undefined;
  const endTimestamp = stats.begin('backup_timestamp (host qubes.xml)');
  try {
    lock = await movingWhile(() => lockHost(options.qubesRoot, { waitSeconds: 60, signal, onWait: (m) => progress.warn(m) }));
    const fresh = parseQubesXml(await readFile(xmlPath));
    setBackupTimestamp(fresh, [...included.keys()], Math.floor(Date.now() / 1000));
    // (its mode and owner kept, never written through a link, its directory fsynced)
    await saveHostQubesXml(options.qubesRoot, fresh);
  } catch (e) {
    progress.warn(`backup finished, but backup_timestamp could not be recorded in ${xmlPath}: ${(e as Error).message}`);
  } finally {
    await lock?.release();
    endTimestamp();
  }
  return {
    path: finalPath,
    bytesWritten: outer.bytesWritten,
    vms: [...plan.vms.map((v) => v.name), ...(plan.dom0 ? ['dom0'] : [])],
    ...(plan.dom0 ? { dom0User: plan.dom0.backupPath.replace(/^dom0-home\//, '') } : {}),
    chunks: chunkCount,
    compression: { text: describeCompression(compression, threads), json: compressionJson(compression, threads) },
  };
}

/** What an interrupted backup left of its output, in the user's terms. */
function abortedOutput(destCommand: string | undefined, location: string, toFile: boolean): string {
  if (destCommand !== undefined) return 'the destination command was stopped; what it received is not a complete archive';
  if (!toFile || location === '-') return 'the archive written to stdout is incomplete';
  return 'partial archive removed, nothing left in the backup location';
}

/** How long a stopped run waits for its writer to let go of the destination. */
const WRITER_STOP_WAIT_MS = 10_000;
