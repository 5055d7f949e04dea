// Phase 2 of a restore: one sequential pass over the rest of the outer archive. The member sequencer
// says what each member is (which file's chunk, its .hmac, out of order); selected chunks are read
// into pooled slots and authenticated + decoded in the worker pool (in parallel); the ordered
// feeder hands verified bytes to GNU tar. Unselected chunks are skipped without decrypting. A
// failure inside one VM fails that VM only; a broken archive stops the pass (`archiveError`).
import { QvmBackupError, isQvmBackupError } from '../../errors.js';
import { isWholeDirBase, subdirOfBase } from '../../format/archive-names.js';
import { HMAC_FILE_MAX_BYTES } from '../../format/limits.js';
import { parseHmacFile } from '../../format/hmac-file.js';
import type { Slot } from '../../pipeline/slot-pool.js';
import { ChunkSlots } from './chunks-in-flight.js';
import { getMaxListeners, setMaxListeners } from 'node:events';
import path from 'node:path';
import { ChunkDecoder, wipeEarly, type ChunkRef, type EarlyKey, type V3StreamState } from './chunk-decoder.js';
import { SCRYPT_OVERHEAD_BYTES } from '../../../workers/scrypt-file.js';
import { openMultiVolumeExtractor, openStreamExtractor, openWhenReady, tarReady } from './file-extractor.js';
import { loadSpawner } from '../../io/spawn.js';
import { isImageBase, openImageExtractor } from './image-extractor.js';
import { isSmallFileBase, openSmallFileExtractor } from './small-file-extractor.js';
import { innerFilterOf } from './filters.js';
import { gzipMembers } from './member-gunzip.js';
import { zstdFrames } from './frame-unzstd.js';
import { unitPoolBytes, unitPoolsFor, type UnitPools } from './parallel-units.js';
import { OrderedFeeder, type FileRun, type VmRun } from './ordered-feeder.js';
import { outerStep, readSmallMember, shownName, type OuterMember, type OuterSource } from './outer-source.js';
import { MemberSequencer, type Decision } from './member-sequencer.js';
import { repairWholeDirSymlinks } from './repair-symlinks.js';
import { checkExtraction, createExtractionDir, mergeExtraction } from './extraction.js';
import { DOM0_HOME_SUBDIR } from '../plan/backup-subdir.js';
import { SLOT_PREFIX, defaultSlotBytes, slotCount, slotLayout, smallSlots, type SlotLayout } from './slot-layout.js';
import { KdfBudget, RESTORE_MIN_MAX_MEMORY } from './kdf-budget.js';
import { planRestoreMemory } from './restore-memory.js';
import { includedDomainsBySubdir, requiredBases } from './verify-expect.js';
import type { RestoreDataContext, RestoreDataResult, RestoreSelection, VmRestoreResult } from './types.js';
import type { InnerExtractor } from './file-extractor.js';
import { RunStats } from '../../stats/run-stats.js';
import { DIRECT_STAGING_BYTES, MAX_PAIRS } from '../../io/direct-writer.js';
import { STAGE } from '../../stats/bound.js';

/** `ext` with its writes (decompress + extract, on the main thread and in tar) and its end timed. */
function timedExtractor(ext: InnerExtractor, stats: RunStats): InnerExtractor {
  if (!stats.enabled) return ext;
  return {
    write: (data) => stats.time(STAGE.restoreExtract, () => ext.write(data)),
    finish: () => stats.time(STAGE.restoreFinish, () => ext.finish()),
    abort: () => ext.abort(),
  };
}

interface V3File extends FileRun {
  stream?: V3StreamState;
  /** v2: the file has a single chunk, so plain `tar -x` reads it (no multi-volume FIFO dance) */
  singleVolume?: boolean;
}
/** A data chunk read into a slot, waiting for its `.hmac` (v2/v3) or for its finality (v3). */
interface Waiting {
  file: V3File;
  slot: Slot;
  size: number;
  ref: ChunkRef;
  hmacHex?: string;
  /** format 4: the key being derived since the chunk's scrypt header was read (before its slot) */
  early?: EarlyKey;
}

/** Chunks from this size on make the next large slot ready ahead (ChunkSlots' warmAfter). */
const WARM_AFTER_BYTES = 32 * 1024 * 1024;

/** The data pass's memory: its chunk slots, decompression slots and key-derivation budget (none of
 *  it allocated yet: slots are made as they are first taken). */
export interface DataPassMemory {
  layout: SlotLayout;
  slots: ChunkSlots;
  units: UnitPools | undefined;
  /** the derivations' share of --max-memory; made before the plan when a key is derived then
   *  (first-chunk-key.ts), so that it counts that derivation too */
  kdf: KdfBudget;
  directWrites: boolean;
}

/** Lay out the data pass's share of --max-memory (restoreData does it when not given one). */
export function dataPassMemory(ctx: RestoreDataContext): DataPassMemory {
  const { header } = ctx.head;
  const filter = innerFilterOf(header);
  const slotBytes = ctx.slotBytes ?? defaultSlotBytes(header);
  const layout = slotLayout(header, slotBytes);
  const maxMemory = ctx.maxMemory ?? RESTORE_MIN_MAX_MEMORY;
  const small = smallSlots(header, slotBytes);
  const chunkMemory = ctx.maxMemoryBytes ?? planRestoreMemory(maxMemory, ctx.pool.threads, ctx.head.kdfBytes ?? 0).chunkMemory;
  const nSlots = slotCount(slotBytes, ctx.pool.threads, chunkMemory - (small ? small.slots * small.slotBytes : 0));
  // a chunk of 32 MiB or more (or 90 % of the largest a slot takes) is taken for a full one of a
  // large file, with more to come: the next large slot is prepared (at most once per slot; if no
  // other large chunk comes, one slot's page faults were spent for nothing)
  const warmAfter = Math.min(WARM_AFTER_BYTES, Math.floor(0.9 * layout.maxChunkBytes));
  const slots = new ChunkSlots({ slotBytes, slots: nSlots, name: 'restore chunks', warmAfter }, small && { ...small, name: 'restore small chunks' });
  // our gzip members and zstd frames are decompressed in the workers (parallel-units.ts), into slots
  // of their own
  const unitFormat = filter.kind === 'gunzip' ? gzipMembers : filter.kind === 'zstd' ? zstdFrames : undefined;
  // each chunk in a slot or waiting for one listens on the stop while its key is derived and while
  // it is decoded (no leak: as many as there are slots, twice, and a few more)
  if (ctx.signal) setMaxListeners(Math.max(getMaxListeners(ctx.signal), 2 * (nSlots + (small?.slots ?? 0)) + 16), ctx.signal);
  // images written around the page cache: their staging blocks (MAX_PAIRS files' at most; more at
  // once go through the page cache)
  const directWrites = ctx.directImageWrites === true && ctx.verifyOnly !== true && ctx.imageExtraction !== 'tar';
  const besideChunks = maxMemory - slots.capacityBytes - (directWrites ? MAX_PAIRS * DIRECT_STAGING_BYTES : 0);
  // more output slots where --max-memory leaves room beside the chunks and one derivation per thread
  const spare = besideChunks - ctx.pool.threads * (ctx.head.kdfBytes ?? 0);
  const units = unitFormat !== undefined && ctx.imageExtraction !== 'tar' ? unitPoolsFor(ctx.pool, unitFormat, spare) : undefined;
  // derivations share what the chunk slots (and unit slots) leave of --max-memory
  const kdf = new KdfBudget(maxMemory, besideChunks - unitPoolBytes(units), ctx.pool);
  return { layout, slots, units, kdf, directWrites };
}

/** Restore (or verify) the selected subdirs from the archive after its head. */
export async function restoreData(reader: OuterSource, ctx: RestoreDataContext, selection: RestoreSelection, memory = dataPassMemory(ctx)): Promise<RestoreDataResult> {
  const { header, version } = ctx.head;
  const filter = innerFilterOf(header);
  const { layout, slots, units, kdf, directWrites } = memory;
  const decoder = new ChunkDecoder({ header, passphrase: ctx.passphrase, pool: ctx.pool, layout, kdf, ...(ctx.signal ? { signal: ctx.signal } : {}) });
  // A verification runs the restore's extraction into its scratch staging directory (GNU tar's
  // inner archives and the small files for real, every image as a placeholder of its size, none of
  // its data), so that the same checks refuse the same content; it only installs nothing.
  const verify = ctx.verifyOnly === true;
  // images and small files written in-process (not GNU tar; QVMB_IMAGE_EXTRACTION=tar for comparisons)
  const inProcessFiles = ctx.imageExtraction !== 'tar';
  const stats = ctx.stats ?? RunStats.off();

  const vms = new Map<string, VmRun>();
  for (const [subdir, e] of selection) {
    if (!subdir.endsWith('/')) throw new QvmBackupError('ERR_INTERNAL', `selection key ${JSON.stringify(subdir)} must end in '/'`);
    vms.set(subdir, { vm: e.vm, subdir, stagingDir: e.stagingDir, failed: false, files: [], bytesRestored: 0, ...(e.sizeLimit ? { sizeLimit: e.sizeLimit } : {}) });
  }
  let bytesRestored = 0;
  const fileBytes = new Map<object, number>(); // -v: plaintext bytes of each file in progress
  let current: V3File | null = null;
  // a chunk being read into its slot is not done either
  let readingFrom: number | null = null;
  const progress = (): void => ctx.onProgress?.({ bytesRead: reader.bytesRead, bytesDone: (readingFrom ?? reader.bytesRead) - slots.inFlightBytes, bytesRestored, ...(current?.vm ? { currentVm: current.vm.vm } : {}) });
  slots.onRelease = progress;

  const failVm = (vm: VmRun, err: QvmBackupError): void => {
    if (vm.failed) return;
    vm.failed = true;
    vm.error = err;
    ctx.onVmDone?.(vm.vm, false, err);
  };
  const feeder = new OrderedFeeder({
    slots,
    open: (file) => timedExtractor(stats.time('extract: open (fresh dir; a tar starts at its first write)', () => openExtractor(file)), stats),
    failVm,
    fed: (file, n) => {
      fileBytes.set(file, (fileBytes.get(file) ?? 0) + n);
      bytesRestored += n;
      if (file.vm) file.vm.bytesRestored += n;
      progress();
    },
    fileDone: async (file) => {
      await stats.time('extract: check + merge', () => fileDone(file));
      const vm = file.vm as VmRun;
      vm.filesOpen = (vm.filesOpen ?? 1) - 1;
      sayExtracted();
    },
  });

  // GNU tar is checked once per run: its failure is every tar file's (checkGnuTar forgets a failure,
  // so a `tar --version` that hangs would otherwise cost its timeout once per VM)
  let tarChecked: Promise<unknown> | undefined;
  const tarOnce = (): Promise<unknown> => (tarChecked ??= tarReady());
  function openExtractor(file: FileRun): InnerExtractor {
    const vm = file.vm as VmRun;
    // every inner archive gets a fresh directory of its own (never one shared by two tar runs)
    file.extractDir = createExtractionDir(vm.stagingDir);
    const o = { dir: file.extractDir, member: file.base, listOnly: false, placeholder: verify, stats, prefault: !verify && ctx.prefaultImages !== false, dropBehind: !verify && ctx.dropBehind !== false, direct: directWrites, ...(ctx.signal ? { signal: ctx.signal } : {}), ...(vm.sizeLimit ? { sizeLimit: vm.sizeLimit } : {}) };
    const byTar = (open: () => InnerExtractor): InnerExtractor => openWhenReady(tarOnce, open, ctx.signal);
    if (version === 2) return byTar(() => ((file as V3File).singleVolume ? openStreamExtractor(o, { kind: 'none' }) : openMultiVolumeExtractor(o)));
    // images, the bulk of the data, are written in-process (GNU tar writes sparse data 512 bytes at a time)
    if (inProcessFiles && isImageBase(file.base)) return filter.kind === 'program' ? openWhenReady(loadSpawner, () => openImageExtractor(o, filter, units), ctx.signal) : openImageExtractor(o, filter, units);
    const tarStream = (): InnerExtractor => byTar(() => openStreamExtractor(o, filter));
    // a VM's small files (firewall.xml, menu lists) without a tar process each, when they are one
    // regular file; anything else goes to tar as before (small-file-extractor.ts)
    if (inProcessFiles && filter.kind !== 'program' && vm.subdir !== DOM0_HOME_SUBDIR && isSmallFileBase(file.base)) return openSmallFileExtractor(o, filter, tarStream);
    return tarStream();
  }
  async function fileDone(file: FileRun): Promise<void> {
    const vm = file.vm as VmRun;
    const dir = file.extractDir;
    if (dir !== undefined) {
      if (version !== 4 && isWholeDirBase(file.base)) {
        const n = await repairWholeDirSymlinks(path.join(dir, vm.subdir), vm.subdir);
        if (n > 0) ctx.onWarning?.(`${vm.vm}: repaired ${n} symlink target(s) mangled by the backup writer in ${file.base}`);
      }
      const policy = vm.subdir === DOM0_HOME_SUBDIR ? 'home' : 'vm';
      await checkExtraction(dir, { base: file.base, policy, vm: vm.vm, ...(ctx.onWarning ? { onWarning: ctx.onWarning } : {}) });
      await mergeExtraction(dir, file.base, vm.stagingDir, vm.vm);
    }
    vm.files.push(file.base);
    ctx.onFileDone?.(vm.vm, file.base, fileBytes.get(file) ?? 0);
    fileBytes.delete(file);
  }
  /** A VM fails now: later chunks are skipped and its running tar is stopped. */
  const failFile = (file: FileRun, err: QvmBackupError): void => {
    if (!file.vm) return;
    failVm(file.vm, err);
    void feeder.abortFile(file);
  };
  const corrupt = (base: string, message: string): QvmBackupError => new QvmBackupError('ERR_CORRUPT', message, { file: base, ...(vmOf(base) ? { vm: vmOf(base)?.vm } : {}) });
  const vmOf = (base: string): VmRun | null => vms.get(subdirOfBase(base)) ?? null;
  /** onVmExtracted for each VM whose inner archives are all extracted, once the archive went past it */
  const sayExtracted = (): void => {
    if (ctx.onVmExtracted === undefined) return;
    for (const vm of vms.values()) {
      if (vm.failed || vm.extractedSaid === true || vm.filesOpen !== 0 || vm.files.length === 0 || !sequencer.closed(vm.subdir)) continue;
      vm.extractedSaid = true;
      ctx.onVmExtracted(vm.vm);
    }
  };
  const failBase = (base: string, message: string): void => {
    const vm = vmOf(base);
    if (vm) failVm(vm, corrupt(base, message));
  };

  const sequencer = new MemberSequencer(version);
  let pending: Waiting | null = null; // v2/v3 data chunk waiting for its .hmac
  let held: Waiting | null = null; // v2/v3: paired with its .hmac, waiting to learn whether it is the last
  let archiveError: QvmBackupError | undefined;

  const dispatch = (w: Waiting, final: boolean): void => {
    const vm = w.file.vm as VmRun;
    if (vm.failed) {
      wipeEarly(w.early);
      return slots.release(w.slot);
    }
    if (version === 2 && w.ref.index === 0) w.file.singleVolume = final;
    let job;
    if (version === 4) job = decoder.decodeV4(w.slot, w.size, w.ref, w.early);
    else if (version === 2) job = decoder.decodeV2(w.slot, w.size, w.ref, w.hmacHex ?? '');
    else job = decoder.decodeV3((w.file.stream ??= decoder.newStreamState()), w.slot, w.size, w.ref, w.hmacHex ?? '', final);
    feeder.push({ kind: 'chunk', file: w.file, job, slot: w.slot });
  };
  const dropWaiting = (w: Waiting | null): void => {
    if (w) slots.release(w.slot);
  };
  const endCurrent = (): void => {
    if (current) feeder.push({ kind: 'end', file: current });
    current = null;
  };
  /** Act on what the sequencer says `m` (null: the end of the archive) is; returns the name to
   *  skip `m` as when it is to be skipped unread, else null. */
  const act = async (d: Decision, m: OuterMember | null): Promise<string | null> => {
    switch (d.kind) {
      case 'error':
        throw d.error;
      case 'missing-hmac': {
        const why = `${d.name} is not followed by ${d.name}.hmac`;
        if (pending) failFile(pending.file, corrupt(d.base, why));
        else failBase(d.base, why);
        dropWaiting(pending);
        pending = null;
        return null;
      }
      case 'held-final':
        if (held) dispatch(held, d.final);
        held = null;
        return null;
      case 'fail-current':
        if (current) failFile(current, corrupt(current.base, d.message));
        return null;
      case 'end-file':
        endCurrent();
        return null;
      case 'orphan':
      case 'stray-hmac':
        failBase(d.base, d.message);
        return d.name;
      case 'start-file': {
        const vm = vmOf(d.base);
        current = { base: d.base, vm };
        if (vm !== null) {
          vm.filesOpen = (vm.filesOpen ?? 0) + 1;
          if (vm.extractedSaid === true) {
            vm.extractedSaid = false;
            ctx.onVmReopened?.(vm.vm);
          }
        }
        sayExtracted(); // the VM before is closed now
        return null;
      }
      case 'hmac':
        await pairHmac(m!, d.base, d.name);
        return null;
      case 'chunk':
        await readOrSkip(m!, d.base, d.index, d.name);
        return null;
    }
  };

  try {
    for (;;) {
      if (ctx.signal?.aborted) throw new QvmBackupError('ERR_CANCELLED', 'restore cancelled', {}, ctx.signal.reason);
      const m = await stats.time(STAGE.restoreRead, () => outerStep(reader.next(), 'reading the next member'));
      progress();
      if (m === null) break;
      if (m.typeflag !== undefined && m.typeflag !== '0') throw new QvmBackupError('ERR_CORRUPT', `archive member ${shownName(m.untrustedName)} is not a regular file`);
      let skipAs: string | null = null;
      for (const d of sequencer.next(m.untrustedName, m.size)) skipAs = (await act(d, m)) ?? skipAs;
      ctx.firstChunk?.release(); // a key derived ahead is for the first member only
      if (skipAs !== null) await outerStep(m.skip(), `skipping ${skipAs}`);
    }
    // end of the archive
    for (const d of sequencer.end()) await act(d, null);
    sayExtracted(); // the last VM is closed now
  } catch (e) {
    slots.stopWarming();
    const err = isQvmBackupError(e) ? e : new QvmBackupError('ERR_INTERNAL', `restore pass: ${e instanceof Error ? e.message : String(e)}`, {}, e);
    // a stop kills a derivation ahead even when its key was taken (its chunk then fails at once);
    // a broken archive lets a taken one end: its chunk is still decoded, and would derive it again
    if (ctx.signal?.aborted === true || err.code === 'ERR_CANCELLED') ctx.firstChunk?.abandon();
    else ctx.firstChunk?.release();
    dropWaiting(pending);
    dropWaiting(held);
    pending = held = null;
    if (current) failFile(current, err);
    endCurrent();
    feeder.close();
    await feeder.done;
    if (err.code === 'ERR_CANCELLED' || ctx.signal?.aborted) throw err;
    archiveError = err;
  }
  slots.stopWarming(); // no chunk will take a slot any more
  feeder.close();
  await feeder.done;
  return finalResult();

  /** The `.hmac` of the pending chunk: read and paired (the chunk is then held until its finality
   *  is known), or skipped when the chunk's VM failed or is not restored. */
  async function pairHmac(m: OuterMember, base: string, name: string): Promise<void> {
    const w = pending;
    pending = null;
    if (w === null || (w.file.vm?.failed ?? true)) {
      dropWaiting(w);
      await outerStep(m.skip(), `skipping ${name}.hmac`);
      return;
    }
    if (m.size > HMAC_FILE_MAX_BYTES) {
      dropWaiting(w);
      failFile(w.file, new QvmBackupError('ERR_TOO_LARGE', `${name}.hmac is ${m.size} bytes (limit ${HMAC_FILE_MAX_BYTES})`, { file: base, chunk: name }));
      await outerStep(m.skip(), `skipping ${name}.hmac`);
      return;
    }
    const hmacFile = await readSmallMember(m, HMAC_FILE_MAX_BYTES, `${name}.hmac`);
    try {
      w.hmacHex = parseHmacFile(hmacFile);
    } catch (e) {
      dropWaiting(w);
      failFile(w.file, isQvmBackupError(e) ? e : corrupt(base, `${name}.hmac: ${String(e)}`));
      return;
    }
    held = w;
  }

  /** A chunk of the current file: read into a slot and dispatched (format 4) or kept for its
   *  `.hmac`; skipped when its VM failed or is not restored, or when it is too large. */
  async function readOrSkip(m: OuterMember, base: string, index: number, name: string): Promise<void> {
    const file = current as V3File;
    const vm = file.vm;
    if (vm === null || vm.failed) {
      await outerStep(m.skip(), `skipping ${name}`);
      return;
    }
    if (m.size > layout.maxChunkBytes) {
      failFile(file, new QvmBackupError('ERR_TOO_LARGE', `${name} is ${m.size} bytes, more than a chunk can be (${layout.maxChunkBytes})`, { vm: vm.vm, file: base, chunk: name }));
      await outerStep(m.skip(), `skipping ${name}`);
      return;
    }
    const w = await readChunk(m, file, { vm: vm.vm, base, index, name });
    if (version === 4) dispatch(w, false);
    else pending = w;
  }

  async function readChunk(m: OuterMember, file: V3File, ref: ChunkRef): Promise<Waiting> {
    // format 4: the chunk's scrypt header is read first and its key derived while the reader waits
    // for a slot and reads the rest (at the end of an image, the next files' keys are derived
    // beside the image's last decompression instead of after it)
    let early: EarlyKey | undefined;
    // the first chunk's key may have been derived while the plan was confirmed (its scrypt header
    // read then: not read again)
    if (version === 4 && m.size > SCRYPT_OVERHEAD_BYTES) early = ctx.firstChunk?.take(m, ref.name);
    if (early === undefined && version === 4 && m.size > SCRYPT_OVERHEAD_BYTES) {
      const head = await stats.time(STAGE.restoreRead, () => outerStep(m.readHead(SCRYPT_OVERHEAD_BYTES), `reading ${ref.name}`));
      early = decoder.deriveV4Early(head, ref);
    }
    let slot: Slot;
    try {
      slot = await stats.time(STAGE.restoreWaitSlot, () => slots.acquire(m.size, ctx.signal));
    } catch (e) {
      wipeEarly(early);
      throw e;
    }
    try {
      readingFrom = reader.bytesRead;
      await stats.time(STAGE.restoreRead, () => outerStep(m.readInto(slot.bytes.subarray(SLOT_PREFIX, SLOT_PREFIX + m.size)), `reading ${ref.name}`));
    } catch (e) {
      wipeEarly(early);
      slots.release(slot);
      throw e;
    } finally {
      readingFrom = null;
    }
    slots.hold(slot, m.size);
    return { file, slot, size: m.size, ref, ...(early !== undefined ? { early } : {}) };
  }

  function finalResult(): RestoreDataResult {
    const bySubdir = ctx.qubesXml ? includedDomainsBySubdir(ctx.qubesXml) : new Map();
    const out = new Map<string, VmRestoreResult>();
    let ok = archiveError === undefined;
    for (const vm of vms.values()) {
      if (!vm.failed) {
        const missing = requiredBases(bySubdir.get(vm.subdir), vm.subdir, version).filter((b) => !vm.files.includes(b));
        const why = archiveError ? ` (the archive broke off: ${archiveError.message})` : '';
        const cut = archiveError !== undefined && !sequencer.closed(vm.subdir) && vm.files.length > 0;
        if (cut) failVm(vm, new QvmBackupError('ERR_CORRUPT', `${vm.vm}: the archive broke off while or right after its data was read, so it may be incomplete (${archiveError!.message})`, { vm: vm.vm }, archiveError));
        else if (vm.files.length === 0) failVm(vm, new QvmBackupError('ERR_CORRUPT', `no data for ${vm.vm} (${vm.subdir}) in the archive${why}`, { vm: vm.vm }, archiveError));
        else if (missing.length > 0) failVm(vm, new QvmBackupError('ERR_CORRUPT', `${vm.vm}: missing or incomplete in the archive: ${missing.join(', ')}${why}`, { vm: vm.vm }, archiveError));
        else ctx.onVmDone?.(vm.vm, true);
      }
      ok &&= !vm.failed;
      out.set(vm.subdir, { vm: vm.vm, subdir: vm.subdir, ok: !vm.failed, ...(vm.error ? { error: vm.error } : {}), files: vm.files, bytesRestored: vm.bytesRestored });
    }
    return { ok, vms: out, ...(archiveError ? { archiveError } : {}), bytesRead: reader.bytesRead, bytesRestored };
  }
}
