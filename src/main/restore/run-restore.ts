// Orchestrates one restore: open the source → authenticate the header → qubes.xml → host lock →
// plan (table, confirmation, free-space check) → one pass over the data into a staging dir under
// the qubes root → once the archive was read whole and its source succeeded, each complete VM is
// installed (moved into place, merged into the on-disk qubes.xml) after the VMs it uses → dom0
// home → staging removed and the lock released (also on error and Ctrl-C).
import { movingWhile } from '../progress/activity.js';
import { access, constants as fsc, lstat, readdir, rmdir, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { QvmBackupError, fail, isQvmBackupError, type ErrorCode } from '../errors.js';
import { parseQubesXml, restorePool, type QubesXml } from '../qubes-xml/index.js';
import { WorkerPool } from '../pipeline/worker-pool.js';
import { OuterTarReader } from '../tar/outer-tar-reader.js';
import { freeBytes } from '../io/sink.js';
import type { ProgressReporter } from '../progress/progress.js';
import { planRestore, formatRestoreTable, unknownExcludeWarning, type RestorePlan, type RestoreSelection, type VmPlan } from './plan/restore-plan.js';
import { createScratch, createStaging, removeStaleStaging, type Staging } from './install/staging.js';
import { installDom0Home } from './install/dom0-home.js';
import { checkStagedVm, isVmParent, vmDirOf, VM_PARENTS } from './install/install-vm.js';
import { requiredImages } from './install/vm-files.js';
import { existsSync } from 'node:fs';
import type { ChunkSlots } from './stream/chunks-in-flight.js';
import { forgetAtExit, removeAtExit } from '../io/exit-cleanup.js';
import { boundedWait } from '../pipeline/waits.js';
import { loadHostQubesXml } from './install/host-qubes-xml.js';
import { Installer } from './install/installer.js';
import { LOCK_NAME, lockHost, type HostLock } from '../io/host-lock.js';
import { checkSourceCommand, closeSource, openSource, type Source, type SourceVm } from './archive-source.js';
import { RunStats } from '../stats/run-stats.js';
import { observeSpawns } from '../io/child-lifetime.js';
import { resolveRestoreSettings, restoreMemoryOf, type RestoreChoices } from './settings.js';
import { checkGnuTar } from '../tar/gnu-tar.js';
import { FirstChunkKey, dataPassMemory, readArchiveHead, restoreData, isV1BackupDir, readV1, restoreV1, type RestoreDataContext, type RestoreDataResult, type SelectionEntry } from './stream/index.js';
import { STAGE } from '../stats/bound.js';
import { timedInput } from '../tar/byte-input.js';
import { SizeLimit } from './stream/size-limit.js';
import { checkTmpdir } from '../io/tmpdir.js';
import { loadSpawner } from '../io/spawn.js';

/** The options of one restore: its choices (resolved and validated by settings.ts), what it
 *  selects, and its wiring. */
export interface RestoreOptions extends RestoreSelection, RestoreChoices {
  location: string;
  sourceCommand?: string;
  /** -d/--dest-vm: the archive comes from this VM's qubes.Restore (or the named service) */
  sourceVm?: SourceVm;
  qubesRoot: string;
  dom0Home: string;
  getPassphrase: () => Promise<string>;
  /** shown the plan (the table, and the plan itself for --json); returns false to stop */
  confirm: (table: string, plan: RestorePlan) => Promise<boolean>;
  /** getPassphrase() asks no one (a file): the GNU tar check may run while it and the header are
   *  read (its failure is still the one reported) */
  passphraseAsksNoOne?: boolean;
  /** confirm() waits for a person's answer (no -y): format 4 derives the first chunk's key meanwhile */
  confirmWaits?: boolean;
  progress: ProgressReporter;
  signal: AbortSignal;
  now?: Date;
  /** the stage profile to fill (--stats); default: off */
  stats?: RunStats;
  /** --ignore-size-limit: a VM's data may unpack to more than its qubes.xml states (size-limit.ts) */
  ignoreSizeLimit?: boolean;
}

export interface RestoreOutcome {
  restored: { name: string; from: string }[];
  failed: { name: string; error: string }[];
  dom0HomeDir?: string;
  /** the user whose dom0 home was restored (or verified) */
  dom0User?: string;
  verifyOnly: boolean;
  /** format 1 (a plain directory): nothing in it is authenticated */
  unauthenticated?: boolean;
  bytesRead: number;
}

const HEAD_PHASE = 'reading the backup header and qubes.xml, deriving their keys';

/** Run a restore (or --verify-only) end to end. */
export async function runRestore(o: RestoreOptions): Promise<RestoreOutcome> {
  const { progress } = o;
  const s = resolveRestoreSettings(o);
  const root = resolve(o.qubesRoot);
  const hostUser = basename(resolve(o.dom0Home));
  // the location must exist before anything is asked (a typo must not cost a passphrase prompt)
  let v1Dir: string | undefined;
  let archiveBytes = 0; // known for a file: the denominator of the progress
  if (o.sourceCommand === undefined && o.sourceVm === undefined && o.location !== '-') {
    const st = await stat(o.location).catch((e: unknown) => fail('ERR_USAGE', `backup location not found: ${o.location}`, {}, e));
    if (st.isFile()) archiveBytes = st.size;
    if (st.isDirectory()) {
      if (!(await isV1BackupDir(o.location))) fail('ERR_USAGE', `${o.location} is a directory but not a format 1 backup (no qubes.xml in it)`);
      v1Dir = o.location;
    }
  }
  // a verification's scratch copy goes into TMPDIR (default /var/tmp): a TMPDIR that is no
  // directory is said before the passphrase
  if (o.verifyOnly && v1Dir === undefined) await checkTmpdir("a verification extracts into a scratch directory there (it is removed at the end)");
  const stats = o.stats ?? RunStats.off();
  // the workers start now: they load their code while tar is checked and the passphrase is read
  const pool = new WorkerPool({ threads: s.threads, stats });
  let unobserve = (): void => {};
  let source: Source | undefined;
  let staging: Staging | undefined;
  let lock: HostLock | undefined;
  let stopReading: (() => void) | undefined;
  let runInstaller: Installer | undefined; // for the interruption message
  let firstChunk: FirstChunkKey | undefined;
  let lockTaking: Promise<HostLock | null> | undefined;
  /** the data pass's slots, when one is made ready before the pass (a declined plan stops it) */
  let warming: ChunkSlots | undefined;
  const lockGiveUp = new AbortController();
  try {
    // a missing or non-GNU tar is reported before the passphrase is asked for and before any data
    // is used: most Qubes archives have files that need it (directories, the dom0 home, small files
    // of an unusual shape: small-file-extractor.ts). When the passphrase asks no one (a file) and
    // the archive is a local file, reading both and the header goes on meanwhile (nothing anyone
    // sees; ~30 ms of a start with one core busy): the check's failure is still the one reported.
    const tarCheck = checkGnuTar(undefined, o.signal);
    tarCheck.catch(() => undefined); // (awaited below)
    const tarAlongside = o.passphraseAsksNoOne === true && archiveBytes > 0 && v1Dir === undefined;
    const tarChecked = async (): Promise<void> => {
      await tarCheck;
      unobserve = observeSpawns((ms) => stats.spawned(ms)); // the run's processes, not that probe
    };
    if (!tarAlongside) await tarChecked();
    // the host lock is taken while the header's keys are derived (its flock process starts off the
    // run's path; with one core busy then), once the passphrase was given; a head that fails lets
    // it go again (finally)
    let waitSaid: string | undefined;
    const takeLock = (early = false): void => {
      // (early, never into a root that is not there: taking the lock would create it, and a run
      // stopped during that wait could not remove it, not holding the lock; that one resolves
      // null, and the lock is taken after the head)
      if (o.verifyOnly || lockTaking !== undefined) return;
      // (a wait that began beside the head is said once the head was read: a wrong passphrase
      // says only that)
      const onWait = (m: string): void => (early && head === undefined ? void (waitSaid = m) : progress.warn(m));
      // (not a movement of the run until the head was read: a source that stalls beside the wait
      // is still one for --stall-timeout)
      lockTaking = lockHost(root, { signal: AbortSignal.any([o.signal, lockGiveUp.signal]), onWait, ...(early ? { createRoot: false } : {}) });
      lockTaking.then(() => (waitSaid = undefined), () => undefined); // (awaited after the head, or in finally)
    };
    // 1. header and qubes.xml
    let backupXml: QubesXml;
    let reader: OuterTarReader | undefined;
    let head: Awaited<ReturnType<typeof readArchiveHead>> | undefined;
    let passphrase = '';
    if (v1Dir !== undefined) {
      backupXml = parseQubesXml((await readV1(v1Dir)).qubesXmlBytes);
    } else {
      const headRead = (async () => {
        progress.waitingForUser(true);
        passphrase = await o.getPassphrase().finally(() => progress.waitingForUser(false));
        takeLock(true);
        source = await openSource(o);
        stopReading = source.stop;
        o.signal.addEventListener('abort', stopReading, { once: true });
        reader = new OuterTarReader(timedInput(source.input, stats, STAGE.restoreSource));
        // (alongside the tar check: said once it passed, so that a run stopped by tar never says
        // it read the header; not while the passphrase is read, when no status is drawn)
        if (tarAlongside) tarCheck.then(() => progress.phase(HEAD_PHASE), () => undefined);
        else progress.phase(HEAD_PHASE);
        return readHead(reader);
      })();
      if (tarAlongside) {
        // tar's failure first; the header's read (a regular file, read at once) is over before the cleanup
        const over = headRead.then(() => undefined, () => undefined);
        await tarChecked().catch(async (e: unknown) => {
          await over;
          throw e;
        });
      }
      head = await headRead;
      backupXml = parseQubesXml(head.qubesXmlBytes);
      progress.phase(null);
    }
    /** the header and qubes.xml, from the archive's start */
    async function readHead(reader: OuterTarReader): Promise<Awaited<ReturnType<typeof readArchiveHead>>> {
      return stats.time('header + qubes.xml', () => readArchiveHead(reader, passphrase, { pool, signal: o.signal, maxMemory: s.maxMemory, ...(s.compressionFilter !== undefined ? { forcedCompressionFilter: s.compressionFilter } : {}) })).catch(async (e: unknown) => {
        // a source command that failed (ssh refused, a missing file in the VM) is the cause of an
        // empty or cut-short head: its exit status and stderr are the error, not "not a backup"
        // (its exit status is awaited a second at most: one that ended its output and lives on is
        // stopped by closeSource, and the head's own error stands)
        if (source?.command && source.exited && !o.signal.aborted && !(isQvmBackupError(e) && e.code === 'ERR_HEADER_AUTH')) {
          const exit = await boundedWait(source.exited, 1000);
          if (exit !== 'timeout' && exit.exitCode !== 0) await checkSourceCommand(source, true);
        }
        throw e;
      });
    }
    // 2. plan, against the host as it is under the lock (held until the end: no other run
    //    rewrites qubes.xml meanwhile); read once, for the sweep and the plan
    let hostRead: Promise<QubesXml | null> | undefined;
    if (!o.verifyOnly) {
      // a wait for another run's lock is bounded (exit 8) and not a stall of ours
      takeLock(); // (taken here: a format 1 directory, which has no head)
      if (waitSaid !== undefined) progress.warn(waitSaid); // (still waiting)
      // a wait for another run's lock is bounded (exit 8) and not a stall of ours
      lock = (await movingWhile(() => lockTaking!)) ?? undefined;
      if (lock === undefined) {
        // no root (yet) when the lock was taken beside the head: taken now, creating it
        lockTaking = undefined;
        takeLock();
        lock = (await movingWhile(() => lockTaking!)) ?? undefined;
      }
      // what a killed restore left: its staging, and VM directories it had moved in without
      // listing them in qubes.xml yet (its journal names them)
      // (a qubes.xml that cannot be read removes none of them, and keeps their journal: the plan
      // then stops on it)
      hostRead = loadHostQubesXml(root);
      hostRead.catch(() => undefined); // (its failure is the plan's: awaited below)
      const hostNow = await hostRead.then((d) => d ?? { domains: [] }, () => undefined);
      const stale = await removeStaleStaging(root, hostNow === undefined ? undefined : (n) => hostNow.domains.some((d) => d.name === n));
      for (const n of stale.orphans) progress.warn(`removed ${join(root, n)}: a restore that was killed had moved it in without adding it to qubes.xml`);
      for (const n of stale.temps) progress.warn(`removed ${join(root, n)}: the unfinished qubes.xml write of a restore that was killed`);
      for (const n of stale.staging) progress.warn(`removed ${join(root, n)}, the staging directory of an earlier run that was killed`);
    }
    // (a verification plans against no host: it installs nothing, so the host's collection, even
    // a malformed one, is not read)
    const host = hostRead === undefined ? null : await hostRead;
    // a typo in --qubes-root must not pass unseen as a new, empty collection
    if (!o.verifyOnly && host === null) progress.info(`${root} holds no qubes.xml: a new collection is started there`);
    // what is on the host's disk under a VM name that its qubes.xml does not list: a conflict now,
    // not after the data pass (the install never overwrites a VM directory)
    const occupied = o.verifyOnly ? undefined : await vmDirsOnDisk(root, host);
    const plan = planRestore(backupXml, host, hostUser, {
      ...(occupied !== undefined ? { occupied } : {}),
      vms: o.vms,
      exclude: o.exclude,
      skipDom0Home: o.skipDom0Home,
      ignoreUsernameMismatch: o.ignoreUsernameMismatch,
      renameConflicting: o.renameConflicting,
      skipConflicting: o.skipConflicting,
      skipBroken: o.skipBroken,
      ignoreMissing: o.ignoreMissing,
      verifyOnly: o.verifyOnly,
    });
    for (const n of plan.unknownExcludes) progress.warn(unknownExcludeWarning(n, plan));
    const chosen = plan.vms.filter((v) => v.action === 'restore');
    const withHome = plan.dom0?.action === 'restore';
    // the home target is checked now, not after every VM was restored
    const homeProblem = withHome && !o.verifyOnly ? await dom0HomeProblem(o.dom0Home) : undefined;
    if (homeProblem !== undefined) plan.blocking.push(homeProblem);
    // every VM goes into a file pool of the host: one without is said now, not after the data
    if (host !== null && chosen.length > 0) {
      try {
        restorePool(host);
      } catch (e) {
        plan.blocking.push(`${(e as Error).message} (restore the dom0 home alone with -x of every VM, or into another --qubes-root)`);
      }
    }
    // the directories the VMs go into (appvms, vm-templates): a link or a file there is refused now
    if (!o.verifyOnly) plan.blocking.push(...(await vmParentProblems(root, chosen)));
    const table = formatRestoreTable(plan);
    // the table ends with the reasons: each is listed once
    if (plan.blocking.length > 0) fail('ERR_PLAN', `the restore cannot proceed (${plan.blocking.length} problem${plan.blocking.length > 1 ? 's' : ''}, listed below the table):\n${table}`);
    if (chosen.length === 0 && !withHome) fail('ERR_PLAN', `nothing to restore:\n${table}`);
    // the data pass's memory, laid out now (nothing allocated yet): the first chunk's key may be
    // derived under its budget while the answer is awaited
    const memory = head ? restoreMemoryOf(s, head.kdfBytes ?? 0) : undefined;
    const chunkMemory = memory?.chunkMemory ?? 0;
    const dataContext: RestoreDataContext | undefined = head && {
      head,
      passphrase,
      pool,
      verifyOnly: o.verifyOnly,
      qubesXml: backupXml,
      // --max-memory covers the chunks in flight AND the concurrent key derivations (one per thread)
      maxMemoryBytes: chunkMemory,
      maxMemory: s.maxMemory,
      signal: o.signal,
      imageExtraction: s.imageExtraction,
      prefaultImages: s.prefaultImages,
      dropBehind: s.dropBehind,
      directImageWrites: s.directImageWrites,
      stats,
    };
    const dataMemory = dataContext && dataPassMemory(dataContext);
    // a selected VM with a large chunk's worth of data or more: that chunk's slot is made ready now
    const sizes = [...chosen.map((v) => v.sizeBytes), ...(withHome ? [plan.dom0!.sizeBytes] : [])];
    if (dataMemory && sizes.some((n) => n >= dataMemory.slots.largeChunkBytes)) {
      warming = dataMemory.slots;
      warming.warmFirstLarge();
    }
    // format 4, a person to answer: the first chunk's key is derived meanwhile (in a child process,
    // killed when the answer is no); started only now, so a plan that cannot proceed starts nothing
    if (head?.version === 4 && reader && dataMemory && o.confirmWaits === true) {
      const selected = new Set([...chosen.map((v) => v.subdir), ...(withHome ? [plan.dom0!.subdir] : [])]);
      firstChunk = new FirstChunkKey(reader, { header: head.header, passphrase, kdf: dataMemory.kdf, selected: (subdir) => selected.has(subdir), signal: o.signal, stats });
    }
    progress.waitingForUser(true);
    const go = await o.confirm(table, plan).finally(() => progress.waitingForUser(false));
    if (!go) fail('ERR_DECLINED', 'cancelled by the user: nothing done');
    // what GNU tar extracts (format 2: everything; format 3: also the templates and standalone VMs,
    // archived as whole directories; the dom0 home; every inner archive with
    // QVMB_IMAGE_EXTRACTION=tar)
    const viaTar = (v: VmPlan): boolean => s.imageExtraction === 'tar' || head?.version === 2 || (head?.version === 3 && requiredImages(v.domain).includes('root.img'));
    // a run that will start tar loads the process module (execa, a file of its own beside the
    // bundle) now, in the background: a restore that runs for hours must not find that file
    // replaced by an upgrade when it reaches the home (a small file of an unusual shape may still
    // load it later)
    if (withHome || chosen.some(viaTar)) loadSpawner().catch(() => undefined);
    if (!o.verifyOnly) {
      const free = await freeBytes(await existingAncestor(root)).catch(() => Number.POSITIVE_INFINITY);
      if (free < plan.totalBytes) fail('ERR_NO_SPACE', `not enough free space in ${root}: ${free} bytes free, the selected VMs need ${plan.totalBytes} bytes`);
      staging = await createStaging(root);
    } else if (v1Dir === undefined) {
      // a verification extracts as a restore does, into a scratch directory removed at the end: what
      // GNU tar extracts for real (viaTar; directories, small files, the dom0 home), every image
      // written in-process a placeholder of its size without its data
      const { dir: scratch, what } = scratchParent();
      const need = chosen.filter(viaTar).reduce((n, v) => n + v.sizeBytes, 0) + (withHome ? plan.dom0!.sizeBytes : 0);
      const free = await freeBytes(scratch).catch(() => Number.POSITIVE_INFINITY);
      if (free < need) fail('ERR_NO_SPACE', `not enough free space in ${what} ${scratch} for the verification's scratch copy of what GNU tar extracts: ${free} bytes free, ${need} bytes needed (set TMPDIR to a directory with more room)`);
      staging = await createScratch(scratch, what);
      // (no later run looks there for what a forced exit left)
      removeAtExit(staging.dir, { recursive: true });
    }
    // 3. data pass; VMs are installed once the whole archive was read and its source succeeded
    const stagingDir = staging?.dir ?? tmpdir();
    const selection = new Map<string, SelectionEntry>();
    // what each VM's data may unpack to, from the size its qubes.xml states (unless lifted)
    const limitOf = (vm: string, declared: number | undefined): { sizeLimit?: SizeLimit } =>
      o.ignoreSizeLimit === true || declared === undefined ? {} : { sizeLimit: new SizeLimit(vm, declared) };
    for (const v of chosen) selection.set(v.subdir, { vm: v.backupName, stagingDir, ...limitOf(v.backupName, v.declaredBytes) });
    if (withHome) selection.set(plan.dom0!.subdir, { vm: 'dom0', stagingDir, ...limitOf('dom0', plan.dom0!.declaredBytes) });
    const installer = o.verifyOnly ? undefined : new Installer({ root, plan: chosen, stagingDir: staging!.dir, progress, signal: o.signal, lock: lock!, stats });
    runInstaller = installer;
    const complete: string[] = [];
    const onVmDone = (vm: string, ok: boolean, err?: unknown) => {
      if (o.signal.aborted) return; // the stop, not the VM: the interruption message says what happened
      if (!ok) {
        const msg = err instanceof Error ? err.message : String(err);
        progress.vmDone(vm === 'dom0' ? 'dom0 home' : vm, false, msg);
        installer?.failed(vm, msg, isQvmBackupError(err) ? err.code : undefined);
        return;
      }
      // (a verified VM's files get the install's checks once the archive was read, as a restore's)
      if (!installer && (vm === 'dom0' || v1Dir !== undefined)) progress.vmDone(vm === 'dom0' ? 'dom0 home' : vm, true, 'verified');
      else {
        complete.push(vm);
        // its files' checks and fsyncs while the rest is read (installed once all of it was)
        if (vm !== 'dom0') installer?.prepare(vm);
      }
    };
    if (memory?.warning !== undefined) progress.warn(memory.warning);
    const h = head?.header;
    progress.settings?.({
      format: head?.version ?? 1,
      encryption: h === undefined || !h.encrypted ? 'none' : h.version === 4 ? 'scrypt' : (h.cryptoAlgorithm ?? 'aes-256-cbc'),
      integrity: h === undefined ? 'none' : h.version === 4 ? 'scrypt' : `HMAC-${h.hmacAlgorithm}`,
      compression: h === undefined || !h.compressed ? 'none' : `${h.compressionFilter ?? 'gzip'}${head!.filterForced ? ' (--compression-filter)' : ''}`,
      threads: pool.threads,
      max_memory: s.maxMemory,
      chunk_memory: head ? chunkMemory : null,
      kdf: head?.kdf ? `scrypt N=2^${head.kdf.logN} r=${head.kdf.r} p=${head.kdf.p}` : null,
      image_extraction: s.imageExtraction,
      prefault_images: s.prefaultImages && !o.verifyOnly, // a verification writes nothing
      drop_behind: s.dropBehind && !s.directImageWrites && !o.verifyOnly,
      direct_io: s.directImageWrites && !o.verifyOnly,
      size_limit: o.ignoreSizeLimit !== true,
    });
    // progress counts the archive read (what takes the time), as a percent when its size is known
    progress.start(o.verifyOnly ? 'verify' : 'restore', archiveBytes);
    // format 4 derives a key per chunk: nothing is written until the first chunks' keys are there
    let derivingKeys = head?.version === 4;
    if (derivingKeys) progress.phase('deriving keys for the first chunks');
    let result: RestoreDataResult;
    // format 1 is copied by `cp`, which shows no bytes: it counts as moving (a local directory)
    if (v1Dir !== undefined) result = await movingWhile(() => restoreV1(v1Dir, selection, { verifyOnly: o.verifyOnly, signal: o.signal, onVmDone, onWarning: (m) => progress.warn(m) }));
    else
      result = await stats.time('data pass (read to extracted)', () => restoreData(firstChunk ?? reader!, {
        ...dataContext!,
        onProgress: (e) => {
          if (derivingKeys && e.bytesRestored > 0) {
            derivingKeys = false;
            progress.phase(null);
          }
          progress.update(e.bytesRead, e.bytesRestored, e.currentVm, e.bytesDone);
        },
        onVmDone,
        ...(installer ? { onVmExtracted: (vm: string) => installer.prepare(vm), onVmReopened: (vm: string) => installer.forget(vm) } : {}),
        onFileDone: (vm, file, bytes) => progress.fileDone?.(vm === 'dom0' ? 'dom0 home' : vm, file, bytes),
        onWarning: (m) => progress.warn(m),
        ...(firstChunk ? { firstChunk } : {}),
      }, selection, dataMemory));
    // the workers have done their part: they end while the VMs are installed (their teardown, ~20 ms
    // here, on the other core; awaited at the end)
    pool.destroy().catch(() => undefined);
    // the format has no end marker: a source command's exit status is the only sign of a short stream
    if (source?.command) await checkSourceCommand(source, result.archiveError !== undefined);
    o.signal.throwIfAborted();
    if (installer) {
      for (const vm of complete) if (vm !== 'dom0') installer.done(vm);
      await stats.time(STAGE.restoreInstall, () => installer.settle());
      o.signal.throwIfAborted();
    }
    const failedReading = new Set([...result.vms.values()].filter((r) => !r.ok).map((r) => r.vm));
    const verifyFailures = o.verifyOnly && staging ? await checkVerifiedVms(chosen, new Set(complete), failedReading, staging.dir, progress) : [];
    o.signal.throwIfAborted();
    // 4. dom0 home
    let dom0HomeDir: string | undefined;
    const failed: Failure[] = [...(installer?.failures ?? [])];
    for (const [subdir, r] of result.vms) {
      if (!r.ok && !failed.some((f) => f.name === r.vm)) failed.push({ name: r.vm, error: r.error?.message ?? 'failed', ...(r.error ? { code: r.error.code } : {}) });
      if (subdir === plan.dom0?.subdir && r.ok && !o.verifyOnly) {
        try {
          o.signal.throwIfAborted();
          dom0HomeDir = await stats.time('dom0 home', () => installDom0Home(join(staging!.dir, 'dom0-home'), o.dom0Home, o.now ?? new Date(), o.signal));
          progress.vmDone('dom0 home', true, `restored to ${dom0HomeDir}`);
        } catch (e) {
          if (o.signal.aborted) throw e;
          failed.push({ name: 'dom0', error: (e as Error).message, ...(isQvmBackupError(e) ? { code: e.code } : {}) });
        }
      }
    }
    // (after the VMs that failed while read: a cause is listed before what it caused)
    failed.push(...verifyFailures);
    if (result.archiveError) {
      // a VM read completely before the archive broke off stays restored (or verified)
      const whole = (v: VmPlan): boolean => (installer ? installer.installed.has(v.backupName) : result.vms.get(v.subdir)?.ok === true);
      for (const v of chosen) if (!whole(v) && !failed.some((f) => f.name === v.backupName)) failed.push({ name: v.backupName, error: result.archiveError.message, code: result.archiveError.code });
    }
    const restored = installer ? chosen.filter((v) => installer.installed.has(v.backupName)).map((v) => ({ name: v.newName, from: v.backupName })) : chosen.filter((v) => !failed.some((f) => f.name === v.backupName)).map((v) => ({ name: v.newName, from: v.backupName }));
    if (failed.length > 0) throw failureError(failed, restored.map((r) => r.name), chosen.length + (withHome ? 1 : 0), o.verifyOnly, dom0HomeDir, result.archiveError);
    const homeDone = withHome && (o.verifyOnly || dom0HomeDir !== undefined);
    return { restored, failed, ...(dom0HomeDir ? { dom0HomeDir } : {}), ...(homeDone ? { dom0User: plan.dom0!.user } : {}), verifyOnly: o.verifyOnly, ...(v1Dir !== undefined ? { unauthenticated: true } : {}), bytesRead: result.bytesRead };
  } catch (e) {
    if (!o.signal.aborted) throw e;
    // whatever the stop made fail on the way, the user hears what the run did and did not do
    await runInstaller?.quiesce();
    const cleaned = staging === undefined ? undefined : await staging.remove().then(() => 'staging directory removed', (r: unknown) => (r as Error).message);
    throw new QvmBackupError('ERR_CANCELLED', interruptedMessage(o.verifyOnly, cleaned, runInstaller ? [...runInstaller.installed] : []), {}, e);
  } finally {
    warming?.stopWarming();
    firstChunk?.abandon(); // a key derived ahead and not used (declined, failed) is zeroed, its child killed
    unobserve();
    if (stopReading) o.signal.removeEventListener('abort', stopReading);
    if (source) await closeSource(source);
    await runInstaller?.quiesce(); // no check walks the staging directory while it is removed
    await staging?.remove().then(() => forgetAtExit(staging!.dir), (e: unknown) => progress.warn((e as Error).message));
    // a lock taken beside a head that failed
    if (lock === undefined && lockTaking !== undefined) {
      lockGiveUp.abort(new Error('the head failed'));
      lock = (await lockTaking.catch(() => null)) ?? undefined;
    }
    // a qubes root this run created and left with nothing but its lock file is removed again
    // (still under the lock: a run waiting for it sees the file gone and starts over)
    // (and the directories above it that it created: HostLock.removeWithRoot)
    if (lock?.createdRoot === true && (await onlyLockLeft(root))) await lock.removeWithRoot();
    await lock?.release();
    await pool.destroy().catch(() => {});
  }
}

/** Where a verification's scratch directory goes: $TMPDIR, else /var/tmp (a disk, where Qubes'
 *  own verification extracts too; /tmp is often a RAM file system), else the system's tmpdir. */
function scratchParent(): { dir: string; what: string } {
  const env = process.env['TMPDIR'];
  if (env !== undefined && env !== '') return { dir: env, what: 'TMPDIR' };
  if (existsSync('/var/tmp')) return { dir: '/var/tmp', what: 'the directory' };
  return { dir: tmpdir(), what: 'the directory' };
}

/** A verification's VMs, read whole: their scratch copies get the checks a restore makes before it
 *  installs a VM (install-vm.ts), each VM's failure its own. */
async function checkVerifiedVms(chosen: VmPlan[], complete: ReadonlySet<string>, failedReading: ReadonlySet<string>, scratch: string, progress: ProgressReporter): Promise<Failure[]> {
  const failures: Failure[] = [];
  const bad = new Set(failedReading);
  const inRun = new Set(chosen.map((v) => v.backupName));
  // in install order: a VM's template and netVM come before it; one whose template or netVM of
  // this run failed is not installed by a restore (installer.ts), so it is not verified either
  for (const v of chosen) {
    if (!complete.has(v.backupName)) continue;
    const dep = [v.domain.template, v.domain.netvm].find((n): n is string => typeof n === 'string' && n !== v.backupName && inRun.has(n) && bad.has(n));
    if (dep !== undefined) {
      const why = `not installable: ${dep}, which it uses, failed verification`;
      progress.vmDone(v.backupName, false, why);
      failures.push({ name: v.backupName, error: why });
      bad.add(v.backupName);
      continue;
    }
    try {
      await checkStagedVm(scratch, join(scratch, v.subdir.replace(/\/$/, '')), v, false);
      progress.vmDone(v.backupName, true, 'verified');
    } catch (e) {
      const err = isQvmBackupError(e) ? e : new QvmBackupError('ERR_IO', `${v.backupName}: ${(e as Error).message}`, { vm: v.backupName }, e);
      progress.vmDone(v.backupName, false, err.message);
      failures.push({ name: v.backupName, error: err.message, code: err.code });
      bad.add(v.backupName);
    }
  }
  return failures;
}

/** Why the dom0 home (where `home-restore-<date>/` goes) cannot take the restored home, if it cannot. */
async function dom0HomeProblem(dom0Home: string): Promise<string | undefined> {
  const home = resolve(dom0Home);
  const fix = '(give the host\'s home with --dom0-home, or leave the home out with --skip-dom0-home or -x dom0)';
  const st = await stat(home).catch((e: unknown) => (e as NodeJS.ErrnoException).code ?? 'unreadable');
  if (typeof st === 'string') return `dom0 home: ${home} ${st === 'ENOENT' ? 'does not exist' : `cannot be used (${st})`} ${fix}`;
  if (!st.isDirectory()) return `dom0 home: ${home} is not a directory ${fix}`;
  const writable = await access(home, fsc.W_OK | fsc.X_OK).then(() => true, () => false);
  if (!writable) return `dom0 home: ${home} is not writable for this user ${fix}`;
  return undefined;
}

/** The one line of an interrupted run: true facts only (what was removed, what stays installed). */
export function interruptedMessage(verifyOnly: boolean, cleaned: string | undefined, installedBefore: readonly string[]): string {
  if (verifyOnly) return 'verification interrupted: nothing was written';
  if (cleaned === undefined) return 'restore interrupted before any data was written: nothing installed';
  const kept = installedBefore.length > 0 ? `${installedBefore.join(', ')} installed before the signal (kept), nothing after it` : 'nothing installed';
  return `restore interrupted: ${cleaned}, ${kept}`;
}

/** Whether the root this run created holds nothing but its lock file and the empty VM
 *  directories an install made (those are removed here: the root then goes with the lock). */
async function onlyLockLeft(root: string): Promise<boolean> {
  const names = await readdir(root).catch(() => null);
  if (names === null) return false;
  const parents: string[] = names.filter(isVmParent);
  if (!names.every((n) => n === LOCK_NAME || parents.includes(n))) return false;
  for (const p of parents) if (!(await rmdir(join(root, p)).then(() => true, () => false))) return false;
  return true;
}

export interface Failure {
  name: string;
  error: string;
  code?: string;
}

/**
 * The error of a run where something failed: partial (exit 3) when something was restored,
 * otherwise the first failure's own code (a tar failure stays a tar failure, a full disk stays a
 * full disk); never a code guessed from the message text.
 */
export function failureError(failed: Failure[], restored: string[], total: number, verifyOnly: boolean, dom0HomeDir: string | undefined, archiveError: QvmBackupError | undefined): QvmBackupError {
  // a VM's error may name it already ("work: vm3/notes.txt …"): said once
  const lines = failed.map((f) => `  ${f.name}: ${f.error.startsWith(`${f.name}: `) ? f.error.slice(f.name.length + 2) : f.error}`).join('\n');
  const what = verifyOnly ? 'verification failed' : 'restore incomplete';
  if (failed.some((f) => f.code === 'ERR_NO_SPACE')) return new QvmBackupError('ERR_NO_SPACE', `${what}: the disk is full:\n${lines}`, { restored });
  // a verification installs nothing, so nothing is partial: its status is the first failure's
  // (5 for a corrupt or refused VM, whatever else verified)
  if (verifyOnly || (restored.length === 0 && !dom0HomeDir)) {
    const code = (archiveError?.code ?? failed.find((f) => f.code !== undefined)?.code ?? 'ERR_CORRUPT') as ErrorCode;
    const some = restored.length > 0 || dom0HomeDir !== undefined;
    return new QvmBackupError(code, `${what}${some ? ` for ${failed.length} of ${total}` : ''}:\n${lines}`, {}, archiveError);
  }
  return new QvmBackupError('ERR_PARTIAL', `${what} for ${failed.length} of ${total}:\n${lines}`, { restored });
}

/** `p` or its closest existing parent (the qubes root may not exist yet). */
async function existingAncestor(p: string): Promise<string> {
  for (let d = p; ; d = dirname(d)) {
    if (await stat(d).then(() => true, () => false)) return d;
    if (dirname(d) === d) return d;
  }
}

/** Names under the host's VM directories that its qubes.xml (`host`) does not list, each with the
 *  path taken: a VM of that name cannot be installed there. */
async function vmDirsOnDisk(root: string, host: QubesXml | null): Promise<Map<string, string>> {
  const listed = new Set((host?.domains ?? []).map((d) => d.name));
  const out = new Map<string, string>();
  for (const parent of VM_PARENTS) {
    for (const name of await readdir(join(root, parent)).catch(() => [] as string[])) {
      if (!listed.has(name) && !out.has(name)) out.set(name, join(root, parent, name));
    }
  }
  return out;
}

/** A blocking line for each VM directory's parent that exists and is not a real directory. */
async function vmParentProblems(root: string, chosen: readonly VmPlan[]): Promise<string[]> {
  const parents = new Set(chosen.map((v) => dirname(vmDirOf(root, v.domain, v.newName))));
  const out: string[] = [];
  for (const parent of parents) {
    const st = await lstat(parent).catch(() => null);
    if (st !== null && !st.isDirectory()) out.push(`${parent} is not a directory (a symbolic link?): no VM is installed through it`);
  }
  return out;
}
