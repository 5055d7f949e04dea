// The first chunk's key derived while the plan is confirmed (first-chunk-key.ts), on a Qubes-made
// format 4 archive: used once by the data pass (never derived twice), not derived for a member the
// plan leaves out or after release(), zeroed when never taken, and a broken or hostile first member
// reported by the data pass as without it.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { after, before, test } from 'node:test';
import { WorkerPool } from '../../../../src/main/pipeline/worker-pool.js';
import { parseQubesXml } from '../../../../src/main/qubes-xml/index.js';
import { FirstChunkKey, readArchiveHead, restoreData, RESTORE_MIN_MAX_MEMORY } from '../../../../src/main/restore/stream/index.js';
import { waitFor } from '../../../helpers/processes.js';
import { checkAll, fixtureNames, loadFixture, memberOffsets, readerOf, selectionOf, tempDir } from './stream-helpers.js';

const FIXTURE = 'v4-gzip';
const FIRST = 'vm9/'; // the subdir of the archive's first data member (vm9/root.img.000.enc)
const have = fixtureNames().includes(FIXTURE);
let pool: WorkerPool;

before(() => {
  pool = new WorkerPool({ threads: 2 });
});
after(async () => {
  await pool.destroy();
});

/** The pool, with its derivations counted and the keys they returned kept (to see them zeroed). */
function counted(): { pool: WorkerPool; derived: () => number; keys: Uint8Array[] } {
  let n = 0;
  const keys: Uint8Array[] = [];
  const proxy = new Proxy(pool, {
    get(target, prop) {
      if (prop === 'run') {
        return async (task: string, ...rest: unknown[]) => {
          if (task === 'scryptDerive') n++;
          const r = await (target.run as (t: string, ...a: unknown[]) => Promise<{ ok: boolean; key?: Uint8Array }>)(task, ...rest);
          if (task === 'scryptDerive' && r.ok && r.key) keys.push(r.key);
          return r;
        };
      }
      const v = Reflect.get(target, prop, target) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
  return { pool: proxy, derived: () => n, keys };
}

/** `ahead`: wait for the derivation ahead before the data pass, release it at once, or neither. */
async function restoreWithKey(bin: Buffer, select: (sel: Map<string, { vm: string; stagingDir: string }>) => void, ahead: 'wait' | 'release' | 'none' = 'wait') {
  const { exp } = loadFixture(FIXTURE);
  const reader = readerOf(bin);
  const head = await readArchiveHead(reader, 'qubes', { pool });
  const c = counted();
  const staging = tempDir();
  const sel = new Map(selectionOf(exp, staging));
  select(sel);
  const first = new FirstChunkKey(reader, { header: head.header, passphrase: 'qubes', pool: c.pool, maxMemory: RESTORE_MIN_MAX_MEMORY, selected: (subdir) => sel.has(subdir) });
  if (ahead === 'release') first.release();
  if (ahead === 'wait') await waitFor('the first chunk key derived before the data pass', () => c.derived() === 1, 10_000);
  const beforePass = c.derived();
  const result = await restoreData(first, { head, passphrase: 'qubes', pool: c.pool, qubesXml: parseQubesXml(head.qubesXmlBytes), slotBytes: 2 * 1024 * 1024, firstChunk: first }, sel);
  return { result, staging, exp, beforePass, derived: c.derived(), keys: c.keys };
}

/** Data chunk members of the archive (each derives one key). */
async function dataChunks(bin: Buffer, subdirs: (s: string) => boolean): Promise<number> {
  return [...(await memberOffsets(bin)).keys()].filter((n) => n.endsWith('.enc') && n !== 'qubes.xml.000.enc' && subdirs(n.slice(0, n.indexOf('/') + 1))).length;
}

test('the first chunk\'s key is derived before the data pass and used by it: one derivation per chunk, every key zeroed, the restore exact', async (t) => {
  if (!have) return t.skip('fixture missing');
  const { bin } = loadFixture(FIXTURE);
  const r = await restoreWithKey(bin, () => {});
  try {
    assert.equal(r.result.ok, true, r.result.archiveError?.message);
    assert.equal(r.beforePass, 1);
    assert.equal(r.derived, await dataChunks(bin, () => true), 'a chunk key derived twice (or one not derived ahead)');
    checkAll(r.staging, r.exp);
    assert.ok(r.keys.length > 0 && r.keys.every((k) => k.every((b) => b === 0)), 'a derived key was left in memory');
  } finally {
    fs.rmSync(r.staging, { recursive: true, force: true });
  }
});

test('a first member the plan leaves out: no key derived for it, the rest restores as before', async (t) => {
  if (!have) return t.skip('fixture missing');
  const { bin } = loadFixture(FIXTURE);
  const r = await restoreWithKey(bin, (sel) => sel.delete(FIRST), 'none');
  try {
    assert.equal(r.result.ok, true, r.result.archiveError?.message);
    assert.equal(r.result.vms.has(FIRST), false);
    assert.equal(r.derived, await dataChunks(bin, (s) => s !== FIRST), 'a key derived for a chunk the plan left out');
    checkAll(r.staging, r.exp, new Set([FIRST]));
  } finally {
    fs.rmSync(r.staging, { recursive: true, force: true });
  }
});

test('a key derived ahead and never taken (a declined plan): zeroed on release', async (t) => {
  if (!have) return t.skip('fixture missing');
  const { bin } = loadFixture(FIXTURE);
  const reader = readerOf(bin);
  const head = await readArchiveHead(reader, 'qubes', { pool });
  const c = counted();
  const first = new FirstChunkKey(reader, { header: head.header, passphrase: 'qubes', pool: c.pool, maxMemory: RESTORE_MIN_MAX_MEMORY, selected: () => true });
  await waitFor('the key derived', () => c.keys.length === 1, 10_000);
  assert.ok(c.keys[0]!.some((b) => b !== 0));
  first.release();
  await waitFor('the key zeroed', () => c.keys[0]!.every((b) => b === 0), 5000);
  assert.equal(first.take((await first.next())!, 'vm9/root.img.000'), undefined, 'a released key is not handed out');
});

test('released before the first member arrived (a declined plan): nothing is derived ahead', async (t) => {
  if (!have) return t.skip('fixture missing');
  const { bin } = loadFixture(FIXTURE);
  const r = await restoreWithKey(bin, () => {}, 'release');
  try {
    assert.equal(r.result.ok, true, r.result.archiveError?.message);
    assert.equal(r.beforePass, 0);
    assert.equal(r.derived, await dataChunks(bin, () => true));
    checkAll(r.staging, r.exp);
  } finally {
    fs.rmSync(r.staging, { recursive: true, force: true });
  }
});

test('an archive that breaks off inside the first member\'s header or its scrypt header: the data pass reports it (ERR_CORRUPT), nothing unhandled', async (t) => {
  if (!have) return t.skip('fixture missing');
  const { bin } = loadFixture(FIXTURE);
  const at = (await memberOffsets(bin)).get('vm9/root.img.000.enc')!.offset;
  for (const cut of [at - 300, at + 60]) {
    const { result, staging, derived } = await restoreWithKey(bin.subarray(0, cut), () => {}, 'none');
    fs.rmSync(staging, { recursive: true, force: true });
    assert.equal(result.archiveError?.code, 'ERR_CORRUPT', `cut at ${cut - at}: ${result.archiveError?.message}`);
    assert.match(result.archiveError?.message ?? '', /truncated|corrupt/);
    assert.equal(derived, 0);
  }
});

test('a first chunk whose scrypt header asks for more than --max-memory allows: nothing derived ahead, its VM fails with ERR_TOO_LARGE as before', async (t) => {
  if (!have) return t.skip('fixture missing');
  const { bin } = loadFixture(FIXTURE);
  const at = (await memberOffsets(bin)).get('vm9/root.img.000.enc')!.offset;
  const forged = Buffer.from(bin);
  forged[at + 7] = 22; // logN 22 (4 GiB per derivation), checksum recomputed
  createHash('sha256').update(forged.subarray(at, at + 48)).digest().copy(forged, at + 48, 0, 16);
  const { exp } = loadFixture(FIXTURE);
  const reader = readerOf(forged);
  const head = await readArchiveHead(reader, 'qubes', { pool });
  const c = counted();
  const staging = tempDir();
  const first = new FirstChunkKey(reader, { header: head.header, passphrase: 'qubes', pool: c.pool, maxMemory: RESTORE_MIN_MAX_MEMORY, selected: () => true });
  try {
    const result = await restoreData(first, { head, passphrase: 'qubes', pool: c.pool, qubesXml: parseQubesXml(head.qubesXmlBytes), slotBytes: 2 * 1024 * 1024, firstChunk: first }, selectionOf(exp, staging));
    const vm9 = result.vms.get(FIRST);
    assert.equal(vm9?.ok, false);
    assert.equal(vm9?.error?.code, 'ERR_TOO_LARGE', vm9?.error?.message);
    assert.equal(result.archiveError, undefined);
    assert.equal(c.derived(), await dataChunks(bin, (s) => s !== FIRST), 'the forged chunk was derived');
  } finally {
    fs.rmSync(staging, { recursive: true, force: true });
  }
});
