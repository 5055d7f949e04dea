// The archive's first two members: `backup-header` and `backup-header.hmac`, which authenticates it.
// Formats 2/3: an HMAC of the header with the passphrase as key, as `openssl dgst` prints it.
// Format 4: the header as a scrypt file of its own under the passphrase `backup-header!<passphrase>`
// (FORMAT.md §3.2), made in a worker (one key derivation: ~2.7 s and 512 MiB at logN 19) in a small
// buffer of its own — the header is a few hundred bytes, the chunk slots are not involved.
import { fail } from '../errors.js';
import { formatHmacFile } from '../format/hmac-file.js';
import { computeHmacHex } from '../../workers/hmac.js';
import type { WorkerPool } from '../pipeline/worker-pool.js';
import type { Semaphore } from '../pipeline/async-queue.js';
import type { OrderedWriter, OuterMember } from './ordered-writer.js';
import type { WriteFormat } from './backup-plan.js';

/** What the header stage needs of the run's settings (BackupSettings has it). */
export interface HeaderStageSettings {
  readonly format: WriteFormat;
  readonly headerBytes: Uint8Array;
  readonly stream: { readonly hmacAlgorithm: string; readonly scrypt: { readonly logN: number; readonly r: number; readonly p: number; readonly keepKdfMemory?: boolean } };
}

/** The scrypt file format's fixed overhead: 96-byte header before the data, 32-byte MAC after it. */
const SCRYPT_FILE_OVERHEAD = 128;

/** Queue both members on `writer`, first in the archive: the header at once, its .hmac as a job
 *  that ends once its key is derived (a failure there fails the writer, and so the run). Nothing
 *  waits for it: the first files' sources and compression start during the derivation, which
 *  holds one of the run's derivation permits (`kdf`: the memory plan's bound) like a chunk's.
 *  Returns the .hmac's promise (for the progress; its failure is the writer's to report). */
export function writeHeader(s: HeaderStageSettings, passphrase: Buffer, pool: WorkerPool, writer: OrderedWriter, signal: AbortSignal, kdf: Semaphore): Promise<unknown> {
  writer.enqueue(Promise.resolve({ members: [headerMember(s)], release() {} }));
  const hmac = (async () => {
    if (s.format !== 4) return headerHmacMember(s, passphrase, pool, signal);
    await kdf.acquire(signal);
    try {
      return await headerHmacMember(s, passphrase, pool, signal);
    } finally {
      kdf.release();
    }
  })();
  writer.enqueue(hmac.then((m) => ({ members: [m], release() {} })));
  return hmac;
}

/** The `backup-header` member. */
export function headerMember(s: HeaderStageSettings): OuterMember {
  return { name: 'backup-header', parts: [s.headerBytes] };
}

/** The `backup-header.hmac` member that authenticates it. */
export async function headerHmacMember(s: HeaderStageSettings, passphrase: Buffer, pool: WorkerPool, signal: AbortSignal): Promise<OuterMember> {
  if (s.format !== 4) {
    const hex = computeHmacHex(s.stream.hmacAlgorithm, passphrase, s.headerBytes);
    return { name: 'backup-header.hmac', parts: [formatHmacFile(hex)] };
  }
  const n = s.headerBytes.length;
  // input at 0, output after it: separate regions, so the worker never encrypts in place
  const sab = new SharedArrayBuffer(n + n + SCRYPT_FILE_OVERHEAD);
  new Uint8Array(sab, 0, n).set(s.headerBytes);
  const { logN, r, p, keepKdfMemory } = s.stream.scrypt;
  const res = await pool.run('scryptEncrypt', { passphrase: `backup-header!${passphrase.toString('utf8')}`, logN, r, p, ...(keepKdfMemory ? { keepKdfMemory } : {}), input: { sab, offset: 0, length: n }, output: { sab, offset: n, length: n + SCRYPT_FILE_OVERHEAD } }, { signal });
  if (!res.ok) fail('ERR_INTERNAL', `backup-header.hmac: ${res.message}`);
  return { name: 'backup-header.hmac', parts: [Buffer.from(new Uint8Array(sab, n, res.length))] };
}
