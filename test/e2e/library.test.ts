// The library (`import … from 'qvm-backup'`, src/main/index.ts), loaded by its package name as a
// program would: a backup, list, verification and restore in this process, the restored images
// identical to the collection's; its errors by code, before anything is written where the request
// is wrong; an abort, a declined plan, a throwing listener and a stall each end the run with their
// own code and leave nothing behind; and repeated runs add no process listeners (this file's
// process also has to end on its own: nothing the runs started may hold it).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type * as Lib from '../../src/main/index.js';
import { tempDir, sampleIn } from '../helpers/cli.js';
import { snapshot, changes } from '../helpers/tree-snapshot.js';

const MiB = 1024 * 1024;
const PASS = 'correct horse battery staple';
/** By name, as a program that installed the package imports it (resolved through package.json's exports). */
const PACKAGE: string = 'qvm-backup';
const lib = (await import(PACKAGE)) as typeof Lib;

const sha = (p: string): string => createHash('sha256').update(readFileSync(p)).digest('hex');

/** A sample collection whose work/private.img spans several 1 MiB chunks. */
function collection(dir: string): { root: string; home: string } {
  return sampleIn(dir, { bigImageBytes: 64 * MiB, bigDataBytes: 6 * MiB, smallImageBytes: 4 * MiB, smallDataBytes: 64 * 1024 });
}

async function rejects(p: Promise<unknown>, code: string): Promise<Lib.QvmBackupError> {
  try {
    await p;
  } catch (e) {
    assert.ok(lib.isQvmBackupError(e), `a QvmBackupError: ${String(e)}`);
    assert.equal(e.code, code, e.message);
    return e;
  }
  assert.fail(`expected ${code}`);
}

test('library: backup, list, verify and restore by the package name; the restored images are the collection\'s', { timeout: 120_000 }, async () => {
  const tmp = tempDir('qvmb-lib-');
  try {
    const { root, home } = collection(tmp.dir);
    const out = join(tmp.dir, 'out');
    mkdirSync(out);
    const events: Lib.RunEvent[] = [];
    const b = await lib.backup({ location: out, passphrase: PASS, qubesRoot: root, dom0Home: home, scryptLogN: 10, chunkSize: MiB, vms: ['work', 'vault', 'dom0'], onEvent: (e) => events.push(e), stats: true });
    assert.equal(readdirSync(out).length, 1);
    assert.equal(b.path, join(out, readdirSync(out)[0]!));
    assert.deepEqual([...b.vms].sort(), ['vault', 'work']);
    assert.equal(b.dom0User, 'user');
    assert.ok(b.chunks > 6, `several chunks (${b.chunks})`);
    assert.equal(b.compression['engine'], 'node-zlib-workers');
    assert.ok(b.stats !== undefined && b.stats.stages.length > 0, 'the stage profile');
    const types = events.map((e) => e.type);
    assert.ok(types.indexOf('plan') < types.indexOf('start'), 'the plan comes before the data');
    const progress = events.filter((e) => e.type === 'progress');
    assert.ok(progress.length > 0);
    let last = 0;
    for (const p of progress) {
      assert.ok(p.bytesDone >= last && p.bytesDone <= p.totalBytes, `bytesDone ${p.bytesDone} of ${p.totalBytes}, after ${last}`);
      last = p.bytesDone;
    }
    // the total is the files' planned sizes, and the done part counts in the same unit: all of it
    // at the end (it counted the inner archives' headers too and ended above the total)
    assert.equal(last, progress.at(-1)!.totalBytes, 'done = total at the end');
    assert.deepEqual(events.filter((e) => e.type === 'vm-done' && e.ok).map((e) => (e.type === 'vm-done' ? e.vm : '')).sort(), ['dom0 home', 'vault', 'work']);

    const listing = await lib.list({ location: b.path, passphrase: async () => PASS });
    assert.equal(listing.format, 4);
    assert.deepEqual(listing.vms.map((v) => v.name).sort(), ['vault', 'work']);

    const v = await lib.verify({ location: b.path, passphrase: PASS });
    assert.deepEqual(v.vms.map((x) => x.name).sort(), ['vault', 'work']);
    assert.equal(v.dom0User, 'user');

    const host = join(tmp.dir, 'host');
    const hostHome = join(tmp.dir, 'hh', 'user');
    mkdirSync(hostHome, { recursive: true });
    let shown: Record<string, unknown> | undefined;
    const r = await lib.restore({ location: b.path, passphrase: PASS, qubesRoot: host, dom0Home: hostHome, ignoreMissing: true, confirm: (plan) => {
      shown = plan;
      return true;
    } });
    assert.ok(shown !== undefined && Array.isArray(shown['vms']), 'confirm is shown the --json plan');
    assert.deepEqual(r.vms.map((x) => x.name).sort(), ['vault', 'work']);
    assert.ok(r.dom0HomeDir !== null && r.dom0HomeDir.startsWith(join(hostHome, 'home-restore-')));
    for (const f of ['private.img', 'volatile.img']) {
      const src = join(root, 'appvms', 'work', f);
      if (existsSync(src)) assert.equal(sha(join(host, 'appvms', 'work', f)), sha(src), `work/${f}`);
    }
    assert.match(readFileSync(join(host, 'qubes.xml'), 'utf8'), /name="work"|<name>work<\/name>|work/);
  } finally {
    tmp.cleanup();
  }
});

test('library: a wrong request, passphrase or answer ends with its code and writes nothing', { timeout: 120_000 }, async () => {
  const tmp = tempDir('qvmb-lib-err-');
  try {
    const { root, home } = collection(tmp.dir);
    const out = join(tmp.dir, 'out');
    mkdirSync(out);
    const base = { location: out, passphrase: PASS, qubesRoot: root, dom0Home: home, scryptLogN: 10, chunkSize: MiB };
    // eslint-disable-next-line no-sparse-arrays
    const sparse = [, 'work'];
    for (const bad of [{ threads: 0.5 }, { threads: 1000 }, { threads: 0 }, { scryptLogN: 30 }, { format: 5 }, { vms: 'work' }, { vms: sparse }, { passphrase: undefined }, { location: '' }, { stallTimeout: -1 }, { stallTimeout: 1e-9 }, { stallTimeout: Infinity }, { signal: {} }, { encrypt: 0 }, { compress: '' }, { destCommand: 'cat > x', destVm: 'vm' }]) {
      const e = await rejects(lib.backup({ ...base, ...bad } as unknown as Lib.BackupRequest), 'ERR_USAGE');
      assert.equal(lib.exitStatusOf(e), 2, JSON.stringify(bad));
    }
    // a passphrase string is refused before any plan is shown
    for (const pw of ['', 'two\nlines']) {
      let shown = false;
      await rejects(lib.backup({ ...base, passphrase: pw, confirm: () => (shown = true) }), 'ERR_USAGE');
      assert.equal(shown, false);
    }
    // a caller's function that fails is the cause of an ERR_USAGE; one that gives no boolean too
    const failed = await rejects(lib.backup({ ...base, passphrase: () => Promise.reject(new Error('vault locked')) }), 'ERR_USAGE');
    assert.match(failed.message, /the passphrase function failed: vault locked/);
    await rejects(lib.backup({ ...base, confirm: () => { throw new Error('ui gone'); } }), 'ERR_USAGE');
    await rejects(lib.backup({ ...base, confirm: (() => 'yes') as unknown as () => boolean }), 'ERR_USAGE');
    let asked = false;
    await rejects(lib.backup({ ...base, confirm: (plan) => {
      asked = Array.isArray(plan['vms']);
      return false;
    } }), 'ERR_DECLINED');
    assert.ok(asked);
    assert.deepEqual(readdirSync(out), [], 'nothing written');

    const b = await lib.backup({ ...base, vms: ['vault'] });
    const host = join(tmp.dir, 'host');
    mkdirSync(host);
    writeFileSync(join(host, 'keep'), 'x');
    const before = snapshot(host);
    const hostHome = join(tmp.dir, 'hh', 'user');
    mkdirSync(hostHome, { recursive: true });
    const wrong = await rejects(lib.restore({ location: b.path, passphrase: 'not it', qubesRoot: host, dom0Home: hostHome }), 'ERR_HEADER_AUTH');
    assert.equal(lib.exitStatusOf(wrong), 4);
    await rejects(lib.restore({ location: b.path, passphrase: PASS, qubesRoot: host, dom0Home: hostHome, ignoreMissing: true, confirm: () => false }), 'ERR_DECLINED');
    // a confirm that never answers does not hold the run (nor the host lock) past an abort
    const ac = new AbortController();
    const waiting = lib.restore({ location: b.path, passphrase: PASS, qubesRoot: host, dom0Home: hostHome, ignoreMissing: true, signal: ac.signal, confirm: () => {
      setTimeout(() => ac.abort(new Error('cancel button')), 100);
      return new Promise<boolean>(() => {});
    } });
    const cancelled = await rejects(waiting, 'ERR_CANCELLED');
    assert.match(cancelled.message, /cancel button/);
    const again = await lib.restore({ location: b.path, passphrase: PASS, qubesRoot: host, dom0Home: hostHome, ignoreMissing: true, confirm: () => false }).catch((e: unknown) => e);
    assert.equal((again as Lib.QvmBackupError).code, 'ERR_DECLINED', 'the host lock was let go');
    await rejects(lib.restore({ location: b.path, sourceCommand: `cat ${b.path}`, passphrase: PASS }), 'ERR_USAGE');
    await rejects(lib.restore({ location: join(tmp.dir, 'missing'), passphrase: PASS, qubesRoot: host, dom0Home: hostHome }), 'ERR_USAGE');
    // a key the request does not take is refused, with the one meant (a misspelt skipDom0Home
    // would restore the home); verify takes no host options
    const typo = await rejects(lib.restore({ location: b.path, passphrase: PASS, qubesRoot: host, dom0Home: hostHome, ignoreMissing: true, skipDom0home: true } as unknown as Lib.RestoreRequest), 'ERR_USAGE');
    assert.match(typo.message, /^restore: unknown option "skipDom0home" \(did you mean skipDom0Home\?\)$/);
    const hostOption = await rejects(lib.verify({ location: b.path, passphrase: PASS, renameConflicting: true } as unknown as Lib.VerifyRequest), 'ERR_USAGE');
    assert.equal(hostOption.message, 'verify: option "renameConflicting" is restore\'s: a verification installs nothing (leave it out)');
    // a key the options object inherits is read through it, so it is checked too
    const inherited = Object.assign(Object.create({ skipDom0home: true }) as object, { location: b.path, passphrase: PASS, qubesRoot: host, dom0Home: hostHome }) as Lib.RestoreRequest;
    assert.match((await rejects(lib.restore(inherited), 'ERR_USAGE')).message, /unknown option "skipDom0home"/);
    await rejects(lib.list({ location: b.path, passphrase: PASS, vms: ['work'] } as unknown as Lib.ArchiveRequest), 'ERR_USAGE');
    await rejects(lib.backup({ location: join(tmp.dir, 'x'), passphrase: PASS, qubesRoot: host, dom0Home: hostHome, bogus: 1 } as unknown as Lib.BackupRequest), 'ERR_USAGE');
    assert.deepEqual(changes(before, snapshot(host), (p) => p === 'qubes.xml.lock'), [], 'the host is as it was');
  } finally {
    tmp.cleanup();
  }
});

test('library: an abort, a throwing listener and a stall stop the run with their own code and leave nothing; no listener piles up', { timeout: 180_000 }, async () => {
  const tmp = tempDir('qvmb-lib-stop-');
  try {
    const { root, home } = collection(tmp.dir);
    const out = join(tmp.dir, 'out');
    mkdirSync(out);
    const base = { location: out, passphrase: PASS, qubesRoot: root, dom0Home: home, scryptLogN: 10, chunkSize: MiB, vms: ['work'] };
    const counts = (): number[] => ['exit', 'SIGINT', 'SIGTERM', 'SIGHUP', 'uncaughtException', 'unhandledRejection'].map((n) => process.listenerCount(n));

    const ac = new AbortController();
    const aborted = await rejects(lib.backup({ ...base, signal: ac.signal, onEvent: (e) => {
      if (e.type === 'progress') ac.abort(new Error('the caller stops'));
    } }), 'ERR_CANCELLED');
    assert.equal(lib.exitStatusOf(aborted), 130);
    assert.deepEqual(readdirSync(out), [], 'the partial archive is removed');
    const after = counts();

    const early = new AbortController();
    early.abort(new Error('before it began'));
    const e0 = await rejects(lib.backup({ ...base, signal: early.signal }), 'ERR_CANCELLED');
    assert.match(e0.message, /before it began/);
    // a string given as the reason is said too
    const said = new AbortController();
    said.abort('user closed the window');
    assert.match((await rejects(lib.backup({ ...base, signal: said.signal }), 'ERR_CANCELLED')).message, /^aborted: user closed the window$/);

    const thrown = await rejects(lib.backup({ ...base, onEvent: (e) => {
      if (e.type === 'progress') throw new Error('listener bug');
    } }), 'ERR_INTERNAL');
    assert.match(thrown.message, /onEvent listener threw: listener bug/);
    assert.deepEqual(readdirSync(out), []);
    // an async listener that rejects: the same, never an unhandled rejection
    const rejected = await rejects(lib.backup({ ...base, onEvent: async (e) => {
      if (e.type === 'progress') throw new Error('async listener bug');
    } }), 'ERR_INTERNAL');
    assert.match(rejected.message, /onEvent listener threw: async listener bug/);
    assert.deepEqual(readdirSync(out), []);

    // three whole runs more: the process-wide listeners stay as the first run left them
    const archives: string[] = [];
    for (let i = 0; i < 3; i++) archives.push((await lib.backup({ ...base, location: join(out, `b${i}.bin`) })).path);
    assert.deepEqual(counts(), after, 'no listener added per run');

    // a restore aborted in its data: its staging is removed, the host is as it was
    const host = join(tmp.dir, 'host');
    const hostHome = join(tmp.dir, 'hh', 'user');
    mkdirSync(hostHome, { recursive: true });
    mkdirSync(host);
    const before = snapshot(host);
    const rac = new AbortController();
    await rejects(lib.restore({ location: archives[0]!, passphrase: PASS, qubesRoot: host, dom0Home: hostHome, ignoreMissing: true, threads: 1, signal: rac.signal, onEvent: (e) => {
      if (e.type === 'progress' && e.bytesRead > 2 * MiB) rac.abort();
    } }), 'ERR_CANCELLED');
    assert.deepEqual(changes(before, snapshot(host), (p) => p === 'qubes.xml.lock'), [], 'nothing of the restore is left in the host');

    // a source that stops giving bytes: stopped at the stall timeout, its command ended
    const started = Date.now();
    const stalled = await rejects(lib.verify({ sourceCommand: `head -c 1048576 ${archives[1]!}; exec sleep 60`, passphrase: PASS, stallTimeout: 2 }), 'ERR_STALLED');
    assert.match(stalled.message, /stallTimeout 2/);
    assert.ok(Date.now() - started < 30_000, 'stopped within the timeout, not after the command');
    assert.equal(lib.exitStatusOf(stalled), 1);
    // runs that read from a command leave no exit hook behind either
    for (let i = 0; i < 3; i++) await lib.list({ sourceCommand: `cat ${archives[2]!}`, passphrase: PASS });
    assert.deepEqual(counts(), after, 'no listener added per run that reads from a command');
  } finally {
    tmp.cleanup();
  }
});

test('library: backups side by side in one process into one directory each get their own archive', { timeout: 120_000 }, async () => {
  const tmp = tempDir('qvmb-lib-many-');
  try {
    const { root, home } = collection(tmp.dir);
    const out = join(tmp.dir, 'out');
    mkdirSync(out);
    const runs = await Promise.all([0, 1, 2].map(() => lib.backup({ location: out, passphrase: PASS, qubesRoot: root, dom0Home: home, scryptLogN: 10, vms: ['vault'] })));
    assert.equal(new Set(runs.map((r) => r.path)).size, 3, 'three names');
    assert.deepEqual(readdirSync(out).sort(), runs.map((r) => r.path.slice(out.length + 1)).sort(), 'three archives, no partial file');
    for (const r of runs) assert.deepEqual((await lib.verify({ location: r.path, passphrase: PASS })).vms.map((v) => v.name), ['vault']);
  } finally {
    tmp.cleanup();
  }
});
