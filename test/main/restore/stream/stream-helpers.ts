// Test helpers for the streaming restore: run head + data pass over an archive buffer, build the
// selection from expected.json, locate outer members, and check extracted files against expected.json.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import assert from 'node:assert/strict';
import { OuterTarReader } from '../../../../src/main/tar/outer-tar-reader.js';
import type { WorkerPool } from '../../../../src/main/pipeline/worker-pool.js';
import { readArchiveHead, restoreData, type ArchiveHead, type RestoreDataResult, type RestoreProgressEvent, type RestoreSelection } from '../../../../src/main/restore/stream/index.js';
import { parseQubesXml } from '../../../../src/main/qubes-xml/index.js';
import { sampleData } from '../../../workers/tools.js';
import { innerStream } from './build-archive.js';

/** Directory of the Qubes-made fixture archives. */
export const FIXTURES = process.env['QVMB_FIXTURES'] ?? '/work/shared/fixtures/qubes-made';

export interface ExpectedEntry {
  type: 'file' | 'dir' | 'symlink';
  size?: number;
  sha256?: string;
  allocated_bytes?: number;
  target?: string;
  files?: Record<string, ExpectedEntry>;
}
export interface FixtureExpected {
  fixture: string;
  format_version: 2 | 3 | 4;
  backup_header_text: string;
  backup_id: string | null;
  encrypted: boolean;
  compressed: boolean;
  expected: {
    vms: Record<string, { backup_subdir: string; members: Record<string, ExpectedEntry> }>;
    dom0_home: Record<string, ExpectedEntry>;
  };
}

/** Names of the fixture archives (`<name>.bin`). */
export function fixtureNames(): string[] {
  if (!fs.existsSync(FIXTURES)) return [];
  return fs.readdirSync(FIXTURES).filter((f) => f.endsWith('.bin')).map((f) => f.slice(0, -4)).sort();
}

/** A fixture's archive bytes and its expected.json. */
export function loadFixture(name: string): { bin: Buffer; exp: FixtureExpected } {
  return {
    bin: fs.readFileSync(path.join(FIXTURES, `${name}.bin`)),
    exp: JSON.parse(fs.readFileSync(path.join(FIXTURES, `${name}.expected.json`), 'utf8')) as FixtureExpected,
  };
}

/** A fresh temp dir (the caller removes it). */
export function tempDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'qvmb-'));
}

/** A reader over `bytes` delivered in 64 KiB pieces (like a pipe). */
export function readerOf(bytes: Buffer): OuterTarReader {
  const pieces: Buffer[] = [];
  for (let i = 0; i < bytes.length; i += 65536) pieces.push(bytes.subarray(i, i + 65536));
  return new OuterTarReader(Readable.from(pieces));
}

/** Subdir → VM name, from expected.json (`vm3/` → work, `dom0-home/` → dom0). */
export function selectionOf(exp: FixtureExpected, stagingDir: string): RestoreSelection {
  const sel = new Map<string, { vm: string; stagingDir: string }>();
  for (const [vm, v] of Object.entries(exp.expected.vms)) sel.set(`${v.backup_subdir}/`, { vm, stagingDir });
  sel.set('dom0-home/', { vm: 'dom0', stagingDir });
  return sel;
}

export interface RunOptions {
  passphrase?: string;
  verifyOnly?: boolean;
  selection?: RestoreSelection;
  onProgress?: (e: RestoreProgressEvent) => void;
  onVmDone?: (vm: string, ok: boolean, err?: unknown) => void;
}

/** Head + data pass over `bytes`; extracts into a new temp dir (returned). */
export async function runRestore(pool: WorkerPool, bytes: Buffer, exp: FixtureExpected, o: RunOptions = {}): Promise<{ head: ArchiveHead; result: RestoreDataResult; staging: string }> {
  const reader = readerOf(bytes);
  const head = await readArchiveHead(reader, o.passphrase ?? 'qubes', { pool });
  const staging = tempDir();
  const qubesXml = parseQubesXml(head.qubesXmlBytes);
  const result = await restoreData(
    reader,
    {
      head,
      passphrase: o.passphrase ?? 'qubes',
      pool,
      qubesXml,
      verifyOnly: o.verifyOnly === true,
      slotBytes: 2 * 1024 * 1024,
      ...(o.onProgress ? { onProgress: o.onProgress } : {}),
      ...(o.onVmDone ? { onVmDone: o.onVmDone } : {}),
    },
    o.selection ?? selectionOf(exp, staging),
  );
  return { head, result, staging };
}

/** Offsets of each outer member's data in the archive. */
export async function memberOffsets(bytes: Buffer): Promise<Map<string, { offset: number; size: number }>> {
  const r = new OuterTarReader(Readable.from([bytes]));
  const out = new Map<string, { offset: number; size: number }>();
  for (let e = await r.next(); e !== null; e = await r.next()) {
    out.set(e.untrustedName, { offset: r.bytesRead, size: e.size });
    await e.skip();
  }
  return out;
}

function sha256File(p: string): string {
  return createHash('sha256').update(fs.readFileSync(p)).digest('hex');
}

/** Assert one expected entry at `p`; returns the number of files checked. */
export function checkEntry(p: string, e: ExpectedEntry): number {
  const st = fs.lstatSync(p, { throwIfNoEntry: false });
  assert.ok(st, `${p} missing`);
  if (e.type === 'symlink') {
    assert.ok(st.isSymbolicLink(), `${p} is not a symlink`);
    assert.equal(fs.readlinkSync(p), e.target, `${p} link target`);
    return 1;
  }
  if (e.type === 'dir') {
    assert.ok(st.isDirectory(), `${p} is not a directory`);
    let n = 0;
    for (const [name, sub] of Object.entries(e.files ?? {})) n += checkEntry(path.join(p, name), sub);
    return n;
  }
  assert.ok(st.isFile(), `${p} is not a regular file`);
  assert.equal(st.size, e.size, `${p} size`);
  assert.equal(sha256File(p), e.sha256, `${p} sha256`);
  if (e.size !== undefined && e.allocated_bytes !== undefined && e.size >= 1024 * 1024 && e.allocated_bytes < e.size / 4) {
    assert.ok(st.blocks * 512 < e.size / 2, `${p} lost its holes (${st.blocks * 512} bytes allocated of ${e.size})`);
  }
  return 1;
}

/** Check every expected VM file and the dom0 home below `staging`; returns files checked. */
export function checkAll(staging: string, exp: FixtureExpected, skipSubdirs: ReadonlySet<string> = new Set()): number {
  let n = 0;
  for (const v of Object.values(exp.expected.vms)) {
    if (skipSubdirs.has(`${v.backup_subdir}/`)) continue;
    for (const [name, e] of Object.entries(v.members)) n += checkEntry(path.join(staging, v.backup_subdir, name), e);
  }
  if (!skipSubdirs.has('dom0-home/')) {
    for (const [name, e] of Object.entries(exp.expected.dom0_home)) n += checkEntry(path.join(staging, 'dom0-home', name), e);
  }
  return n;
}

/** All regular files and symlinks below `dir`. */
export function listFiles(dir: string): string[] {
  const out: string[] = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true, recursive: true })) if (!e.isDirectory()) out.push(path.join(e.parentPath, e.name));
  return out;
}

/** A sparse `private.img` in `dir`: three runs of `runBytes` VM-like bytes (seeded) at `offsets`,
 *  holes between them, `size` bytes apparent; with its inner archive (`vm3/private.img`). */
export function sparseImage(dir: string, o: { runBytes: number; seed: number; offsets: number[]; size: number }): { image: string; tar: Buffer } {
  fs.mkdirSync(dir, { recursive: true });
  const image = path.join(dir, 'private.img');
  const fd = fs.openSync(image, 'w');
  const run = sampleData(o.runBytes, o.seed);
  for (const at of o.offsets) fs.writeSync(fd, run, 0, run.length, at);
  fs.ftruncateSync(fd, o.size);
  fs.closeSync(fd);
  return { image, tar: innerStream(dir, 'vm3/', false) };
}

/** `bin` with the scrypt header of its first data chunk (or of member `name`) asking for `logN`,
 *  its checksum recomputed: the header parses, the chunk no longer authenticates. */
export async function forgeFirstChunkLogN(bin: Buffer, logN: number, name?: string): Promise<Buffer> {
  const members = [...(await memberOffsets(bin)).entries()];
  const hit = members.find(([n]) => (name === undefined ? n.endsWith('.000.enc') && !n.startsWith('qubes.xml') : n === name));
  if (hit === undefined) throw new Error('no data chunk in the archive');
  const at = hit[1].offset;
  const out = Buffer.from(bin);
  out[at + 7] = logN;
  createHash('sha256').update(out.subarray(at, at + 48)).digest().copy(out, at + 48, 0, 16);
  return out;
}
