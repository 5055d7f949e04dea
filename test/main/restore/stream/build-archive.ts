// Test helper: synthetic outer archives that reuse a Qubes-made fixture's authenticated head
// (header, .hmac, qubes.xml) and append hand-made data chunks: multi-chunk files in each format,
// and broken chunk sequences. Inner streams come from real GNU tar, gzip and openssl.
import { execFileSync } from 'node:child_process';
import { createHash, createHmac, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { OuterTarReader } from '../../../../src/main/tar/outer-tar-reader.js';
import { outerMemberHead, outerMemberTail } from '../../../../src/main/tar/outer-tar-writer.js';
import { scryptEncryptInto } from '../../../../src/workers/scrypt-file.js';

/** One outer member: pax + ustar header, data, padding (like `tar -cO --posix`). */
export function outerMember(name: string, data: Uint8Array): Buffer {
  return Buffer.concat([outerMemberHead(name, data.length, { mtimeSec: 1_700_000_000 }), data, outerMemberTail(data.length)]);
}

/** The head members of a fixture (everything before the first VM chunk), re-encoded. */
export async function headOf(bin: Buffer): Promise<Buffer> {
  const r = new OuterTarReader(Readable.from([bin]));
  const out: Buffer[] = [];
  for (let e = await r.next(); e !== null; e = await r.next()) {
    if (!/^(backup-header(\.hmac)?|qubes\.xml\.000(\.enc|\.hmac)?)$/.test(e.untrustedName)) break;
    const data = Buffer.alloc(e.size);
    await e.readInto(data);
    out.push(outerMember(e.untrustedName, data));
  }
  return Buffer.concat(out);
}

/** A directory with `private.img`: `mib` MiB of random data (incompressible, so gzip keeps it large). */
export function makeImage(dir: string, mib: number): { file: string; sha256: string } {
  const file = path.join(dir, 'private.img');
  const data = randomBytes(mib * 1024 * 1024);
  fs.writeFileSync(file, data);
  return { file, sha256: createHash('sha256').update(data).digest('hex') };
}

/** GNU tar stream of `<dir>/private.img` named `<subdir>private.img`, optionally gzipped. */
export function innerStream(dir: string, subdir: string, gzip: boolean): Buffer {
  const tar = execFileSync('tar', ['-Pc', '--sparse', '-C', dir, `--xform=s:^private.img:${subdir}private.img:`, '-f', '-', 'private.img'], { maxBuffer: 1 << 30 });
  return gzip ? execFileSync('gzip', ['-c'], { input: tar, maxBuffer: 1 << 30 }) : tar;
}

/** `openssl enc -e -aes-256-cbc -md md5` of a whole stream (the v3 writer). */
export function opensslEncrypt(data: Buffer, pass: string): Buffer {
  return execFileSync('openssl', ['enc', '-e', '-aes-256-cbc', '-md', 'md5', '-pass', `pass:${pass}`], { input: data, maxBuffer: 1 << 30 });
}

/** Cut into pieces of `size` bytes (the last may be shorter). */
export function split(data: Buffer, size: number): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < data.length; i += size) out.push(data.subarray(i, i + size));
  return out;
}

/** `.hmac` text of a chunk. */
export function hmacFile(algorithm: string, pass: string, data: Uint8Array): Buffer {
  return Buffer.from(`${algorithm}(stdin)= ${createHmac(algorithm, pass).update(data).digest('hex')}\n`);
}

/** v2/v3 members: each chunk `<base>.NNN` followed by its `.hmac`. */
export function hmacChunks(base: string, chunks: Buffer[], algorithm: string, pass: string): Buffer[] {
  return chunks.flatMap((c, i) => {
    const name = `${base}.${String(i).padStart(3, '0')}`;
    return [outerMember(name, c), outerMember(`${name}.hmac`, hmacFile(algorithm, pass, c))];
  });
}

/** v4 members: each chunk scrypt-encrypted (logN 10) as `<base>.NNN.enc`, bound to its name. */
export function scryptChunks(base: string, chunks: Buffer[], backupId: string, pass: string, names?: string[]): Buffer[] {
  return chunks.map((c, i) => {
    const name = names?.[i] ?? `${base}.${String(i).padStart(3, '0')}`;
    const out = new Uint8Array(c.length + 128);
    const n = scryptEncryptInto(Buffer.from(`${backupId}!${name}!${pass}`), { logN: 10, r: 8, p: 1 }, c, out);
    return outerMember(`${name}.enc`, out.subarray(0, n));
  });
}

/** GNU multi-volume tar volumes of `<dir>/private.img` (real tar, tape length in KiB). */
export function multiVolumes(dir: string, subdir: string, tapeKiB: number, work: string): Buffer[] {
  const script = path.join(work, 'next-volume.sh');
  fs.writeFileSync(script, `#!/bin/sh\necho "${work}/vol.$TAR_VOLUME" >&$TAR_FD\n`, { mode: 0o755 });
  execFileSync('tar', ['-Pc', '--sparse', '-M', `--tape-length=${tapeKiB}`, '-F', script, '-f', path.join(work, 'vol.1'), '-C', dir, `--xform=s:^private.img:${subdir}private.img:`, 'private.img'], { stdio: 'ignore' });
  const vols: Buffer[] = [];
  for (let i = 1; fs.existsSync(path.join(work, `vol.${i}`)); i++) vols.push(fs.readFileSync(path.join(work, `vol.${i}`)));
  return vols;
}

/** A v2 head (R2 GA header, SHA512) around the plain qubes.xml volume of a v2 fixture, encrypted if asked. */
export async function v2Head(plainV2Fixture: Buffer, encrypted: boolean, pass: string): Promise<Buffer> {
  const r = new OuterTarReader(Readable.from([plainV2Fixture]));
  let xml: Buffer | undefined;
  for (let e = await r.next(); e !== null && xml === undefined; e = await r.next()) {
    if (e.untrustedName !== 'qubes.xml.000') {
      await e.skip();
      continue;
    }
    xml = Buffer.alloc(e.size);
    await e.readInto(xml);
  }
  if (xml === undefined) throw new Error('no qubes.xml.000 in the fixture');
  const header = Buffer.from(`hmac-algorithm=SHA512\ncrypto-algorithm=aes-256-cbc\nencrypted=${encrypted ? 'True' : 'False'}\ncompressed=False\n`);
  const chunk = encrypted ? opensslEncrypt(xml, pass) : xml;
  return Buffer.concat([
    outerMember('backup-header', header),
    outerMember('backup-header.hmac', hmacFile('sha512', pass, header)),
    ...hmacChunks('qubes.xml', [chunk], 'sha512', pass),
  ]);
}

/** Re-encode an archive keeping only the members `keep` accepts. */
export async function rewriteArchive(bin: Buffer, keep: (name: string) => boolean): Promise<Buffer> {
  const r = new OuterTarReader(Readable.from([bin]));
  const out: Buffer[] = [];
  for (let e = await r.next(); e !== null; e = await r.next()) {
    if (!keep(e.untrustedName)) {
      await e.skip();
      continue;
    }
    const data = Buffer.alloc(e.size);
    await e.readInto(data);
    out.push(outerMember(e.untrustedName, data));
  }
  return Buffer.concat(out);
}
