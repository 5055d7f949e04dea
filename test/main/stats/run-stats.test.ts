// The stage profile's accounting on a fake clock: busy time adds overlapping intervals, active
// time is their union, worker utilisation = worker time / (threads × wall), spawns and key
// derivations are counted, and a profile that is off records nothing but the derivations.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RunStats, formatStats } from '../../../src/main/stats/run-stats.js';

function fakeClock(): { now: () => number; at: (ms: number) => void } {
  let t = 1000;
  return { now: () => t, at: (ms) => (t = 1000 + ms) };
}

const stage = (s: RunStats, name: string) => s.report().stages.find((x) => x.stage === name);

test('busy time adds overlapping intervals, active time is their union', () => {
  const c = fakeClock();
  const s = new RunStats({ enabled: true, clock: c.now, measureEventLoop: false });
  const a = s.begin('tar');
  c.at(100);
  const b = s.begin('tar'); // a second file's tar while the first runs
  c.at(300);
  a();
  a(); // a second call of the same end is ignored
  c.at(400);
  b();
  c.at(1000);
  const x = s.begin('tar'); // later, alone
  c.at(1500);
  x();
  c.at(2000);
  assert.deepEqual(stage(s, 'tar'), { stage: 'tar', busy_s: 0.3 + 0.3 + 0.5, active_s: 0.4 + 0.5, count: 3 });
  assert.equal(s.report().wall_s, 2);
  // an interval still open counts up to now
  const open = s.begin('write');
  c.at(2250);
  assert.deepEqual(stage(s, 'write'), { stage: 'write', busy_s: 0, active_s: 0.25, count: 0 });
  open();
  assert.deepEqual(stage(s, 'write'), { stage: 'write', busy_s: 0.25, active_s: 0.25, count: 1 });
});

test('time() ends its interval on return, on resolve and on throw', async () => {
  const c = fakeClock();
  const s = new RunStats({ enabled: true, clock: c.now, measureEventLoop: false });
  assert.equal(s.time('sync', () => (c.at(50), 7)), 7);
  assert.throws(() => s.time('throws', () => (c.at(80), assert.fail('boom'))), /boom/);
  let release!: () => void;
  const p = s.time('async', () => new Promise<string>((r) => (release = () => r('ok'))));
  c.at(200);
  release();
  assert.equal(await p, 'ok');
  await assert.rejects(s.time('rejects', async () => Promise.reject(new Error('no'))), /no/);
  assert.equal(stage(s, 'sync')?.busy_s, 0.05);
  assert.equal(stage(s, 'throws')?.busy_s, 0.03);
  assert.equal(stage(s, 'async')?.busy_s, 0.12);
  assert.equal(stage(s, 'rejects')?.count, 1);
});

test('workers: utilisation is worker time over threads × wall; spawns and derivations counted', () => {
  const c = fakeClock();
  const s = new RunStats({ enabled: true, clock: c.now, measureEventLoop: false });
  s.setThreads(2);
  s.workerTask('compress (workers)', 600, false);
  s.workerTask('key derivation (workers)', 900, true);
  s.workerTask('key derivation (workers)', 500, true);
  s.spawned(12);
  s.spawned(8);
  c.at(1000);
  const r = s.report();
  assert.deepEqual(r.workers, { threads: 2, busy_s: 2, utilisation: 1, tasks: 3 });
  assert.equal(r.key_derivations, 2);
  assert.deepEqual(r.spawns, { count: 2, main_thread_s: 0.02 });
  assert.deepEqual(stage(s, 'key derivation (workers)'), { stage: 'key derivation (workers)', busy_s: 1.4, active_s: 0, count: 2 });
  c.at(2000);
  assert.equal(s.report().workers.utilisation, 0.5, 'half of two workers over 2 s');
  const text = formatStats(s.report());
  assert.match(text, /^Stage profile \(wall 2\.00 s\):/);
  assert.match(text, /key derivation \(workers\) +1\.40 +0\.00 +2\n/);
  assert.match(text, /workers: 2 threads, 2\.00 busy s in 3 tasks, utilisation 50 %/);
  assert.match(text, /child processes: 2, 0\.02 s of the main thread/);
  assert.equal(r.key_derivation_engines, undefined, 'no pool counted them');
  assert.match(text, /key derivations: 2\n/);
  // the worker pool's counters per scrypt engine: in the report and in the text
  s.setKdfEngineCounts(() => ({ wasm: 1, openssl: 1 }));
  assert.deepEqual(s.report().key_derivation_engines, { wasm: 1, openssl: 1 });
  assert.match(formatStats(s.report()), /key derivations: 2 \(scrypt in WebAssembly 1, node:crypto 1\)\n/);
});

test('off: no clock reads, no stages; key derivations still counted', () => {
  let reads = 0;
  const s = new RunStats({ enabled: false, clock: () => reads++ });
  s.begin('x')();
  assert.equal(s.time('y', () => 3), 3);
  s.add('z', 5);
  s.spawned(4);
  s.workerTask('key derivation (workers)', 10, true);
  assert.equal(reads, 0);
  assert.equal(s.keyDerivations, 1);
  const r = s.report();
  assert.deepEqual(r.stages, []);
  assert.deepEqual(r.spawns, { count: 0, main_thread_s: 0 });
});

test('time waiting for the user is its own stage and left out of the wall time and the worker share', async () => {
  const c = fakeClock();
  const s = new RunStats({ enabled: true, clock: c.now, measureEventLoop: false });
  s.setThreads(2);
  c.at(1000);
  const typed = await s.userWait(async () => {
    c.at(61_000); // a minute at the passphrase prompt
    return 'pw';
  });
  assert.equal(typed, 'pw');
  s.workerTask('compress (workers)', 2000, false);
  c.at(63_000);
  const r = s.report();
  assert.equal(r.wall_s, 3, 'the 60 s at the prompt are not in the wall time');
  assert.equal(r.workers.utilisation, 0.333); // 2 s of worker time / (2 threads × 3 s)
  assert.equal(r.stages.find((x) => x.stage.startsWith('waiting for the user'))?.busy_s, 60);
  // a failing prompt is still taken out
  await assert.rejects(s.userWait(async () => {
    c.at(73_000);
    throw new Error('no tty');
  }));
  assert.equal(s.report().wall_s, 3);
});
