// The plan shown before a backup: Qubes' `| VM | type | size |` table (right-aligned columns, its
// type words, the total, the VMs not selected), and the same plan as structured data for --json.
import { join } from 'node:path';
import type { BackupPlan, VmJob } from './backup-plan.js';

/** Qubes' word for a VM's kind in this table: the dom0 home, a template, a VM with its own root
 *  image ("+ Sys": a StandaloneVM, Qubes' "updateable" VM) or any other VM (NetVMs and ProxyVMs too). */
export function qubesTypeWord(job: VmJob, isHome: boolean): string {
  if (isHome) return 'User home';
  if (job.klass === 'TemplateVM' || job.klass === 'TemplateHVM') return 'Template VM';
  if (job.klass === 'StandaloneVM') return 'VM + Sys';
  return 'VM';
}

/** Sizes as Qubes prints them: bytes below 1 KiB, else KiB/MiB/GiB with one decimal. */
export function sizeToHuman(n: number): string {
  if (n < 1024) return `${n} B`;
  const [v, u] = n < 1024 ** 2 ? [n / 1024, 'KiB'] : n < 1024 ** 3 ? [n / 1024 ** 2, 'MiB'] : [n / 1024 ** 3, 'GiB'];
  return `${v.toFixed(1)} ${u}`;
}

/** The text Qubes prints before a backup (columns at least Qubes' widths 16/12/12, wider if a name needs it). */
export function formatBackupSummary(plan: BackupPlan, notSelected: readonly string[]): string {
  const jobs: [VmJob, boolean][] = [...plan.vms.map((v): [VmJob, boolean] => [v, false]), ...(plan.dom0 ? [[plan.dom0, true] as [VmJob, boolean]] : [])];
  const rows = jobs.map(([j, home]) => [j.name, qubesTypeWord(j, home), sizeToHuman(j.sizeBytes)]);
  const total = sizeToHuman(plan.totalBytes);
  const w = [16, 12, 12].map((min, i) => Math.max(min, ...rows.map((r) => r[i]!.length)));
  if (w[0]! < 'Total size:'.length) w[0] = 'Total size:'.length;
  const rule = w.map((x) => `${'-'.repeat(x + 1)}-+`).join('');
  const line = (r: string[]): string => r.map((c, i) => `${c.padStart(w[i]! + 1)} |`).join('');
  const out = [rule, line(['VM', 'type', 'size']), rule, ...rows.map(line), rule];
  out.push(`${'Total size:'.padStart(w[0]! + 1)} |${total.padStart(w[1]! + 1 + 2 + w[2]! + 1)} |`, rule);
  out.push(`VMs not selected for backup:${notSelected.length > 0 ? `\n - ${[...notSelected].sort().join('\n - ')}` : ' none'}`);
  // which home "User home" is (the default follows Qubes: the qubes group's first member)
  const home = plan.dom0?.files[0];
  if (home?.dir !== undefined) out.push(`dom0 home: ${join(home.dir, home.name)}`);
  return `${out.join('\n')}\n`;
}

/** The plan as the `plan` message of --json (docs/json.md). */
export function backupPlanJson(plan: BackupPlan, notSelected: readonly string[]): Record<string, unknown> {
  return {
    vms: plan.vms.map((v) => ({ name: v.name, type: v.klass, type_text: qubesTypeWord(v, false), size_bytes: v.sizeBytes, files: v.files.map((f) => f.base) })),
    dom0_home: plan.dom0 ? { user: plan.dom0.backupPath.replace(/^dom0-home\//, ''), ...(plan.dom0.files[0]?.dir !== undefined ? { path: join(plan.dom0.files[0].dir, plan.dom0.files[0].name) } : {}), size_bytes: plan.dom0.sizeBytes } : null,
    total_bytes: plan.totalBytes,
    not_selected: [...notSelected].sort(),
  };
}
