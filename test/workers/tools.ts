// Test helpers: temp dirs, deterministic sample data, and running the real reference tools.
import { execFileSync, spawnSync } from 'node:child_process';
import { createCipheriv } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

/** A fresh temp dir and a function removing it. */
export function tempDir(): { dir: string; cleanup: () => void } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qvmb-'));
  return { dir, cleanup: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

/** Whether a program is in PATH. */
export function hasTool(name: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${name}`], { stdio: 'ignore' }).status === 0;
}

/** Run a program, feeding `input` on stdin; returns stdout (throws on non-zero exit). */
export function run(cmd: string, args: string[], input?: Uint8Array): Buffer {
  return execFileSync(cmd, args, { input: input ?? Buffer.alloc(0), maxBuffer: 1 << 30, stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, LC_ALL: 'C' } });
}

/** Deterministic bytes: a mix of zero runs, text and pseudo-random data. */
export function sampleData(n: number, seed = 1): Buffer {
  const out = Buffer.alloc(n);
  const key = Buffer.alloc(16, seed);
  const rnd = createCipheriv('aes-128-ctr', key, Buffer.alloc(16)).update(Buffer.alloc(n));
  const text = Buffer.from('The quick brown fox jumps over the lazy dog; qubes backup restore 0123456789\n');
  for (let off = 0, part = 0; off < n; part++) {
    const len = Math.min(n - off, 4096 + ((rnd[off] ?? 0) << 6));
    const kind = part % 3;
    if (kind === 1) for (let i = 0; i < len; i++) out[off + i] = text[(i + part) % text.length] ?? 0;
    else if (kind === 2) rnd.copy(out, off, off, off + len);
    off += len;
  }
  return out;
}

/** A Uint8Array over a fresh SharedArrayBuffer holding `data` at `offset`. */
export function inShared(data: Uint8Array, capacity: number, offset = 0): { sab: SharedArrayBuffer; view: Uint8Array } {
  const sab = new SharedArrayBuffer(capacity);
  const view = new Uint8Array(sab, offset, data.length);
  view.set(data);
  return { sab, view };
}

/** Assert two byte arrays are equal without dumping megabytes on failure. */
export function assertSameBytes(actual: Uint8Array, expected: Uint8Array, what = 'bytes'): void {
  if (Buffer.from(actual.buffer, actual.byteOffset, actual.length).equals(Buffer.from(expected.buffer, expected.byteOffset, expected.length))) return;
  let i = 0;
  while (i < actual.length && i < expected.length && actual[i] === expected[i]) i++;
  throw new Error(`${what}: differ (lengths ${actual.length} vs ${expected.length}, first difference at ${i})`);
}
