// Human explanations of the problems that stop a restore, each with the option that resolves it
// (the `blocking` list of the plan), and the short per-VM reason shown in the restore table.
import type { Dom0Plan, Problem, VmPlan } from './plan-types.js';

/** Lines for every VM (and the dom0 home) that would be restored but has problems. */
export function blockingLines(
  plans: readonly VmPlan[], dom0: Dom0Plan | undefined, hostUser: string,
  reasons: ReadonlyMap<VmPlan, ReadonlyMap<Problem, string>>,
): string[] {
  const lines: string[] = [];
  for (const p of plans) {
    if (p.action !== 'restore') continue;
    for (const problem of p.problems) {
      const why = reasons.get(p)?.get(problem);
      lines.push(`${p.backupName}: ${explain(p, problem, why)}`);
    }
  }
  if (dom0?.action === 'restore' && dom0.problems.includes('username-mismatch')) {
    lines.push(
      `dom0 home: the backup holds the home of user '${dom0.user}', but this host's user is '${hostUser}' ` +
        '(use --ignore-username-mismatch to restore it anyway, or --skip-dom0-home)',
    );
  }
  return lines;
}

function explain(p: VmPlan, problem: Problem, why: string | undefined): string {
  switch (problem) {
    case 'already-exists':
      return `${why ?? 'a VM with this name already exists on the host'} (use --rename-conflicting or --skip-conflicting, or -x ${p.backupName})`;
    case 'missing-template':
      // under --ignore-missing it is missing because the host has no default: only the skip helps
      return `${why ?? `template ${String(p.template)} is missing`} (${why?.endsWith('to use instead') === true ? 'set the host\'s default with qubes-prefs, or use' : 'use --ignore-missing to use the host\'s default template, or'} --skip-broken to skip this VM)`;
    case 'missing-netvm':
      return `${why ?? `netVM ${String(p.netvm)} is missing`} (use --ignore-missing to use the host's default netVM, or --skip-broken to skip this VM)`;
    case 'bad-reference':
    case 'reference-cycle':
      return `${why ?? 'invalid template/netVM reference'}: Qubes would refuse this VM (exclude it with -x ${p.backupName}, or use --skip-broken to skip it)`;
    case 'username-mismatch':
      return 'user name mismatch (use --ignore-username-mismatch)';
    case 'not-in-backup':
      return 'its data is not in the backup';
    case 'excluded':
      return 'excluded';
  }
}

/** Short reason for the "what happens" column. */
export function shortReason(p: VmPlan, problem: Problem): string {
  switch (problem) {
    case 'excluded':
      return 'not selected';
    case 'already-exists':
      return `${p.backupName} already exists on the host`;
    case 'missing-template':
      return `template ${String(p.template)} missing`;
    case 'missing-netvm':
      return `netVM ${String(p.netvm)} missing`;
    case 'bad-reference':
      return 'invalid template/netVM';
    case 'reference-cycle':
      return 'reference cycle';
    case 'username-mismatch':
      return 'user name mismatch';
    case 'not-in-backup':
      return 'no data in the backup';
  }
}
