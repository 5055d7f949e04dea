// Ground truth: the codecs decode archives written by Qubes OS code (shared/fixtures/qubes-made):
// header MAC, per-chunk HMAC or scrypt, openssl-enc chains, gzip/bzip2; inner images hash as recorded.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipInto } from '../../src/workers/compress.js';
import { runFilterSync } from '../../src/main/io/filter-program.js';
import { computeHmacHex, hexEqual } from '../../src/workers/hmac.js';
import { decryptPiece, evpBytesToKey } from '../../src/workers/openssl-enc.js';
import { scryptDecryptInto } from '../../src/workers/scrypt-file.js';
import { run, tempDir } from './tools.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const FIXTURES = [path.resolve(HERE, '../../../../shared/fixtures/qubes-made'), '/work/shared/fixtures/qubes-made'].find((d) => fs.existsSync(d)) ?? '';
const PW = Buffer.from('qubes');

interface Expected {
  backup_id?: string;
  compression_filter?: string;
  compressed: boolean;
  encrypted: boolean;
  format_version: number;
  expected: { vms: Record<string, { backup_subdir: string; members: Record<string, { sha256?: string; type: string }> }> };
}

function header(dir: string): Record<string, string> {
  const text = fs.readFileSync(path.join(dir, 'backup-header'), 'utf8');
  return Object.fromEntries(text.trim().split('\n').map((l) => l.split('=', 2) as [string, string]));
}

function gunzipAll(data: Uint8Array): Uint8Array {
  const out = new Uint8Array(64 * 1024 * 1024);
  const n = gunzipInto(data, out);
  assert.equal(typeof n, 'number');
  return out.subarray(0, n as number);
}

/** Inner tar bytes of one archived file, decoded chunk by chunk as the format version says. */
function innerTar(dir: string, rel: string, exp: Expected, hdr: Record<string, string>): Uint8Array {
  const chunks: Uint8Array[] = [];
  for (let i = 0; ; i++) {
    const name = `${rel}.${String(i).padStart(3, '0')}`;
    const file = path.join(dir, exp.format_version === 4 ? `${name}.enc` : name);
    if (!fs.existsSync(file)) break;
    const data = fs.readFileSync(file);
    if (exp.format_version === 4) {
      const out = new Uint8Array(data.length);
      const r = scryptDecryptInto(Buffer.from(`${exp.backup_id}!${name}!qubes`), data, out, { maxKdfBytes: 1 << 30 });
      assert.ok(r.ok, `${name}: ${r.ok ? '' : r.message}`);
      chunks.push(out.subarray(0, r.length));
    } else {
      const hmacText = fs.readFileSync(`${file}.hmac`, 'utf8');
      assert.ok(hexEqual(computeHmacHex(hdr['hmac-algorithm'] ?? 'SHA512', PW, data), hmacText.split('=')[1]?.trim() ?? ''), `${name} HMAC`);
      chunks.push(exp.format_version === 2 && exp.compressed ? gunzipAll(data) : data);
    }
  }
  assert.ok(chunks.length > 0, `no chunks for ${rel}`);
  let stream = Buffer.concat(chunks);
  if (exp.format_version === 3 && exp.encrypted) {
    const { key, iv } = evpBytesToKey(PW, stream.subarray(8, 16), 32, 16);
    const body = stream.subarray(16);
    const r = decryptPiece(hdr['crypto-algorithm'] ?? 'aes-256-cbc', key, iv, body, body, true);
    assert.ok(r.ok, r.ok ? '' : r.message);
    stream = body.subarray(0, r.length);
  }
  if (exp.format_version >= 3 && exp.compressed) {
    const filter = exp.compression_filter ?? 'gzip';
    return filter === 'gzip' ? gunzipAll(stream) : runFilterSync(filter, 'decompress', stream);
  }
  return stream;
}

for (const fixture of ['v4-gzip', 'v4-bzip2', 'v4-nocomp', 'v3-aes-gzip', 'v3-aes-nocomp', 'v3-plain-gzip', 'v2-gzip-sha1', 'v2-plain-sha512']) {
  test(`Qubes-made ${fixture}: header MAC and every private.img decode to the recorded sha256`, (t) => {
    const bin = path.join(FIXTURES, `${fixture}.bin`);
    if (!fs.existsSync(bin)) return t.skip('fixtures not found');
    const exp = JSON.parse(fs.readFileSync(path.join(FIXTURES, `${fixture}.expected.json`), 'utf8')) as Expected;
    const { dir, cleanup } = tempDir();
    try {
      run('tar', ['-xif', bin, '-C', dir]);
      const hdr = header(dir);
      const headerBytes = fs.readFileSync(path.join(dir, 'backup-header'));
      const mac = fs.readFileSync(path.join(dir, 'backup-header.hmac'));
      if (exp.format_version === 4) {
        const out = new Uint8Array(mac.length);
        const r = scryptDecryptInto(Buffer.from('backup-header!qubes'), mac, out, { maxKdfBytes: 1 << 30 });
        assert.ok(r.ok && Buffer.from(out.subarray(0, r.length)).equals(headerBytes), 'v4 header MAC');
        assert.equal(scryptDecryptInto(Buffer.from('backup-header!wrong'), mac, out, { maxKdfBytes: 1 << 30 }).ok, false);
      } else {
        const algo = hdr['hmac-algorithm'] ?? 'SHA512';
        assert.ok(hexEqual(computeHmacHex(algo, PW, headerBytes), mac.toString().split('=')[1]?.trim() ?? ''), 'header HMAC');
      }
      let checked = 0;
      for (const vm of Object.values(exp.expected.vms)) {
        const img = vm.members['private.img'];
        const first = path.join(dir, `${vm.backup_subdir}/private.img.000${exp.format_version === 4 ? '.enc' : ''}`);
        if (!img?.sha256 || !fs.existsSync(first)) continue; // whole-directory archives keep it inside "<vm>/."
        const inner = innerTar(dir, `${vm.backup_subdir}/private.img`, exp, hdr);
        const content = run('tar', ['-xOf', '-', `${vm.backup_subdir}/private.img`], inner);
        assert.equal(createHash('sha256').update(content).digest('hex'), img.sha256, `${vm.backup_subdir}/private.img`);
        checked++;
      }
      assert.ok(checked >= 2, `only ${checked} images checked`);
    } finally {
      cleanup();
    }
  });
}
