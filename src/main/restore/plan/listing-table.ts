// Text of `qvm-backup-restore --list`: the archive's settings, then its VMs as a table.
import type { ArchiveListing } from '../list-archive.js';
import { cell, formatSize } from './restore-table.js';

const HEADINGS = ['name', 'type', 'template', 'netvm', 'label', 'size', 'files'] as const;

export function formatListing(l: ArchiveListing): string {
  const out: string[] = [];
  const kv = (k: string, v: string): void => void out.push(`${`${k}:`.padEnd(13)} ${v}`);
  kv('format', `${l.format}${l.headerless ? ' (R2-beta3, no backup-header)' : ''}${l.format === 1 ? ' (a directory: no encryption, no compression)' : ''}`);
  if (l.format !== 1) {
    kv('compression', l.compressed ? (l.compression_filter ?? 'gzip') : 'none');
    kv('encryption', l.encrypted ? (l.format === 4 ? 'scrypt (per-chunk keys)' : (l.cipher ?? 'yes')) : 'none');
    kv('integrity', l.format === 4 ? 'scrypt' : `HMAC-${(l.hmac_algorithm ?? '?').toUpperCase()}`);
  }
  if (l.kdf !== null) kv('KDF cost', `scrypt N=2^${l.kdf.log_n} r=${l.kdf.r} p=${l.kdf.p} (${formatSize(l.kdf.memory_bytes)} per derivation)`);
  if (l.backup_id !== null) kv('backup id', l.backup_id);
  if (l.backup_date !== null) kv('date', `${l.backup_date.replace('T', ' ')} (the writer's local time)`);
  kv('qubes.xml', l.qubes_xml_schema === 'r4' ? 'Qubes R4' : 'Qubes R1-R3');
  out.push('');
  const rows: string[][] = l.vms.map((v) => [
    cell(v.name),
    cell(v.type),
    v.template === null ? '-' : cell(v.template),
    v.netvm_is_default ? '(default)' : v.netvm === null ? '-' : cell(v.netvm),
    v.label === null ? '-' : cell(v.label),
    formatSize(v.size_bytes),
    [v.path === null ? '?' : cell(v.path), ...v.files.map(cell)].join(' '),
  ]);
  if (l.dom0_home !== null) rows.push(['dom0', 'home', '-', '-', '-', formatSize(l.dom0_home.size_bytes), `${cell(l.dom0_home.path)} (home of ${cell(l.dom0_home.user)})`]);
  const widths = HEADINGS.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]): string =>
    cells.map((c, i) => (i === 5 ? c.padStart(widths[i]!) : i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join(' | ').trimEnd();
  const rule = widths.map((w) => '-'.repeat(w)).join('-+-');
  out.push(line(HEADINGS), rule, ...rows.map(line), rule);
  const n = l.vms.length;
  out.push(`${n} VM${n === 1 ? '' : 's'}${l.dom0_home !== null ? ' and the dom0 home' : ''}, ${formatSize(l.total_bytes)} in total`);
  return `${out.join('\n')}\n`;
}
