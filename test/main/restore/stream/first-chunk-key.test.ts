// The first chunk's key derived while the plan is confirmed (first-chunk-key.ts), on a Qubes-made
// format 4 archive: derived once, in a child process, and used by the data pass (never derived
// twice); nothing derived for a member the plan leaves out; a release kills a running derivation at
// once; its memory is counted in the data pass's budget while it runs; and a broken or hostile
// first member is reported by the data pass as without it.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { after, before, test } from 'node:test';
import { WorkerPool } from '../../../../src/main/pipeline/worker-pool.js';
import { parseQubesXml } from '../../../../src/main/qubes-xml/index.js';
import { FirstChunkKey, dataPassMemory, readArchiveHead, restoreData, RESTORE_MIN_MAX_MEMORY, type DataPassMemory, type RestoreDataContext } from '../../../../src/main/restore/stream/index.js';
import { alive, waitFor } from '../../../helpers/processes.js';
import { checkAll, fixtureNames, forgeFirstChunkLogN, loadFixture, memberOffsets, readerOf, selectionOf, tempDir } from './stream-helpers.js';

const FIXTURE = 'v4-gzip';
const FIRST = 'vm9/'; // the subdir of the archive's first data member (vm9/root.img.000.enc)
const FIRST_MEMBER = 'vm9/root.img.000.enc';
const have = fixtureNames().includes(FIXTURE);
let pool: WorkerPool;

before(() => {
  pool = new WorkerPool({ threads: 2 });
});
after(async () => {
  await pool.destroy();
});

/** The pool, with the derivations the data pass asks of it counted (a key derived ahead of its
 *  chunk, or a chunk decrypted without one). */
function counted(): { pool: WorkerPool; derived: () => number; names: string[] } {
  const names: string[] = []; // the chunks (`vm9/root.img.000`), from their passphrases (id!chunk!passphrase)
  const proxy = new Proxy(pool, {
    get(target, prop) {
      if (prop === 'run') {
        return (task: string, ...rest: unknown[]) => {
          const t = rest[0] as { derived?: unknown; passphrase?: string };
          if (task === 'scryptDerive' || (task === 'scryptDecrypt' && t.derived === undefined)) names.push(t.passphrase?.split('!')[1] ?? '');
          return (target.run as (t: string, ...a: unknown[]) => Promise<unknown>)(task, ...rest);
        };
      }
      const v = Reflect.get(target, prop, target) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
  return { pool: proxy, derived: () => names.length, names };
}

/** Head, data context and memory of `bin`, with the key of its first chunk on the way. */
async function prepare(bin: Buffer, select: (sel: Map<string, { vm: string; stagingDir: string }>) => void = () => {}, maxMemory = RESTORE_MIN_MAX_MEMORY, beforeKey: (memory: DataPassMemory) => void = () => {}) {
  const { exp } = loadFixture(FIXTURE);
  const reader = readerOf(bin);
  const head = await readArchiveHead(reader, 'qubes', { pool });
  const c = counted();
  const staging = tempDir();
  const sel = new Map(selectionOf(exp, staging));
  select(sel);
  const ctx: RestoreDataContext = { head, passphrase: 'qubes', pool: c.pool, qubesXml: parseQubesXml(head.qubesXmlBytes), slotBytes: 2 * 1024 * 1024, maxMemory };
  const memory = dataPassMemory(ctx);
  beforeKey(memory);
  const first = new FirstChunkKey(reader, { header: head.header, passphrase: 'qubes', kdf: memory.kdf, selected: (subdir) => sel.has(subdir) });
  const run = () => restoreData(first, { ...ctx, firstChunk: first }, sel, memory);
  return { exp, staging, sel, c, memory, first, run };
}

/** Data chunk members of the archive (each derives one key). */
async function dataChunks(bin: Buffer, subdirs: (s: string) => boolean): Promise<number> {
  return [...(await memberOffsets(bin)).keys()].filter((n) => n.endsWith('.enc') && n !== 'qubes.xml.000.enc' && subdirs(n.slice(0, n.indexOf('/') + 1))).length;
}

test('the first chunk\'s key is derived ahead in a child and used by the data pass: no chunk derived twice, the restore exact', async (t) => {
  if (!have) return t.skip('fixture missing');
  const { bin } = loadFixture(FIXTURE);
  const p = await prepare(bin);
  try {
    assert.equal(await p.first.derived(), true);
    assert.equal(p.c.derived(), 0, 'derived in the pool before the data pass');
    const result = await p.run();
    assert.equal(result.ok, true, result.archiveError?.message);
    assert.equal(p.c.derived(), (await dataChunks(bin, () => true)) - 1, 'a chunk key derived twice (or the first not taken)');
    checkAll(p.staging, p.exp);
  } finally {
    fs.rmSync(p.staging, { recursive: true, force: true });
  }
});

test('the data pass reaches the first chunk before its key is there (an answer at once): it waits for the child\'s key, never derives it again', async (t) => {
  if (!have) return t.skip('fixture missing');
  const { bin } = loadFixture(FIXTURE);
  for (let round = 0; round < 3; round++) {
    const p = await prepare(bin);
    try {
      const result = await p.run(); // at once: the child is still starting
      assert.equal(result.ok, true, result.archiveError?.message);
      assert.equal(p.c.derived(), (await dataChunks(bin, () => true)) - 1, 'the first chunk\'s key derived in the pool as well');
      checkAll(p.staging, p.exp);
    } finally {
      fs.rmSync(p.staging, { recursive: true, force: true });
    }
  }
});

test('a first member the plan leaves out: no child, no key derived for it, the rest restores as before', async (t) => {
  if (!have) return t.skip('fixture missing');
  const { bin } = loadFixture(FIXTURE);
  const p = await prepare(bin, (sel) => sel.delete(FIRST));
  try {
    assert.equal(await p.first.derived(), false);
    assert.equal(p.first.childPid, undefined);
    const result = await p.run();
    assert.equal(result.ok, true, result.archiveError?.message);
    assert.equal(result.vms.has(FIRST), false);
    assert.equal(p.c.derived(), await dataChunks(bin, (s) => s !== FIRST), 'a key derived for a chunk the plan left out');
    checkAll(p.staging, p.exp, new Set([FIRST]));
  } finally {
    fs.rmSync(p.staging, { recursive: true, force: true });
  }
});

test('released before the first member arrived: nothing derived ahead, the data pass derives every key itself, the restore exact', async (t) => {
  if (!have) return t.skip('fixture missing');
  const { bin } = loadFixture(FIXTURE);
  const p = await prepare(bin);
  try {
    p.first.release();
    assert.equal(await p.first.derived(), false);
    assert.equal(p.first.childPid, undefined);
    const result = await p.run();
    assert.equal(result.ok, true, result.archiveError?.message);
    assert.equal(p.c.derived(), await dataChunks(bin, () => true));
    checkAll(p.staging, p.exp);
  } finally {
    fs.rmSync(p.staging, { recursive: true, force: true });
  }
});

test('a long derivation (logN 21, 2 GiB) holds its memory in the data pass\'s budget while it runs, and release() kills it at once and gives the memory back', async (t) => {
  if (!have) return t.skip('fixture missing');
  const p = await prepare(await forgeFirstChunkLogN(loadFixture(FIXTURE).bin, 21));
  try {
    await waitFor('the child deriving', () => p.first.childPid !== undefined && alive(p.first.childPid), 20_000);
    const pid = p.first.childPid!;
    // a derivation of the data pass that needs the budget's whole room waits for the child
    let started = false;
    const big = p.memory.kdf.run(p.memory.kdf.limits.maxKdfBytes, async () => {
      started = true;
      return Promise.resolve();
    });
    await new Promise((r) => setTimeout(r, 300)); // nothing to observe but that it has not begun
    assert.equal(started, false, 'a derivation started beside the child that its memory leaves no room for');
    const t0 = Date.now();
    p.first.release();
    await big;
    assert.equal(started, true);
    assert.ok(Date.now() - t0 < 5000, `the budget waited ${Date.now() - t0} ms after the release`);
    assert.equal(alive(pid), false, 'the child outlived its release');
    assert.equal(await p.first.derived(), false);
  } finally {
    p.first.release();
    fs.rmSync(p.staging, { recursive: true, force: true });
  }
});

test('an archive that breaks off inside the first member\'s header or its scrypt header: the data pass reports it (ERR_CORRUPT), no child', async (t) => {
  if (!have) return t.skip('fixture missing');
  const { bin } = loadFixture(FIXTURE);
  const at = (await memberOffsets(bin)).get(FIRST_MEMBER)!.offset;
  for (const cut of [at - 300, at + 60]) {
    const p = await prepare(bin.subarray(0, cut));
    try {
      assert.equal(await p.first.derived(), false);
      assert.equal(p.first.childPid, undefined);
      const result = await p.run();
      assert.equal(result.archiveError?.code, 'ERR_CORRUPT', `cut at ${cut - at}: ${result.archiveError?.message}`);
      assert.match(result.archiveError?.message ?? '', /truncated|corrupt/);
      assert.equal(p.c.derived(), 0);
    } finally {
      fs.rmSync(p.staging, { recursive: true, force: true });
    }
  }
});

test('a first chunk whose scrypt header asks for more than --max-memory allows: no child, its VM fails with ERR_TOO_LARGE as before', async (t) => {
  if (!have) return t.skip('fixture missing');
  const { bin } = loadFixture(FIXTURE);
  const p = await prepare(await forgeFirstChunkLogN(bin, 22)); // 4 GiB per derivation
  try {
    assert.equal(await p.first.derived(), false);
    assert.equal(p.first.childPid, undefined);
    const result = await p.run();
    const vm9 = result.vms.get(FIRST);
    assert.equal(vm9?.ok, false);
    assert.equal(vm9?.error?.code, 'ERR_TOO_LARGE', vm9?.error?.message);
    assert.equal(result.archiveError, undefined);
    assert.equal(p.c.derived(), await dataChunks(bin, (s) => s !== FIRST), 'the forged chunk was derived');
  } finally {
    fs.rmSync(p.staging, { recursive: true, force: true });
  }
});

test('a first chunk forged to another logN: its key is derived ahead, it does not authenticate the chunk, its VM fails, the others restore', async (t) => {
  if (!have) return t.skip('fixture missing');
  const { bin } = loadFixture(FIXTURE);
  const p = await prepare(await forgeFirstChunkLogN(bin, 11));
  try {
    assert.equal(await p.first.derived(), true);
    const result = await p.run();
    const vm9 = result.vms.get(FIRST);
    assert.equal(vm9?.ok, false);
    assert.match(vm9?.error?.code ?? '', /^ERR_CHUNK_AUTH$/, vm9?.error?.message);
    checkAll(p.staging, p.exp, new Set([FIRST]));
  } finally {
    fs.rmSync(p.staging, { recursive: true, force: true });
  }
});

test('a derivation that fits in one derivation\'s room but not with the child\'s own memory beside it: no child (the data pass derives it in a worker)', async (t) => {
  if (!have) return t.skip('fixture missing');
  const MiB = 1024 * 1024;
  // logN 21: 2 GiB and a little; --max-memory leaving 2080 MiB per derivation (255 MiB for chunks)
  const p = await prepare(await forgeFirstChunkLogN(loadFixture(FIXTURE).bin, 21), () => {}, (255 + 2080) * MiB);
  try {
    assert.equal(p.memory.kdf.limits.maxKdfBytes, 2080 * MiB);
    assert.equal(await p.first.derived(), false);
    assert.equal(p.first.childPid, undefined);
  } finally {
    p.first.abandon();
    fs.rmSync(p.staging, { recursive: true, force: true });
  }
});

test('an archive that breaks off after the first chunk, the key taken while its child still derives: the child ends its derivation, no worker derives it again', async (t) => {
  if (!have) return t.skip('fixture missing');
  const { bin } = loadFixture(FIXTURE);
  const members = [...(await memberOffsets(bin)).entries()];
  const second = members[members.findIndex(([n]) => n === FIRST_MEMBER) + 1]![1].offset;
  for (let round = 0; round < 3; round++) {
    const p = await prepare(bin.subarray(0, second + 200)); // data pass at once: the child is still starting
    try {
      const result = await p.run();
      assert.equal(result.archiveError?.code, 'ERR_CORRUPT', result.archiveError?.message);
      assert.ok(!p.c.names.includes('vm9/root.img.000'), `derived again in a worker: ${p.c.names.join(', ')}`);
    } finally {
      p.first.abandon();
      fs.rmSync(p.staging, { recursive: true, force: true });
    }
  }
});

test('taken while its derivation waits for memory, then abandoned (the run stopped): no child is started after', async (t) => {
  if (!have) return t.skip('fixture missing');
  const { bin } = loadFixture(FIXTURE);
  // the budget busy before the key is asked for: another derivation of the data pass holds its whole room
  let free: () => void = () => {};
  let hold: Promise<void> = Promise.resolve();
  const p = await prepare(bin, () => {}, RESTORE_MIN_MAX_MEMORY, (memory) => {
    hold = memory.kdf.run(memory.kdf.limits.maxKdfBytes, () => new Promise<void>((r) => (free = r)));
  });
  try {
    const m = (await p.first.next())!;
    const key = p.first.take(m, 'vm9/root.img.000');
    assert.ok(key !== undefined);
    p.first.abandon();
    free();
    await hold;
    assert.equal(await key, null);
    assert.equal(p.first.childPid, undefined, 'a child was started after the run stopped');
  } finally {
    fs.rmSync(p.staging, { recursive: true, force: true });
  }
});
