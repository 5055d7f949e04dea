// Installs the VMs of a restore in plan order, each once its data is complete and the VMs it uses
// (template, netVM, default DispVM) restored in the same run are installed or in the same group.
// The VMs ready at one time are installed as a group (up to GROUP_SIZE): each VM's files are moved
// into place and it is merged into the qubes.xml currently on disk (read again under the host
// lock, never a copy taken at the start), then that document is written once, atomically, for the
// whole group — a VM is registered only after its files are in place, and a failed write moves the
// files of the whole group back. (One write and fsync per VM made a 100-VM restore rewrite a
// growing qubes.xml 100 times.) Nothing is installed once the run was interrupted or the lock was lost.
import { rmdirSync, rmSync } from 'node:fs';
import { open, rm, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { INSTALL_JOURNAL } from './staging.js';
import { QvmBackupError, isQvmBackupError } from '../../errors.js';
import type { HostLock } from '../../io/host-lock.js';
import { markForRollback, restoreWarningsOf, setRestoredDefaultDispvm, type DomainInfo, type QubesXml } from '../../qubes-xml/index.js';
import { RunStats } from '../../stats/run-stats.js';
import type { ProgressReporter } from '../../progress/progress.js';
import type { VmPlan } from '../plan/restore-plan.js';
import { loadHostQubesXmlOrEmpty, saveHostQubesXml } from './host-qubes-xml.js';
import { installVm, stagedCheck, type StagedCheck } from './install-vm.js';
import { fsyncPath } from './safe-tree.js';
import { exitWaitsFor } from '../../io/exit-cleanup.js';

export interface InstallerOptions {
  root: string;
  /** the VMs to restore, in install order */
  plan: VmPlan[];
  stagingDir: string;
  progress: ProgressReporter;
  signal: AbortSignal;
  lock: HostLock;
  stats?: RunStats;
}

/** At most this many VMs are registered by one qubes.xml write (bounds what a crash between the
 *  file moves and the write leaves unregistered). */
export const GROUP_SIZE = 32;
/** Staged VMs checked (walked, fsynced) at the same time. */
const CHECKS_AT_ONCE = 4;

/** Runs the functions given to it, at most `n` at once, in the order given. */
function limiter(n: number): <R>(fn: () => Promise<R>) => Promise<R> {
  let active = 0;
  const waiting: (() => void)[] = [];
  const release = (): void => {
    const next = waiting.shift();
    if (next !== undefined) next();
    else active--;
  };
  return async <R>(fn: () => Promise<R>): Promise<R> => {
    if (active < n) active++;
    else await new Promise<void>((resolve) => waiting.push(resolve));
    try {
      return await fn();
    } finally {
      release();
    }
  };
}

export class Installer {
  readonly installed = new Set<string>();
  readonly failures: { name: string; error: string; code?: string }[] = [];
  readonly #o: InstallerOptions;
  readonly #done = new Set<string>();
  readonly #failed = new Set<string>();
  readonly #renames = new Map<string, string>();
  #chain: Promise<void> = Promise.resolve();
  /** default_dispvm of `vm` names `target` (backup names), installed later in this run */
  #deferred: { vm: string; target: string }[] = [];
  /** the staged files' checks (stagedCheck) started, by backup name */
  readonly #checks = new Map<string, Promise<StagedCheck>>();
  /** the last check started for each VM, settled either way (each starts after the one before of
   *  its VM: these settle after every check, also those forget() dropped) */
  readonly #lastOf = new Map<string, Promise<void>>();
  readonly #checkSlot = limiter(CHECKS_AT_ONCE);

  constructor(o: InstallerOptions) {
    this.#o = o;
    for (const v of o.plan) this.#renames.set(v.backupName, v.newName);
  }

  /**
   * The VM's files are all extracted: their checks and fsyncs (stagedCheck: nothing outside the
   * staging directory) may start, a few VMs at a time, while the rest of the archive is read; its
   * install still waits for done(). Call quiesce() before the staging directory is removed.
   */
  prepare(vm: string): void {
    if (!this.#o.signal.aborted) void this.#check(vm);
  }

  /** More of the VM's files are coming after all: a check prepare() started is not used; its
   *  install checks what is there then. */
  forget(vm: string): void {
    this.#checks.delete(vm);
  }

  /** Resolves once no check that prepare() or an install started still runs. */
  async quiesce(): Promise<void> {
    await Promise.all(this.#lastOf.values());
  }

  /** `vm`'s check (started now if it was not), or undefined when it is not in the plan. */
  #check(vm: string): Promise<StagedCheck> | undefined {
    const known = this.#checks.get(vm);
    if (known !== undefined) return known;
    const v = this.#o.plan.find((p) => p.backupName === vm);
    if (v === undefined) return undefined;
    const stats = this.#o.stats ?? RunStats.off();
    const { signal } = this.#o;
    // after a stop nothing more is checked (the staging directory is about to go); a check that
    // forget() dropped ends before the next of the same VM starts (both would walk one directory)
    const before = this.#lastOf.get(vm) ?? Promise.resolve();
    const p = before.then(() =>
      this.#checkSlot(() => {
        if (signal.aborted) throw new QvmBackupError('ERR_CANCELLED', `${v.newName}: not checked: the run was stopped`, { vm: v.newName });
        return stats.time('install: check + fsync staged files', () => stagedCheck(this.#o.root, this.#stagedOf(v), v, signal));
      }),
    );
    const settled = p.then(
      () => undefined,
      () => undefined, // the rejection is the VM's install's to report, if it comes to one
    );
    this.#lastOf.set(vm, settled);
    this.#checks.set(vm, p);
    return p;
  }

  #stagedOf(v: VmPlan): string {
    return join(this.#o.stagingDir, v.subdir.replace(/\/$/, ''));
  }

  /** The VM's data is complete and verified. */
  done(vm: string): void {
    this.#done.add(vm);
    this.#kick();
  }

  /** The VM failed before install (its data); VMs that use it will not be installed either. */
  failed(vm: string, error: string, code?: string): void {
    if (this.#failed.has(vm)) return;
    this.#failed.add(vm);
    this.failures.push({ name: vm, error, ...(code ? { code } : {}) });
    this.#kick();
  }

  /**
   * Wait until every installable VM is installed (or failed). A VM whose data is complete but that
   * is still waiting (its references form a cycle, or the lock was lost) fails here: never a
   * selected VM that is neither installed nor reported. Then the deferred default_dispvms are set.
   */
  async settle(): Promise<void> {
    this.#kick();
    await this.#chain;
    if (this.#o.signal.aborted) return;
    for (const v of this.#o.plan) {
      const name = v.backupName;
      if (!this.#done.has(name) || this.installed.has(name) || this.#failed.has(name)) continue;
      const waiting = this.#deps(v).filter((d) => !this.installed.has(d));
      const why = this.#o.lock.held()
        ? `not installed: ${waiting.join(', ') || 'a VM'} it uses could not be installed before it (a reference cycle)`
        : `not installed: the host lock ${this.#o.lock.path} was lost (its flock process ended)`;
      this.failed(name, why, this.#o.lock.held() ? 'ERR_PLAN' : 'ERR_LOCKED');
      this.#o.progress.vmDone(name, false, why);
    }
    await this.#chain; // the steps failed() kicked
    await this.#setDeferred();
  }

  /** default_dispvm references between VMs of this run, set in one qubes.xml write at the end. */
  async #setDeferred(): Promise<void> {
    const { root, progress, signal, lock } = this.#o;
    const todo = this.#deferred.filter((d) => this.installed.has(d.vm));
    this.#deferred = [];
    if (todo.length === 0 || signal.aborted || !lock.held()) return;
    const { doc } = await loadHostQubesXmlOrEmpty(root);
    let changed = false;
    for (const d of todo) {
      const target = this.#renames.get(d.target)!;
      const r = setRestoredDefaultDispvm(doc, this.#renames.get(d.vm)!, target, this.installed.has(d.target));
      if (r.changed) changed = true;
      if (r.warning !== undefined) progress.warn(r.warning);
    }
    if (changed) await saveHostQubesXml(root, doc);
  }

  #kick(): void {
    this.#chain = this.#chain.then(() => this.#step());
  }

  /** Names (backup names) of VMs restored in this run that `v` must wait for: its template and
   *  netVM. A default_dispvm between VMs of the run is set once both are installed (#deferred). */
  #deps(v: VmPlan): string[] {
    const d: DomainInfo = v.domain;
    const inRun = new Set(this.#o.plan.map((p) => p.backupName));
    return [d.template, d.netvm].filter((n): n is string => typeof n === 'string' && n !== v.backupName && inRun.has(n));
  }

  async #step(): Promise<void> {
    const { signal, lock } = this.#o;
    for (let progressMade = true; progressMade; ) {
      progressMade = false;
      // after Ctrl-C/SIGTERM nothing more is installed; without the lock nothing is written
      // (settle() reports what is left)
      if (signal.aborted || !lock.held()) return;
      const group: VmPlan[] = [];
      const inGroup = new Set<string>();
      for (const v of this.#o.plan) {
        const name = v.backupName;
        if (this.installed.has(name) || this.#failed.has(name) || !this.#done.has(name)) continue;
        const deps = this.#deps(v);
        const bad = deps.find((d) => this.#failed.has(d));
        if (bad !== undefined) {
          this.#dependencyFailed(v, bad);
          progressMade = true;
          continue;
        }
        // a dependency earlier in the same group is registered by the same write, never after it
        if (!deps.every((dep) => this.installed.has(dep) || inGroup.has(dep))) continue;
        group.push(v);
        inGroup.add(name);
        if (group.length === GROUP_SIZE) break;
      }
      if (group.length > 0) {
        await this.#installGroup(group);
        progressMade = true;
      }
    }
  }

  #dependencyFailed(v: VmPlan, bad: string): void {
    this.failed(v.backupName, `not installed: ${bad}, which it uses, failed to restore`);
    this.#o.progress.vmDone(v.backupName, false, `depends on ${bad}, which failed`);
  }

  #installFailed(name: string, e: unknown): void {
    this.#failed.add(name);
    const err = isQvmBackupError(e) ? e : new QvmBackupError('ERR_IO', `${name}: ${(e as Error).message}`, { vm: name }, e);
    this.failures.push({ name, error: err.message, code: err.code });
    this.#o.progress.vmDone(name, false, err.message);
  }

  /** Move the group's files into place, merging each VM into the qubes.xml on disk now (we hold
   *  the lock), then write that document once; if the write fails, every VM of the group is moved
   *  back and fails. */
  async #installGroup(group: VmPlan[]): Promise<void> {
    const { root, stagingDir, lock, progress, signal } = this.#o;
    const stats = this.#o.stats ?? RunStats.off();
    const { doc: host } = await stats.time('install: read host qubes.xml', () => loadHostQubesXmlOrEmpty(root));
    const moved: { v: VmPlan; undo: () => Promise<void> }[] = [];
    const journal = new InstallJournal(stagingDir);
    // the staged files' checks of the whole group (or those prepare() started) run at once, a few
    // at a time: each VM's move waits for its own
    for (const v of group) if (this.#deps(v).every((d) => !this.#failed.has(d))) void this.#check(v.backupName);
    const parents = new Set<string>();
    try {
      for (const v of group) {
        if (signal.aborted) break; // (what moved is moved back below: nothing is written)
        const bad = this.#deps(v).find((d) => this.#failed.has(d));
        if (bad !== undefined) {
          this.#dependencyFailed(v, bad);
          continue;
        }
        // a VM that fails leaves the group's document as it was
        const rollback = markForRollback(host);
        let undo: (() => Promise<void>) | undefined;
        const checked = this.#checks.get(v.backupName);
        try {
          await stats.time('install: check + move files', () =>
            installVm({
              vm: v,
              stagedDir: this.#stagedOf(v),
              qubesRoot: root,
              host,
              renames: this.#renames,
              hostDefaults: hostDefaultsOf(host),
              deferDefaultDispvm: true,
              keepUndo: (u) => (undo = u),
              willCreate: (target, state) => journal.add(target, state),
              ...(checked !== undefined ? { checked } : {}),
              syncParentLater: (dir) => parents.add(dir),
            }),
          );
          moved.push({ v, undo: undo ?? (async () => {}) });
        } catch (e) {
          rollback();
          this.#installFailed(v.backupName, e);
        }
      }
    } finally {
      // nothing of this group's still runs once it returns
      await this.quiesce();
    }
    if (moved.length === 0) {
      await journal.clear();
      return;
    }
    try {
      // the renames are on disk before qubes.xml names the VMs (one fsync per directory)
      for (const dir of parents) await fsyncPath(dir);
      // (checked after those waits: a stop during them installs nothing)
      if (signal.aborted) throw new QvmBackupError('ERR_CANCELLED', 'interrupted before qubes.xml was written: not installed');
      if (!lock.held()) throw new QvmBackupError('ERR_LOCKED', `the host lock ${lock.path} was lost; not writing qubes.xml`);
      // from the write on, a forced exit leaves the directories to the journal on disk: the next
      // restore keeps those the new qubes.xml lists (the write may have landed) and removes the rest
      journal.unhook();
      await stats.time('install: write host qubes.xml (fsync)', () =>
        exitWaitsFor(saveHostQubesXml(root, host, (tmp) => journal.add(tmp, 'temp'))).catch((e: unknown) => {
          // in place but not synced: what it lists stays (moving the directories back would leave
          // it listing VMs that are not there)
          if (!(isQvmBackupError(e) && e.context['landed'] === true)) throw e;
          progress.warn(e.message);
        }),
      );
      await journal.clear();
    } catch (e) {
      // never a VM directory that qubes.xml does not list; a forced exit during the moves back
      // removes what is still in the root (as before the write)
      journal.hook();
      for (const m of [...moved].reverse()) await m.undo();
      await journal.clear();
      for (const m of moved) this.#installFailed(m.v.backupName, isQvmBackupError(e) ? new QvmBackupError(e.code, `${m.v.newName}: ${e.message}`, { ...e.context, vm: m.v.newName }, e) : e);
      return;
    }
    for (const { v } of moved) {
      const name = v.backupName;
      this.installed.add(name);
      progress.vmDone(v.newName === name ? name : `${name} as ${v.newName}`, true, 'restored');
      const dd = v.domain.defaultDispvm;
      if (typeof dd === 'string' && dd !== v.backupName && this.#renames.has(dd) && !this.installed.has(dd)) this.#deferred.push({ vm: v.backupName, target: dd });
      // what was not carried into qubes.xml, beyond what the plan table already listed
      for (const w of restoreWarningsOf(host, v.newName) ?? []) if (!v.warnings.includes(w)) progress.warn(`${v.newName}: ${w}`);
    }
  }
}

/**
 * The VM directories of one group moved into the qubes root and not yet in its qubes.xml, kept
 * in the staging directory (`INSTALL_JOURNAL`): a forced exit (a second Ctrl-C) removes them at
 * once (an exit hook), and after a kill -9 the next restore finds them in the journal of the
 * staging directory it sweeps and removes those qubes.xml does not list (removeStaleStaging).
 */
class InstallJournal {
  readonly #file: string;
  /** what the file says: made by this run (removed by a forced exit), or about to be made (an
   *  intent: its mkdir may have run when a forced exit comes before the `made` entry, the exit
   *  being handled before the mkdir's completion; removed by it only when empty) */
  #entries: { target: string; state: 'intent' | 'made' }[] = [];
  #hooked = false;
  /** the journal file, open for appending from the first entry to clear() */
  #fh: FileHandle | undefined;
  readonly #onExit = (): void => {
    for (const { target, state } of this.#entries) {
      if (state === 'made') rmSync(target, { recursive: true, force: true });
      else {
        try {
          rmdirSync(target);
        } catch {
          // not made, or not empty: not ours to remove
        }
      }
    }
  };

  constructor(stagingDir: string) {
    this.#file = join(stagingDir, INSTALL_JOURNAL);
  }

  /** `target` is about to be made (`intent`), was made by this run (`made`: it did not exist;
   *  its removal is ours to do), or was not made after all (`abandoned`: its mkdir failed, what
   *  is there is not ours); or it is the temporary file of the qubes.xml write (`temp`: on disk
   *  only, for the sweep after a kill -9; a forced exit leaves it to write-file-atomic's own
   *  exit handler). */
  async add(target: string, state: 'intent' | 'made' | 'abandoned' | 'temp'): Promise<void> {
    if (state !== 'temp') {
      const others = this.#entries.filter((e) => e.target !== target);
      this.#entries = state === 'abandoned' ? others : [...others, { target, state }];
      if (state !== 'abandoned') this.hook();
    }
    // one line appended per change, by one write, led by a newline (journalEntries: the last
    // line of a target wins; a line cut short by a kill or a full disk does not parse and is
    // skipped, which leaves the state before it); no fsync: it is for a killed process, whose
    // writes the kernel keeps
    this.#fh ??= await open(this.#file, 'a', 0o600);
    const line = Buffer.from(`\n${JSON.stringify({ target, state })}`);
    const { bytesWritten } = await this.#fh.write(line);
    if (bytesWritten !== line.length) throw new Error(`${this.#file}: ${bytesWritten} of ${line.length} bytes written`);
  }

  /** A forced exit from now on removes what this run made (again, after unhook()). */
  hook(): void {
    if (!this.#hooked) process.on('exit', this.#onExit);
    this.#hooked = true;
  }

  /** A forced exit from now on removes nothing itself (the qubes.xml write is under way). */
  unhook(): void {
    if (this.#hooked) process.off('exit', this.#onExit);
    this.#hooked = false;
  }

  /** The group is in qubes.xml, or moved back. */
  async clear(): Promise<void> {
    this.#entries = [];
    this.unhook();
    const fh = this.#fh;
    this.#fh = undefined;
    await fh?.close().catch(() => undefined);
    await rm(this.#file, { force: true });
  }
}

function hostDefaultsOf(host: QubesXml): { template?: string; netvm?: string } {
  const t = host.globalProperties['default_template'];
  const n = host.globalProperties['default_netvm'];
  return { ...(t ? { template: t } : {}), ...(n ? { netvm: n } : {}) };
}
