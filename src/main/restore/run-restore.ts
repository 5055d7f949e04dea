// Orchestrates one restore: open the source → authenticate the header → qubes.xml → plan (table,
// confirmation, free-space check) → one pass over the data into a staging dir under the qubes root
// → each VM installed (moved into place, added to qubes.xml atomically) as soon as its data and its
// dependencies are complete → dom0 home → staging removed (also on error and Ctrl-C).
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import type { Readable } from 'node:stream';
import { execa, type ResultPromise } from 'execa';
import { QvmBackupError, fail, isQvmBackupError } from '../errors.js';
import { parseQubesXml, type DomainInfo, type QubesXml } from '../qubes-xml/index.js';
import { WorkerPool } from '../pipeline/worker-pool.js';
import { OuterTarReader } from '../tar/outer-tar-reader.js';
import { checkGnuTar } from '../tar/gnu-tar.js';
import { freeBytes } from '../io/sink.js';
import type { ProgressReporter } from '../progress/progress.js';
import { planRestore, formatRestoreTable, type RestorePlan, type RestoreSelection, type VmPlan } from './plan/restore-plan.js';
import { createStaging, type Staging } from './install/staging.js';
import { installVm } from './install/install-vm.js';
import { installDom0Home } from './install/dom0-home.js';
import { loadHostQubesXml, loadHostQubesXmlOrEmpty, saveHostQubesXml } from './install/host-qubes-xml.js';
import { readArchiveHead, restoreData, isV1BackupDir, readV1, restoreV1, type RestoreDataResult, type SelectionEntry } from './stream/index.js';

export interface RestoreOptions extends RestoreSelection {
  location: string;
  sourceCommand?: string;
  qubesRoot: string;
  dom0Home: string;
  compressionFilter?: string;
  threads: number;
  maxMemory: number;
  getPassphrase: () => Promise<string>;
  /** shown the plan table; returns false to stop */
  confirm: (table: string, plan: RestorePlan) => Promise<boolean>;
  progress: ProgressReporter;
  signal: AbortSignal;
  now?: Date;
}

export interface RestoreOutcome {
  restored: { name: string; from: string }[];
  failed: { name: string; error: string }[];
  dom0HomeDir?: string;
  verifyOnly: boolean;
  bytesRead: number;
}

interface Source {
  stream: Readable;
  command?: ResultPromise;
}

async function openSource(o: RestoreOptions): Promise<Source> {
  if (o.sourceCommand !== undefined) {
    const command = execa('sh', ['-c', o.sourceCommand], { stdin: 'ignore', stdout: 'pipe', stderr: 'pipe', buffer: { stdout: false, stderr: true }, cancelSignal: o.signal, reject: false });
    return { stream: command.stdout, command };
  }
  if (o.location === '-') return { stream: process.stdin };
  return { stream: createReadStream(o.location, { highWaterMark: 1024 * 1024 }) };
}

/** Run a restore (or --verify-only) end to end. */
export async function runRestore(o: RestoreOptions): Promise<RestoreOutcome> {
  const { progress } = o;
  const now = o.now ?? new Date();
  const root = resolve(o.qubesRoot);
  const hostUser = basename(resolve(o.dom0Home));
  // the location must exist before anything is asked (a typo must not cost a passphrase prompt)
  let v1Dir: string | undefined;
  let archiveBytes = 0; // known for a file: the denominator of the progress
  if (o.sourceCommand === undefined && o.location !== '-') {
    const st = await stat(o.location).catch((e: unknown) => fail('ERR_USAGE', `backup location not found: ${o.location}`, {}, e));
    if (st.isFile()) archiveBytes = st.size;
    if (st.isDirectory()) {
      if (!(await isV1BackupDir(o.location))) fail('ERR_USAGE', `${o.location} is a directory but not a format 1 backup (no qubes.xml in it)`);
      v1Dir = o.location;
    }
  }
  await checkGnuTar();
  const pool = new WorkerPool({ threads: Math.max(1, o.threads || availableParallelism()) });
  let source: Source | undefined;
  let staging: Staging | undefined;
  try {
    // 1. header and qubes.xml
    let backupXml: QubesXml;
    let reader: OuterTarReader | undefined;
    let head: Awaited<ReturnType<typeof readArchiveHead>> | undefined;
    let passphrase = '';
    if (v1Dir !== undefined) {
      backupXml = parseQubesXml((await readV1(v1Dir)).qubesXmlBytes);
    } else {
      passphrase = await o.getPassphrase();
      source = await openSource(o);
      source.stream.on('error', () => {}); // surfaced through the reader
      reader = new OuterTarReader(source.stream);
      head = await readArchiveHead(reader, passphrase, { pool, signal: o.signal, maxMemory: o.maxMemory, ...(o.compressionFilter !== undefined ? { forcedCompressionFilter: o.compressionFilter } : {}) });
      backupXml = parseQubesXml(head.qubesXmlBytes);
    }
    // 2. plan
    const host = await loadHostQubesXml(root);
    const plan = planRestore(backupXml, host, hostUser, {
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
    const table = formatRestoreTable(plan);
    if (plan.blocking.length > 0) fail('ERR_PLAN', `the restore cannot proceed:\n${table}\n${plan.blocking.map((l) => `  - ${l}`).join('\n')}`);
    const chosen = plan.vms.filter((v) => v.action === 'restore');
    const withHome = plan.dom0?.action === 'restore';
    if (chosen.length === 0 && !withHome) fail('ERR_PLAN', `nothing to restore:\n${table}`);
    if (!(await o.confirm(table, plan))) fail('ERR_CANCELLED', 'restore cancelled by the user');
    if (!o.verifyOnly) {
      const free = await freeBytes(await existingAncestor(root)).catch(() => Number.POSITIVE_INFINITY);
      if (free < plan.totalBytes) fail('ERR_NO_SPACE', `not enough free space in ${root}: ${free} bytes free, the selected VMs need ${plan.totalBytes} bytes`);
      staging = await createStaging(root);
    }
    // 3. data pass, installing VMs as they complete
    const stagingDir = staging?.dir ?? tmpdir();
    const selection = new Map<string, SelectionEntry>();
    const byName = new Map<string, VmPlan>();
    for (const v of chosen) {
      selection.set(v.subdir, { vm: v.backupName, stagingDir });
      byName.set(v.backupName, v);
    }
    if (withHome) selection.set(plan.dom0!.subdir, { vm: 'dom0', stagingDir });
    const installer = o.verifyOnly ? undefined : new Installer(root, chosen, staging!.dir, progress);
    if (installer) await installer.load();
    const onVmDone = (vm: string, ok: boolean, err?: unknown) => {
      if (!ok) {
        const msg = err instanceof Error ? err.message : String(err);
        progress.vmDone(vm, false, msg);
        installer?.failed(vm, msg);
        return;
      }
      if (!installer) progress.vmDone(vm === 'dom0' ? 'dom0 home' : vm, true, 'verified');
      else if (vm !== 'dom0') installer.done(vm);
    };
    // progress counts the archive read (what takes the time), as a percent when its size is known
    progress.start(o.verifyOnly ? 'verify' : 'restore', archiveBytes);
    let result: RestoreDataResult;
    if (v1Dir !== undefined) result = await restoreV1(v1Dir, selection, { verifyOnly: o.verifyOnly, signal: o.signal, onVmDone });
    else
      result = await restoreData(reader!, {
        head: head!,
        passphrase,
        pool,
        verifyOnly: o.verifyOnly,
        qubesXml: backupXml,
        // --max-memory covers the chunks in flight AND the concurrent key derivations (one per thread)
        maxMemoryBytes: chunkBudget(o.maxMemory, pool.threads, head!.kdfBytes ?? 0, progress),
        maxMemory: o.maxMemory,
        signal: o.signal,
        onProgress: (e) => progress.update(e.bytesRead, e.bytesRestored, e.currentVm),
        onVmDone,
        onWarning: (m) => progress.warn(m),
      }, selection);
    if (source?.command) {
      source.stream.resume();
      const r = await source.command;
      if (r.exitCode !== 0 && !result.archiveError) progress.warn(`--source-command exited with status ${r.exitCode}: ${String(r.stderr).slice(-300)}`);
    }
    await installer?.settle();
    // 4. dom0 home
    let dom0HomeDir: string | undefined;
    const failed: { name: string; error: string }[] = [...(installer?.failures ?? [])];
    for (const [subdir, r] of result.vms) {
      if (!r.ok && !failed.some((f) => f.name === r.vm)) failed.push({ name: r.vm, error: r.error?.message ?? 'failed' });
      if (subdir === plan.dom0?.subdir && r.ok && !o.verifyOnly) {
        try {
          dom0HomeDir = await installDom0Home(join(staging!.dir, 'dom0-home'), o.dom0Home, now);
          progress.vmDone('dom0 home', true, `restored to ${dom0HomeDir}`);
        } catch (e) {
          failed.push({ name: 'dom0', error: (e as Error).message });
        }
      }
    }
    if (result.archiveError) {
      for (const v of chosen) if (!installer?.installed.has(v.backupName) && !failed.some((f) => f.name === v.backupName)) failed.push({ name: v.backupName, error: result.archiveError.message });
    }
    const restored = installer ? chosen.filter((v) => installer.installed.has(v.backupName)).map((v) => ({ name: v.newName, from: v.backupName })) : chosen.filter((v) => !failed.some((f) => f.name === v.backupName)).map((v) => ({ name: v.newName, from: v.backupName }));
    if (failed.length > 0) {
      const lines = failed.map((f) => `  ${f.name}: ${f.error}`).join('\n');
      const what = o.verifyOnly ? 'verification failed' : 'restore incomplete';
      if (failed.some((f) => /No space left on device|ENOSPC/.test(f.error))) throw new QvmBackupError('ERR_NO_SPACE', `${what}: the disk is full:\n${lines}`, { restored: restored.map((r) => r.name) });
      if (restored.length === 0 && !dom0HomeDir) {
        const code = result.archiveError?.code ?? (failed.length ? 'ERR_CHUNK_AUTH' : 'ERR_CORRUPT');
        throw new QvmBackupError(code, `${what}:\n${lines}`, {}, result.archiveError);
      }
      throw new QvmBackupError('ERR_PARTIAL', `${what} for ${failed.length} of ${chosen.length + (withHome ? 1 : 0)}:\n${lines}`, { restored: restored.map((r) => r.name) });
    }
    return { restored, failed, ...(dom0HomeDir ? { dom0HomeDir } : {}), verifyOnly: o.verifyOnly, bytesRead: result.bytesRead };
  } catch (e) {
    if (o.signal.aborted && !(isQvmBackupError(e) && e.code === 'ERR_CANCELLED')) throw new QvmBackupError('ERR_CANCELLED', 'restore interrupted: staging directory removed; VMs already installed stay', {}, e);
    throw e;
  } finally {
    source?.stream.destroy();
    if (source?.command) {
      source.command.kill();
      await source.command.catch(() => {});
    }
    await staging?.remove().catch((e: unknown) => progress.warn((e as Error).message));
    await pool.destroy().catch(() => {});
  }
}

/** Installs finished VMs in plan order once their in-restore dependencies are installed. */
class Installer {
  readonly installed = new Set<string>();
  readonly failures: { name: string; error: string }[] = [];
  #done = new Set<string>();
  #failed = new Set<string>();
  #chain: Promise<void> = Promise.resolve();
  #host!: QubesXml;
  #renames = new Map<string, string>();

  constructor(
    readonly root: string,
    readonly plan: VmPlan[],
    readonly stagingDir: string,
    readonly progress: ProgressReporter,
  ) {
    for (const v of plan) this.#renames.set(v.backupName, v.newName);
  }

  async load(): Promise<void> {
    this.#host = (await loadHostQubesXmlOrEmpty(this.root)).doc;
  }

  done(vm: string): void {
    this.#done.add(vm);
    this.#kick();
  }

  failed(vm: string, error: string): void {
    if (this.#failed.has(vm)) return;
    this.#failed.add(vm);
    this.failures.push({ name: vm, error });
    this.#kick();
  }

  /** Wait until every installable VM is installed. */
  async settle(): Promise<void> {
    this.#kick();
    await this.#chain;
  }

  #kick(): void {
    this.#chain = this.#chain.then(() => this.#step());
  }

  /** Names (backup names) of VMs restored in this run that `v` depends on. */
  #deps(v: VmPlan): string[] {
    const d: DomainInfo = v.domain;
    const inRun = new Set(this.plan.map((p) => p.backupName));
    return [d.template, d.netvm, d.properties['default_dispvm']].filter((n): n is string => typeof n === 'string' && n !== v.backupName && inRun.has(n));
  }

  async #step(): Promise<void> {
    for (let progressMade = true; progressMade; ) {
      progressMade = false;
      for (const v of this.plan) {
        const name = v.backupName;
        if (this.installed.has(name) || this.#failed.has(name) || !this.#done.has(name)) continue;
        const deps = this.#deps(v);
        const bad = deps.find((d) => this.#failed.has(d));
        if (bad !== undefined) {
          this.failed(name, `not installed: ${bad}, which it uses, failed to restore`);
          this.progress.vmDone(name, false, `depends on ${bad}, which failed`);
          progressMade = true;
          continue;
        }
        if (!deps.every((dep) => this.installed.has(dep))) continue;
        try {
          await installVm({ vm: v, stagedDir: join(this.stagingDir, v.subdir.replace(/\/$/, '')), qubesRoot: this.root, host: this.#host, renames: this.#renames, hostDefaults: hostDefaultsOf(this.#host) });
          await saveHostQubesXml(this.root, this.#host);
          this.installed.add(name);
          this.progress.vmDone(v.newName === name ? name : `${name} as ${v.newName}`, true, 'restored');
        } catch (e) {
          this.#failed.add(name);
          this.failures.push({ name, error: (e as Error).message });
          this.progress.vmDone(name, false, (e as Error).message);
        }
        progressMade = true;
      }
    }
  }
}

/** `p` or its closest existing parent (the qubes root may not exist yet). */
async function existingAncestor(p: string): Promise<string> {
  for (let d = p; ; d = dirname(d)) {
    if (await stat(d).then(() => true, () => false)) return d;
    if (dirname(d) === d) return d;
  }
}

/** Memory left for chunks once every worker may be running a key derivation. */
function chunkBudget(maxMemory: number, threads: number, kdfBytes: number, progress: ProgressReporter): number {
  const left = maxMemory - threads * kdfBytes;
  const floor = 256 * 1024 * 1024; // two 100 MiB chunks plus their outputs, at least
  if (left < floor) progress.warn(`--max-memory ${Math.round(maxMemory / 1048576)} MiB is below what ${threads} concurrent scrypt derivations (${Math.round(kdfBytes / 1048576)} MiB each) plus two chunks need; fewer run at once (raise it to use every thread)`);
  return Math.max(left, floor);
}

function hostDefaultsOf(host: QubesXml): { template?: string; netvm?: string } {
  const t = host.globalProperties['default_template'];
  const n = host.globalProperties['default_netvm'];
  return { ...(t ? { template: t } : {}), ...(n ? { netvm: n } : {}) };
}
