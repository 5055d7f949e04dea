// The header stage on its own: backup-header and backup-header.hmac as the backup writes them,
// authenticated by the restore's own header checks (scrypt copy for format 4, HMAC guess for 2/3),
// refused under another passphrase, and (format 4) decrypted by the `scrypt` tool itself.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { headerHmacMember, headerMember } from '../../../src/main/backup/header-stage.js';
import { resolveBackupSettings, type BackupChoices } from '../../../src/main/backup/settings.js';
import { parseBackupHeader } from '../../../src/main/format/backup-header.js';
import { guessHmacAlgorithm, isScryptHeaderHmac } from '../../../src/main/format/hmac-algorithm.js';
import { WorkerPool } from '../../../src/main/pipeline/worker-pool.js';
import { KdfBudget, RESTORE_MIN_MAX_MEMORY } from '../../../src/main/restore/stream/kdf-budget.js';
import { scryptDecryptSmall } from '../../../src/main/restore/stream/small-decode.js';
import { haveCmd, tempDir } from '../../helpers/cli.js';

const PW = 'correct horse ü';
const ID = '20261202T040000-4321';
const base: BackupChoices = { format: 4, encrypt: true, cipher: 'aes-256-cbc', hmacAlgorithm: 'SHA512', compress: true, compressFilter: 'gzip', scryptLogN: 10 };
let pool: WorkerPool;
before(() => {
  pool = new WorkerPool({ threads: 1 });
});
after(() => pool.destroy());

async function members(c: Partial<BackupChoices>): Promise<{ header: Buffer; hmac: Buffer }> {
  const s = resolveBackupSettings({ ...base, ...c }, ID, { cpus: 1, ramBytes: 8 * 1024 ** 3 });
  const h = headerMember(s);
  const m = await headerHmacMember(s, Buffer.from(PW, 'utf8'), pool, new AbortController().signal);
  assert.deepEqual([h.name, m.name], ['backup-header', 'backup-header.hmac']);
  return { header: Buffer.concat(h.parts), hmac: Buffer.concat(m.parts) };
}

test('format 4: the .hmac is the header as a scrypt file that the restore decrypts and compares', async () => {
  const { header, hmac } = await members({});
  assert.equal(parseBackupHeader(header).backupId, ID);
  assert.ok(isScryptHeaderHmac(hmac));
  const kdf = new KdfBudget(RESTORE_MIN_MAX_MEMORY);
  const r = await scryptDecryptSmall(pool, `backup-header!${PW}`, hmac, kdf, 'backup-header.hmac');
  assert.ok(r.ok, JSON.stringify(r));
  assert.deepEqual(r.data, header);
  const wrong = await scryptDecryptSmall(pool, `backup-header!${PW}x`, hmac, kdf, 'backup-header.hmac');
  assert.equal(wrong.ok, false);
});

test('format 4: `scrypt dec` of backup-header.hmac gives the header', async (t) => {
  if (!haveCmd('scrypt')) return t.skip('the scrypt tool is not installed: not cross-checked');
  const { header, hmac } = await members({});
  const d = tempDir();
  try {
    const f = join(d.dir, 'backup-header.hmac');
    writeFileSync(f, hmac);
    const r = spawnSync('scrypt', ['dec', '-P', f], { input: `backup-header!${PW}\n` });
    assert.equal(r.status, 0, r.stderr.toString());
    assert.deepEqual(r.stdout, header);
  } finally {
    d.cleanup();
  }
});

test('formats 2 and 3: an HMAC file the restore authenticates with the header\'s digest', async () => {
  for (const [format, hmacAlgorithm] of [[3, 'SHA512'], [3, 'SHA256'], [2, 'SHA1']] as const) {
    const { header, hmac } = await members({ format, hmacAlgorithm, compress: false });
    assert.equal(parseBackupHeader(header).version, format);
    assert.equal(isScryptHeaderHmac(hmac), false);
    assert.equal(guessHmacAlgorithm(header, hmac, PW)?.toLowerCase(), hmacAlgorithm.toLowerCase(), `format ${format} ${hmacAlgorithm}`);
    assert.equal(guessHmacAlgorithm(header, hmac, `${PW}x`), null);
  }
});
