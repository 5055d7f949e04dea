// Test stand-in for the VM side of qubes.Restore: what Qubes' tar2qfile does with a backup
// archive. Every regular tar member becomes a qfile entry (its directories first, once each), pax
// and other headers are skipped (and the zero blocks between the per-member tars), an end header follows; then it waits for dom0's answer and exits
// 1 unless it says success with the CRC-32 of every byte sent (as the real one does).
// Usage: node fake-tar2qfile.js ARCHIVE   (env FAKE_TAR2QFILE_STOP_AFTER=N: send N members, then
// "fail" with exit 1 like a VM whose disk read broke)
import { readFileSync, readSync, writeSync } from 'node:fs';
import { crc32 } from 'node:zlib';
import { qfileHeader, QFILE_S_IFDIR, QFILE_S_IFREG } from '../../src/main/restore/qfile-stream.js';

let crc = 0;
function send(b: Buffer): void {
  crc = crc32(b, crc);
  let off = 0;
  while (off < b.length) {
    try {
      off += writeSync(1, b, off);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EAGAIN') throw e;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 2);
    }
  }
}

function readExactly(n: number): Buffer | null {
  const b = Buffer.alloc(n);
  let off = 0;
  while (off < n) {
    let got: number;
    try {
      got = readSync(0, b, off, n - off, null);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EAGAIN') throw e;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 2);
      continue;
    }
    if (got === 0) return null;
    off += got;
  }
  return b;
}

const cstr = (b: Buffer) => b.toString('utf8', 0, b.indexOf(0) === -1 ? b.length : b.indexOf(0));
const tar = readFileSync(process.argv[2]!);
const stopAfter = process.env['FAKE_TAR2QFILE_STOP_AFTER'] === undefined ? Infinity : Number(process.env['FAKE_TAR2QFILE_STOP_AFTER']);
const dirs = new Set<string>();
let sent = 0;
for (let off = 0; off + 512 <= tar.length; ) {
  const h = tar.subarray(off, off + 512);
  if (h.every((x) => x === 0)) {
    // a Qubes archive is one tar per member, each with its end blocks: skipped, as tar2qfile does
    off += 512;
    continue;
  }
  const size = parseInt(cstr(h.subarray(124, 136)).trim() || '0', 8);
  const type = String.fromCharCode(h[156]!);
  const prefix = cstr(h.subarray(345, 500));
  const name = (prefix ? `${prefix}/` : '') + cstr(h.subarray(0, 100));
  const data = tar.subarray(off + 512, off + 512 + size);
  off += 512 + Math.ceil(size / 512) * 512;
  if (type !== '0' && type !== '\0') continue;
  if (sent === stopAfter) {
    process.stderr.write('tar2qfile: read error on the backup disk\n');
    process.exit(1);
  }
  const parts = name.split('/');
  for (let i = 1; i < parts.length; i++) {
    const d = parts.slice(0, i).join('/');
    if (dirs.has(d)) continue;
    dirs.add(d);
    const n = Buffer.from(`${d}\0`);
    send(Buffer.concat([qfileHeader(n.length, QFILE_S_IFDIR | 0o755, 0), n]));
  }
  const n = Buffer.from(`${name}\0`);
  send(Buffer.concat([qfileHeader(n.length, QFILE_S_IFREG | 0o644, size, 1700000000), n]));
  send(data);
  sent++;
}
send(qfileHeader(0, 0, 0));
const answer = readExactly(16);
if (answer === null) {
  process.stderr.write('tar2qfile: no result from dom0\n');
  process.exit(1);
}
if (answer.readUInt32LE(0) !== 0) {
  process.stderr.write(`tar2qfile: dom0 reported error ${answer.readUInt32LE(0)}\n`);
  process.exit(1);
}
if (Number(answer.readBigUInt64LE(8)) !== crc) {
  process.stderr.write('File transfer failed: checksum mismatch\n');
  process.exit(1);
}
