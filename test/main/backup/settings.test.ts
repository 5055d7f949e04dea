// resolveBackupSettings on its own: the defaults, every refused option or combination with its
// error code, the memory plan at its edges (default budget, RAM cap, below the minimum), and the
// result frozen.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { resolveBackupSettings, settingsReport, type BackupChoices, type BackupHost } from '../../../src/main/backup/settings.js';
import { parseBackupHeader } from '../../../src/main/format/backup-header.js';
import { CHUNK_SIZE_BYTES, V2_VOLUME_BYTES } from '../../../src/main/format/limits.js';
import { isQvmBackupError } from '../../../src/main/errors.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const ID = '20261202T040000-1234';
const host: BackupHost = { cpus: 2, ramBytes: 24 * GiB, zstdInProcess: true };
const base: BackupChoices = { format: 4, encrypt: true, cipher: 'aes-256-cbc', hmacAlgorithm: 'SHA512', compress: true, compressFilter: 'gzip' };
const resolve = (c: Partial<BackupChoices>, h: BackupHost = host) => resolveBackupSettings({ ...base, ...c }, ID, h);

function refused(c: Partial<BackupChoices>, code: string, message: RegExp): void {
  assert.throws(() => resolve(c), (e: unknown) => isQvmBackupError(e) && e.code === code && message.test(e.message), `${JSON.stringify(c)} → ${code}`);
}

test('defaults: threads = CPUs, Qubes chunk sizes, logN 19, 1 GiB + one derivation per thread', () => {
  const s = resolve({});
  assert.equal(s.threads, 2);
  assert.equal(s.chunkSize, CHUNK_SIZE_BYTES);
  assert.equal(s.scryptLogN, 19);
  assert.equal(s.maxMemory, GiB + 2 * 512 * MiB);
  // one derivation per thread is planned: each worker keeps its derivation memory between chunks
  assert.deepEqual(s.stream.scrypt, { logN: 19, r: 8, p: 1, keepKdfMemory: true });
  assert.deepEqual(s.compression, { kind: 'blocks', filter: 'gzip', codec: 'gzip', level: 6 });
  assert.equal(s.memory.kdfConcurrency, 2);
  assert.equal(resolve({ threads: 0 }).threads, 2, 'threads 0 is the default');
  assert.equal(resolve({ format: 2, encrypt: false }).chunkSize, V2_VOLUME_BYTES);
  // formats 2/3 derive no keys: 1 GiB
  assert.equal(resolve({ format: 3 }).maxMemory, GiB);
  assert.equal(resolve({ maxMemory: 3 * GiB }).maxMemory, 3 * GiB);
});

test('the default --max-memory is at most a quarter of the RAM', () => {
  const s = resolve({ threads: 8 }, { ...host, ramBytes: 4 * GiB });
  assert.equal(s.maxMemory, GiB);
  assert.equal(s.memory.kdfConcurrency, 1);
  // eight workers keeping 512 MiB each would exceed it: each derivation's memory is freed after it
  assert.equal(s.stream.scrypt.keepKdfMemory, false);
});

test('the header and the stream settings follow the format', () => {
  const v4 = resolve({ compressFilter: 'zstd' });
  assert.deepEqual(parseBackupHeader(Buffer.from(v4.headerBytes)), v4.header);
  assert.deepEqual(v4.header, { version: 4, encrypted: true, compressed: true, compressionFilter: 'zstd', hmacAlgorithm: 'scrypt', backupId: ID });
  assert.equal(v4.stream.backupId, ID);
  assert.equal(v4.stream.encrypted, true);
  const v3 = resolve({ format: 3, encrypt: false, compress: false, hmacAlgorithm: 'SHA256' });
  assert.deepEqual(v3.header, { version: 3, hmacAlgorithm: 'SHA256', cryptoAlgorithm: 'aes-256-cbc', encrypted: false, compressed: false });
  assert.equal(v3.stream.blocks, null);
  assert.equal(v3.stream.encrypted, false);
  assert.equal(resolve({ format: 2, compress: false }).header.version, 2);
  assert.equal('passphrase' in v4.stream, false, 'the passphrase is not part of the settings');
});

test('refused: each option or combination, with its code, before anything runs', () => {
  refused({ format: 4, encrypt: false }, 'ERR_USAGE', /--no-encrypt is not possible with format 4/);
  refused({ format: 2, encrypt: true, compress: true }, 'ERR_USAGE', /format 2 cannot be both compressed and encrypted/);
  refused({ chunkSize: 1000 * 4096 + 1 }, 'ERR_USAGE', /--chunk-size .*a multiple of 4096/);
  refused({ chunkSize: 32 * 1024 }, 'ERR_USAGE', /--chunk-size/);
  refused({ chunkSize: CHUNK_SIZE_BYTES + 4096 }, 'ERR_USAGE', /--chunk-size/);
  refused({ format: 2, encrypt: false, chunkSize: 4096 * 101 }, 'ERR_USAGE', /multiple of 10240/);
  refused({ threads: 1.5 }, 'ERR_USAGE', /--threads/);
  refused({ compressFilter: 'rm -rf' }, 'ERR_USAGE', /not allowed/);
  refused({ compress: false, compressLevel: 3 }, 'ERR_USAGE', /no effect with --no-compress/);
  refused({ compressLevel: 12 }, 'ERR_USAGE', /gzip takes 1 to 9/);
  refused({ format: 2, encrypt: false, compressFilter: 'zstd' }, 'ERR_USAGE', /gzip only/);
  refused({ format: 3, hmacAlgorithm: 'NOPE256' }, 'ERR_UNSUPPORTED', /HMAC digest 'NOPE256'/);
  refused({ format: 3, cipher: 'aes-256-nope' }, 'ERR_UNSUPPORTED', /cipher/);
  // format 4 uses neither: they are not checked there (Qubes ignores them too)
  assert.equal(resolve({ hmacAlgorithm: 'NOPE256', cipher: 'x' }).format, 4);
  // not encrypting: the cipher is not used
  assert.equal(resolve({ format: 3, encrypt: false, cipher: 'x' }).format, 3);
});

test('memory plan edges: below the minimum a warning and 2 chunks + 1 derivation; slot size from the chunk size', () => {
  const small = resolve({ maxMemory: 64 * MiB });
  assert.equal(small.memory.chunkSlots, 2);
  assert.equal(small.memory.kdfConcurrency, 1);
  assert.ok(small.memory.plannedBytes > 64 * MiB);
  assert.match(small.memory.warnings[0] ?? '', /below the minimum/);
  // exactly the minimum of format 3 (blocks + 2 chunks): no warning
  const min3 = resolve({ format: 3, threads: 1, maxMemory: 3 * 2 * 4 * MiB + 2 * 100 * MiB });
  assert.deepEqual(min3.memory.warnings, []);
  assert.equal(min3.memory.chunkSlots, 2);
  assert.equal(resolve({ format: 3, threads: 1, maxMemory: 3 * 2 * 4 * MiB + 2 * 100 * MiB - 1 }).memory.warnings.length, 1);
  // the slot holds the chunk plus the scrypt header and MAC, a page and deflate's worst case
  const s = resolve({ chunkSize: MiB });
  assert.ok(s.memory.chunkSlotBytes >= MiB + 128 + Math.ceil(MiB / 1000) && s.memory.chunkSlotBytes < MiB + 16 * 1024, String(s.memory.chunkSlotBytes));
});

test('the result is frozen, nested objects included', () => {
  const s = resolve({});
  assert.ok(Object.isFrozen(s) && Object.isFrozen(s.stream) && Object.isFrozen(s.stream.scrypt) && Object.isFrozen(s.memory) && Object.isFrozen(s.memory.warnings) && Object.isFrozen(s.header));
  assert.throws(() => {
    (s.stream as { chunkSize: number }).chunkSize = 1;
  }, TypeError);
  assert.equal(settingsReport(s)['kdf'], 'scrypt N=2^19 r=8 p=1');
  assert.equal(settingsReport(resolve({ format: 3, encrypt: false }))['encryption'], 'none');
});
