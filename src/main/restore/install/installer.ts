// Installs the VMs of a restore in plan order, each once its data is complete and the VMs it uses
// (template, netVM, default DispVM) restored in the same run are installed. Every install merges
// the VM into the qubes.xml currently on disk (read again under the host lock, never a copy taken
// at the start) and writes it atomically; a failed write moves the files back. Nothing is
// installed once the run was interrupted or the lock was lost.
import { join } from 'node:path';
import { QvmBackupError, isQvmBackupError } from '../../errors.js';
import type { HostLock } from '../../io/host-lock.js';
import { restoreWarningsOf, setRestoredDefaultDispvm, type DomainInfo, type QubesXml } from '../../qubes-xml/index.js';
import type { ProgressReporter } from '../../progress/progress.js';
import type { VmPlan } from '../plan/restore-plan.js';
import { loadHostQubesXmlOrEmpty, saveHostQubesXml } from './host-qubes-xml.js';
import { installVm } from './install-vm.js';

export interface InstallerOptions {
  root: string;
  /** the VMs to restore, in install order */
  plan: VmPlan[];
  stagingDir: string;
  progress: ProgressReporter;
  signal: AbortSignal;
  lock: HostLock;
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

  constructor(o: InstallerOptions) {
    this.#o = o;
    for (const v of o.plan) this.#renames.set(v.backupName, v.newName);
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
      const why = this.installed.has(d.target) ? setRestoredDefaultDispvm(doc, this.#renames.get(d.vm)!, target) : `${this.#renames.get(d.vm)}: default_dispvm ${target} not set: it was not restored; the default applies`;
      if (why === null) changed = true;
      else progress.warn(why);
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
    const { progress, signal, lock } = this.#o;
    for (let progressMade = true; progressMade; ) {
      progressMade = false;
      for (const v of this.#o.plan) {
        const name = v.backupName;
        if (this.installed.has(name) || this.#failed.has(name) || !this.#done.has(name)) continue;
        // after Ctrl-C/SIGTERM nothing more is installed; without the lock nothing is written
        // (settle() reports what is left)
        if (signal.aborted || !lock.held()) return;
        const deps = this.#deps(v);
        const bad = deps.find((d) => this.#failed.has(d));
        if (bad !== undefined) {
          this.failed(name, `not installed: ${bad}, which it uses, failed to restore`);
          progress.vmDone(name, false, `depends on ${bad}, which failed`);
          progressMade = true;
          continue;
        }
        if (!deps.every((dep) => this.installed.has(dep))) continue;
        try {
          await this.#install(v);
          this.installed.add(name);
          progress.vmDone(v.newName === name ? name : `${name} as ${v.newName}`, true, 'restored');
        } catch (e) {
          this.#failed.add(name);
          const err = isQvmBackupError(e) ? e : new QvmBackupError('ERR_IO', `${name}: ${(e as Error).message}`, { vm: name }, e);
          this.failures.push({ name, error: err.message, code: err.code });
          progress.vmDone(name, false, err.message);
        }
        progressMade = true;
      }
    }
  }

  /** Merge one VM into the qubes.xml on disk now (we hold the lock) and write it back. */
  async #install(v: VmPlan): Promise<void> {
    const { root, stagingDir, lock, progress } = this.#o;
    const { doc: host } = await loadHostQubesXmlOrEmpty(root);
    await installVm({
      vm: v,
      stagedDir: join(stagingDir, v.subdir.replace(/\/$/, '')),
      qubesRoot: root,
      host,
      renames: this.#renames,
      hostDefaults: hostDefaultsOf(host),
      deferDefaultDispvm: true,
      commit: async (doc) => {
        if (!lock.held()) throw new QvmBackupError('ERR_LOCKED', `${v.newName}: the host lock ${lock.path} was lost; not writing qubes.xml`, { vm: v.newName });
        await saveHostQubesXml(root, doc);
      },
    });
    const dd = v.domain.defaultDispvm;
    if (typeof dd === 'string' && dd !== v.backupName && this.#renames.has(dd) && !this.installed.has(dd)) this.#deferred.push({ vm: v.backupName, target: dd });
    // what was not carried into qubes.xml, beyond what the plan table already listed
    for (const w of restoreWarningsOf(host, v.newName) ?? []) if (!v.warnings.includes(w)) progress.warn(`${v.newName}: ${w}`);
  }
}

function hostDefaultsOf(host: QubesXml): { template?: string; netvm?: string } {
  const t = host.globalProperties['default_template'];
  const n = host.globalProperties['default_netvm'];
  return { ...(t ? { template: t } : {}), ...(n ? { netvm: n } : {}) };
}
