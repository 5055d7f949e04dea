// The backup data path for one file in format 2: GNU tar in multi-volume mode writes volumes of
// --tape-length into a FIFO; each volume becomes one chunk, compressed (gzip) OR encrypted
// (`openssl enc` framing with its own salt) on its own, then HMACed — all in workers.
import type { Readable } from 'node:stream';
import type { Slot } from '../pipeline/slot-pool.js';
import { QvmBackupError } from '../errors.js';
import { chunkName, hmacName } from '../format/archive-names.js';
import { formatHmacFile } from '../format/hmac-file.js';
import type { StreamResources, StreamSettings } from './chunk-pipeline.js';
import type { WriteJobResult } from './ordered-writer.js';

/** Read one whole volume into a slot; fails if it does not fit. */
async function readVolume(vol: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, slot: Slot, name: string, onBytes: (n: number) => void): Promise<number> {
  let fill = 0;
  for await (const c of vol) {
    if (fill + c.length > slot.bytes.length) throw new QvmBackupError('ERR_INTERNAL', `tar volume larger than expected for ${name}`, { chunk: name });
    slot.bytes.set(c, fill);
    fill += c.length;
    onBytes(c.length);
  }
  return fill;
}

/** Stream the volumes of one file into the outer archive; resolves when the last chunk was queued. */
export async function streamFileV2(base: string, volumes: AsyncIterable<Readable | Uint8Array>, s: StreamSettings, res: StreamResources, onBytes: (n: number) => void): Promise<number> {
  let index = 0;
  const hmac = { algorithm: s.hmacAlgorithm, key: s.passphrase };
  for await (const vol of volumes) {
    const name = chunkName(base, index, 2);
    const input = await res.chunks.acquire(res.signal);
    let len: number;
    try {
      len = await readVolume(vol instanceof Uint8Array ? [vol] : vol, input, name, onBytes);
    } catch (e) {
      res.chunks.release(input);
      throw e;
    }
    const transform = s.encrypted ? 'encrypt' : s.blocks !== null ? 'gzip' : 'none';
    const job: Promise<WriteJobResult> = (async () => {
      let out: Slot = input;
      let total = len;
      let hex: string | undefined;
      let inputHeld = true;
      const outPool = res.chunksOut ?? res.chunks;
      try {
        if (transform !== 'none') {
          out = await outPool.acquire(res.signal);
          if (transform === 'encrypt') {
            const r = await res.pool.run('opensslSeal', { cipher: s.cipher, passphrase: s.passphrase.toString('utf8'), input: input.slice(0, len), output: out.slice(0, out.bytes.length), hmac }, { signal: res.signal, context: { chunk: name } });
            if (!r.ok) throw new QvmBackupError('ERR_INTERNAL', `${name}: ${r.message}`, { chunk: name });
            total = r.length;
            hex = r.hmacHex;
          } else {
            const r = await res.pool.run('compressBlock', { level: s.blocks?.level ?? 6, input: input.slice(0, len), output: out.slice(0, out.bytes.length) }, { signal: res.signal, context: { chunk: name } });
            if (!r.ok) throw new QvmBackupError('ERR_INTERNAL', `${name}: ${r.message}`, { chunk: name });
            total = r.length;
          }
          res.chunks.release(input);
          inputHeld = false;
        }
        if (hex === undefined) {
          const h = await res.pool.run('hmacSlice', { ...hmac, input: out.slice(0, total) }, { signal: res.signal, context: { chunk: name } });
          if (!h.ok) throw new QvmBackupError('ERR_INTERNAL', `${name}: ${h.message}`, { chunk: name });
          hex = h.hex;
        }
      } catch (e) {
        if (inputHeld) res.chunks.release(input);
        if (out !== input) outPool.release(out);
        throw e;
      }
      const o = out;
      return { members: [{ name, parts: [o.bytes.subarray(0, total)] }, { name: hmacName(name), parts: [formatHmacFile(hex)] }], release: () => (o === input ? res.chunks : outPool).release(o) };
    })();
    res.writer.enqueue(job);
    index++;
  }
  return index;
}
