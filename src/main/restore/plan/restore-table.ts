// Text rendering of a restore plan: a Qubes-like table (name, type, template, netvm, label, size, what
// happens), then per-VM notes, then the reasons the restore cannot proceed.
import { shortReason } from './restore-problems.js';
import { shown } from '../../qubes-xml/index.js';
import type { RestorePlan, VmPlan } from './plan-types.js';

const HEADINGS = ['name', 'type', 'template', 'netvm', 'label', 'size', 'what happens'] as const;
const SIZE_COLUMN = 5;

/** Render `plan` as the table printed before a restore (ends with a newline). */
export function formatRestoreTable(plan: RestorePlan): string {
  const verify = plan.mode === 'verify';
  const rows: string[][] = plan.vms.map((p) => [
    p.newName === p.backupName ? p.backupName : `${p.backupName} → ${p.newName}`,
    p.domain.klass,
    p.template === undefined || p.template === null ? 'n/a' : p.template,
    p.netvm === undefined ? '(default)' : p.netvm === null ? '-' : p.netvm,
    p.domain.label === undefined ? '-' : cell(p.domain.label),
    formatSize(p.sizeBytes),
    whatHappens(p, verify),
  ]);
  const d = plan.dom0;
  if (d !== undefined) {
    const what =
      d.action === 'skip'
        ? `skip: ${d.problems.includes('excluded') ? 'not selected' : 'unusable backup path'}`
        : d.problems.length > 0
          ? `BLOCKED: home of ${d.user}: user name mismatch`
          : verify
            ? `verify home of ${d.user}`
            : `restore home of ${d.user} into ~/home-restore-<date>/`;
    rows.push(['dom0', 'AdminVM', 'n/a', 'n/a', '-', formatSize(d.sizeBytes), what]);
  }
  const widths = HEADINGS.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]): string =>
    cells
      .map((c, i) => (i === SIZE_COLUMN ? c.padStart(widths[i] ?? 0) : i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join(' | ');
  const rule = widths.map((w) => '-'.repeat(w)).join('-+-');
  const out = [line(HEADINGS), rule, ...rows.map(line)];
  out.push(rule, `total to ${verify ? 'verify' : 'restore'}: ${formatSize(plan.totalBytes)}`);

  const notes = plan.vms.flatMap((p) => [...p.notes, ...p.warnings].map((n) => `  ${p.newName}: ${n}`));
  if (notes.length > 0) out.push('', 'Notes:', ...notes);
  if (plan.blocking.length > 0) out.push('', 'The restore cannot proceed:', ...plan.blocking.map((b) => `  ${b}`));
  return `${out.join('\n')}\n`;
}

function whatHappens(p: VmPlan, verify: boolean): string {
  if (p.action === 'skip') return `skip: ${p.problems.map((x) => shortReason(p, x)).join(', ') || 'unusable entry'}`;
  if (p.problems.length > 0) return `BLOCKED: ${p.problems.map((x) => shortReason(p, x)).join(', ')}`;
  if (verify) return 'verify';
  return p.newName === p.backupName ? 'restore' : `restore, renamed to ${p.newName}`;
}

/** An untrusted name from qubes.xml as a table cell: plain when it is printable ASCII, else quoted and escaped. */
export const cell = (untrusted: string): string => (/^[\x21-\x7e]{1,64}$/.test(untrusted) ? untrusted : shown(untrusted));

/** Bytes as a short binary-unit string (`0 B`, `512 B`, `2.0 MiB`, `1.5 GiB`). */
export function formatSize(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = bytes;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${v} B` : `${v.toFixed(1)} ${units[u]}`;
}
