// The restore plan as the `plan` message of --json (docs/json.md): one object per VM with named
// fields, the same names as the `listing` of --list where they mean the same.
import type { RestorePlan } from './restore-plan.js';

export function restorePlanJson(plan: RestorePlan): Record<string, unknown> {
  const verify = plan.mode === 'verify';
  const d = plan.dom0;
  return {
    vms: plan.vms.map((p) => ({
      name: p.backupName,
      new_name: p.newName,
      type: p.domain.klass,
      template: p.template ?? null,
      netvm: p.netvm ?? null,
      netvm_is_default: p.netvm === undefined,
      label: p.domain.label ?? null,
      size_bytes: p.sizeBytes,
      action: p.action === 'restore' && verify ? 'verify' : p.action,
      problems: p.problems,
      notes: p.notes,
      warnings: p.warnings,
    })),
    dom0_home: d === undefined ? null : { user: d.user, size_bytes: d.sizeBytes, action: d.action === 'restore' && verify ? 'verify' : d.action, problems: d.problems },
    total_bytes: plan.totalBytes,
    blocking: plan.blocking,
  };
}
