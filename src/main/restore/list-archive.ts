// `qvm-backup-restore --list`: what an archive holds, from its header and qubes.xml only. Both are
// authenticated as for a restore; then the source is closed (a --source-command is stopped), so no
// chunk of VM data is read or decrypted, and nothing is written to the host.
import { stat } from 'node:fs/promises';
import { fail } from '../errors.js';
import { parseQubesXml, type DomainInfo, type QubesXml } from '../qubes-xml/index.js';
import { WorkerPool } from '../pipeline/worker-pool.js';
import { OuterTarReader } from '../tar/outer-tar-reader.js';
import { scryptCost } from '../../workers/scrypt-file.js';
import { closeSource, openSource, type Source } from './archive-source.js';
import { resolveRestoreSettings, type RestoreChoices } from './settings.js';
import { readArchiveHead, isV1BackupDir, readV1, type ArchiveHead } from './stream/index.js';
import { subdirOfDomain } from './stream/verify-expect.js';
import { dom0UserOf } from './plan/backup-subdir.js';
import { backupPathOf, backupSizeOf, isAdminVm, isIncluded } from './plan/domain-view.js';

export interface ListOptions extends Omit<RestoreChoices, 'imageExtraction'> {
  location: string;
  sourceCommand?: string;
  getPassphrase: () => Promise<string>;
  signal: AbortSignal;
}

/** One VM whose data is in the archive (field names are the --json ones, docs/json.md). */
export interface ListedVm {
  name: string;
  type: string;
  template: string | null;
  /** null: none, or the default (see netvm_is_default) */
  netvm: string | null;
  netvm_is_default: boolean;
  label: string | null;
  size_bytes: number;
  /** the VM's directory in the archive (backup-path) */
  path: string | null;
  /** format 4: the volume images qubes.xml says were backed up; otherwise empty (not recorded) */
  files: string[];
}

export interface ArchiveListing {
  format: 1 | 2 | 3 | 4;
  /** R2-beta3 archive without backup-header (its settings were detected) */
  headerless: boolean;
  encrypted: boolean;
  compressed: boolean;
  compression_filter: string | null;
  cipher: string | null;
  hmac_algorithm: string | null;
  kdf: { name: 'scrypt'; log_n: number; n: number; r: number; p: number; memory_bytes: number } | null;
  backup_id: string | null;
  /** from the backup-id (format 4: `%Y%m%dT%H%M%S-<pid>`, the creating machine's local time) */
  backup_date: string | null;
  qubes_xml_schema: 'r4' | 'r2r3';
  vms: ListedVm[];
  dom0_home: { user: string; size_bytes: number; path: string } | null;
  total_bytes: number;
}

/** Read the head of the archive and describe it. */
export async function listArchive(o: ListOptions): Promise<ArchiveListing> {
  const s = resolveRestoreSettings(o);
  if (o.sourceCommand === undefined && o.location !== '-') {
    const st = await stat(o.location).catch((e: unknown) => fail('ERR_USAGE', `backup location not found: ${o.location}`, {}, e));
    if (st.isDirectory()) {
      if (!(await isV1BackupDir(o.location))) fail('ERR_USAGE', `${o.location} is a directory but not a format 1 backup (no qubes.xml in it)`);
      return describe(null, parseQubesXml((await readV1(o.location)).qubesXmlBytes));
    }
  }
  const passphrase = await o.getPassphrase();
  // two derivations at most: the header's and qubes.xml's
  const pool = new WorkerPool({ threads: Math.min(2, s.threads) });
  let source: Source | undefined;
  const stopReading = (): void => {
    source?.stop();
  };
  o.signal.addEventListener('abort', stopReading, { once: true });
  try {
    source = await openSource(o);
    const head = await readArchiveHead(new OuterTarReader(source.input), passphrase, { pool, signal: o.signal, maxMemory: s.maxMemory, ...(s.compressionFilter !== undefined ? { forcedCompressionFilter: s.compressionFilter } : {}) });
    o.signal.throwIfAborted();
    return describe(head, parseQubesXml(head.qubesXmlBytes));
  } finally {
    o.signal.removeEventListener('abort', stopReading);
    // stop here: the rest of the archive (the VM data) is not read
    if (source) await closeSource(source);
    await pool.destroy().catch(() => {});
  }
}

function describe(head: ArchiveHead | null, xml: QubesXml): ArchiveListing {
  const format = head?.version ?? 1;
  const h = head?.header;
  const vms: ListedVm[] = [];
  let dom0: ArchiveListing['dom0_home'] = null;
  for (const d of xml.domains) {
    if (!isIncluded(d)) continue;
    const path = backupPathOf(d) ?? null;
    const size = backupSizeOf(d);
    if (isAdminVm(d)) {
      const user = path === null ? null : dom0UserOf(path);
      if (user !== null) dom0 = { user, size_bytes: size, path: path! };
      continue;
    }
    vms.push(listedVm(d, path, size, format));
  }
  const kdf = head?.kdf;
  const id = h?.backupId ?? null;
  return {
    format,
    headerless: head?.headerless ?? false,
    encrypted: h?.encrypted ?? false,
    compressed: h?.compressed ?? false,
    compression_filter: h === undefined || !h.compressed ? null : (h.compressionFilter ?? 'gzip'),
    cipher: h?.encrypted && h.version !== 4 ? (h.cryptoAlgorithm ?? 'aes-256-cbc') : null,
    hmac_algorithm: h?.hmacAlgorithm ?? null,
    kdf: kdf === undefined ? null : { name: 'scrypt', log_n: kdf.logN, n: 2 ** kdf.logN, r: kdf.r, p: kdf.p, memory_bytes: scryptCost(kdf).bytes },
    backup_id: id,
    backup_date: id === null ? null : dateOfBackupId(id),
    qubes_xml_schema: xml.schema,
    vms,
    dom0_home: dom0,
    total_bytes: vms.reduce((a, v) => a + v.size_bytes, 0) + (dom0?.size_bytes ?? 0),
  };
}

function listedVm(d: DomainInfo, path: string | null, size: number, format: 1 | 2 | 3 | 4): ListedVm {
  return {
    name: d.name,
    type: d.klass,
    template: d.template ?? null,
    netvm: d.netvm ?? null,
    netvm_is_default: d.netvm === undefined,
    label: d.label ?? null,
    size_bytes: size,
    path,
    files: format === 4 && subdirOfDomain(d) !== null ? d.volumes.filter((v) => v.saveOnStop).map((v) => `${v.name}.img`) : [],
  };
}

/** `20161020T123455-1234` → `2016-10-20T12:34:55` (no zone: the id is the writer's local time). */
export function dateOfBackupId(id: string): string | null {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})-/.exec(id);
  return m === null ? null : `${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${m[6]}`;
}
