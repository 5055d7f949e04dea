// The restore plan's types (pure data), apart from planRestore: the order, problem and table
// modules use them without importing the planner that imports them.
import type { DomainInfo } from '../../qubes-xml/index.js';

/** What the user asked for on the command line. */
export interface RestoreSelection {
  /** Positional VM names; non-empty = restore only these (others are excluded). `dom0` = the home. */
  vms: string[];
  exclude: string[];
  skipDom0Home: boolean;
  ignoreUsernameMismatch: boolean;
  renameConflicting: boolean;
  skipConflicting: boolean;
  skipBroken: boolean;
  ignoreMissing: boolean;
  /** Nothing is installed: host conflicts, missing dependencies and user mismatch are no problems. */
  verifyOnly: boolean;
  /** Names already taken on the host's disk, though its qubes.xml lists no such VM: what is in
   *  `appvms/` and `vm-templates/` (a VM directory there is never overwritten). */
  occupied?: ReadonlyMap<string, string>;
}

export type Problem =
  | 'excluded'
  | 'already-exists'
  | 'missing-template'
  | 'missing-netvm'
  | 'bad-reference'
  | 'reference-cycle'
  | 'username-mismatch'
  | 'not-in-backup';

/** One VM of the backup and what happens to it. */
export interface VmPlan {
  backupName: string;
  /** Name on the host: backupName, or `<name>-N` under --rename-conflicting. */
  newName: string;
  /** The VM as described by the backup's qubes.xml (references not yet remapped). */
  domain: DomainInfo;
  /** Archive subdir, always with a trailing slash: `vm3/`, `appvms/work/`. */
  subdir: string;
  sizeBytes: number;
  /** The size its qubes.xml states (undefined: none), which bounds what its data may unpack to
   *  (stream/size-limit.ts). */
  declaredBytes?: number;
  action: 'restore' | 'skip';
  /** Empty for a VM that can be restored; with action 'restore', non-empty problems block the restore. */
  problems: Problem[];
  /** Remarks for the user (host default used, rename, kept dangling reference, …). */
  notes: string[];
  /**
   * What of the backed-up VM will not be carried into the host qubes.xml (properties not on the
   * allow-list or with invalid values, invalid features/tags, device assignments of host VMs, an
   * unusable default_dispvm); filled for VMs to restore, empty in verify-only mode.
   */
  warnings: string[];
  /** Template to use on the host (renamed / host default); null/undefined: none. */
  template?: string | null;
  /** NetVM to use on the host; undefined = the host's default netVM, null = none. */
  netvm?: string | null;
}

/** The dom0 home of the backup. */
export interface Dom0Plan {
  /** Archive subdir of the home (`dom0-home/`); the inner tar root is `dom0-home/<user>/`. */
  subdir: string;
  /** Basename of the home in the backup. */
  user: string;
  sizeBytes: number;
  /** The size its qubes.xml states (undefined: none). */
  declaredBytes?: number;
  action: 'restore' | 'skip';
  problems: Problem[];
}

export interface RestorePlan {
  /** Every VM whose data is in the backup, in install order (skipped ones included, for display). */
  vms: VmPlan[];
  dom0?: Dom0Plan;
  /** Human lines explaining why the restore cannot proceed; empty = ok. */
  blocking: string[];
  /** Bytes of the VMs (and home) with action 'restore'. */
  totalBytes: number;
  /** Positional names that are not restorable VMs of this backup. */
  unknownNames: string[];
  /** `-x` names that match nothing in the backup (a warning each, as qvm-backup gives). */
  unknownExcludes: string[];
  /** 'verify' when planned for --verify-only (the table then says "verify"); default 'restore'. */
  mode?: 'restore' | 'verify';
}
