// The verdict on what bounded a run, from synthetic stage profiles: a destination or source that
// the run waited on, saturated workers (named by their heaviest stage), a busy main thread, and
// otherwise the side that feeds the pipeline.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { STAGE, backupBound, restoreBound, verifyBound } from '../../../src/main/stats/bound.js';
import type { StatsReport } from '../../../src/main/stats/report-types.js';

function report(o: { wall?: number; stages?: Record<string, number>; workers?: Record<string, number>; utilisation?: number; elu?: number }): StatsReport {
  const wall = o.wall ?? 10;
  return {
    wall_s: wall,
    stages: [
      ...Object.entries(o.stages ?? {}).map(([stage, active]) => ({ stage, busy_s: active, active_s: active, count: 1 })),
      ...Object.entries(o.workers ?? {}).map(([stage, busy]) => ({ stage, busy_s: busy, active_s: 0, count: 10 })),
    ],
    workers: { threads: 2, busy_s: 2 * wall * (o.utilisation ?? 0), utilisation: o.utilisation ?? 0, tasks: 10 },
    key_derivations: 3,
    spawns: { count: 0, main_thread_s: 0 },
    event_loop_utilisation: o.elu ?? 0.2,
  };
}

test('backup: writes that took most of the run mean the destination', () => {
  const b = backupBound(report({ stages: { [STAGE.backupWrite]: 6, [STAGE.backupWaitChunk]: 3 }, utilisation: 0.9 }));
  assert.equal(b.resource, 'destination');
  assert.equal(b.stage, STAGE.backupWrite);
  assert.equal(b.share, 0.6);
  assert.match(b.why, /60 %/);
});

test('backup: saturated workers mean the CPU, named by the heaviest worker stage', () => {
  const b = backupBound(report({ stages: { [STAGE.backupWrite]: 1, [STAGE.backupWaitChunk]: 8 }, workers: { 'compress (workers)': 15, 'key derivation (workers)': 2 }, utilisation: 0.87 }));
  assert.equal(b.resource, 'cpu');
  assert.equal(b.stage, 'compress (workers)');
  assert.match(b.why, /87 % .*compress/);
});

test('backup: idle workers and a waiting writer mean the source; a busy event loop means the main thread', () => {
  const src = backupBound(report({ stages: { [STAGE.backupWrite]: 0.5, [STAGE.backupWaitChunk]: 9, [STAGE.backupSourceInProcess]: 9.5 }, workers: { 'compress (workers)': 4 }, utilisation: 0.2 }));
  assert.equal(src.resource, 'source');
  assert.equal(src.stage, STAGE.backupSourceInProcess);
  assert.equal(src.share, 0.9);
  const tar = backupBound(report({ stages: { [STAGE.backupWaitChunk]: 9, [STAGE.backupSourceTar]: 9.5 }, utilisation: 0.2 }));
  assert.equal(tar.stage, STAGE.backupSourceTar);
  // -Z with a program: it compresses what we read, in a process of its own
  const program = backupBound(report({ stages: { [STAGE.backupWaitChunk]: 8, [STAGE.backupSourceInProcess]: 9.5, [STAGE.backupCompressProgram]: 9.6 }, utilisation: 0.3 }));
  assert.equal(program.resource, 'source');
  assert.equal(program.stage, STAGE.backupCompressProgram);
  assert.match(program.why, /80 % .*the compression program .* or reading the VM files bounded the run/);
  const main = backupBound(report({ stages: { [STAGE.backupWaitChunk]: 9 }, utilisation: 0.3, elu: 0.95 }));
  assert.equal(main.resource, 'main thread');
});

test('restore: a slow archive read means the source, saturated workers the CPU, else the destination disk', () => {
  const src = restoreBound(report({ stages: { [STAGE.restoreSource]: 7, [STAGE.restoreRead]: 5, [STAGE.restoreExtract]: 2 }, utilisation: 0.3 }));
  assert.equal(src.resource, 'source');
  const cpu = restoreBound(report({ stages: { [STAGE.restoreRead]: 1, [STAGE.restoreExtract]: 5 }, workers: { 'derive+authenticate+decrypt (workers)': 16 }, utilisation: 0.8 }));
  assert.equal(cpu.resource, 'cpu');
  assert.equal(cpu.stage, 'derive+authenticate+decrypt (workers)');
  const dest = restoreBound(report({ stages: { [STAGE.restoreRead]: 1, [STAGE.restoreExtract]: 6, [STAGE.restoreInstall]: 2, [STAGE.restoreWaitSlot]: 3 }, utilisation: 0.4 }));
  assert.equal(dest.resource, 'destination');
  assert.equal(dest.share, 0.8);
  assert.match(dest.why, /disk/);
  // verify-only writes nothing: the same profile is decompression, not a disk
  const verify = verifyBound(report({ stages: { [STAGE.restoreRead]: 1, [STAGE.restoreExtract]: 6 }, utilisation: 0.4 }));
  assert.equal(verify.resource, 'cpu');
  assert.doesNotMatch(verify.why, /disk/);
});

test('restore: VM image writes that took half the run mean the destination, named by that stage; less is not', () => {
  const w = restoreBound(report({ stages: { [STAGE.restoreRead]: 1, [STAGE.restoreExtract]: 4, [STAGE.restoreImageWrite]: 5.5, [STAGE.restoreWaitSlot]: 2 }, workers: { 'decompress (workers)': 6 }, utilisation: 0.45 }));
  assert.equal(w.resource, 'destination');
  assert.equal(w.stage, STAGE.restoreImageWrite);
  assert.equal(w.share, 0.55);
  assert.match(w.why, /55 %.*page cache/);
  // even when one kind of worker task ran half the run (not a saturated pool)
  const kdf = restoreBound(report({ stages: { [STAGE.restoreImageWrite]: 6 }, workers: { 'derive+authenticate+decrypt (workers)': 5.5 }, utilisation: 0.5 }));
  assert.equal(kdf.resource, 'destination');
  // saturated workers come first: the writes overlapped CPU work that bounded the run
  const cpu = restoreBound(report({ stages: { [STAGE.restoreImageWrite]: 6 }, workers: { 'decompress (workers)': 16 }, utilisation: 0.8 }));
  assert.equal(cpu.resource, 'cpu');
  const small = restoreBound(report({ stages: { [STAGE.restoreImageWrite]: 3, [STAGE.restoreExtract]: 3 }, utilisation: 0.3 }));
  assert.equal(small.resource, 'mixed');
});

test('nothing that took half the run is blamed: mixed, with the longest stage named', () => {
  // an 80 MB restore from the page cache: extraction 35 % of the run, workers 40 % busy
  const r = restoreBound(report({ stages: { [STAGE.restoreSource]: 1, [STAGE.restoreExtract]: 3.5, [STAGE.restoreInstall]: 0.5 }, workers: { 'derive+authenticate+decrypt (workers)': 4 }, utilisation: 0.4 }));
  assert.equal(r.resource, 'mixed');
  assert.equal(r.stage, STAGE.restoreExtract);
  assert.equal(r.share, 0.35);
  const b = backupBound(report({ stages: { [STAGE.backupWaitChunk]: 2, [STAGE.backupWrite]: 1 }, utilisation: 0.1 }));
  assert.equal(b.resource, 'mixed');
  assert.equal(b.stage, STAGE.backupWaitChunk);
  assert.equal(verifyBound(report({ stages: { [STAGE.restoreExtract]: 1 }, utilisation: 0.1 })).resource, 'mixed');
});

test('more threads than tasks: one kind of worker task that ran most of the run is the CPU bound', () => {
  // logN 19, 8 threads, few chunks: key derivation took 65 s of worker time in a 22 s run
  const b = backupBound(report({ wall: 22, stages: { [STAGE.backupWaitChunk]: 21, [STAGE.backupSourceInProcess]: 0.5 }, workers: { 'key derivation (workers)': 65, 'compress (workers)': 0.3 }, utilisation: 0.37 }));
  assert.equal(b.resource, 'cpu');
  assert.equal(b.stage, 'key derivation (workers)');
  assert.equal(b.share, 1);
  assert.match(b.why, /key derivation took 65\.0 s of worker time in a 22\.0 s run/);
  const r = restoreBound(report({ wall: 20, stages: { [STAGE.restoreExtract]: 0.2 }, workers: { 'derive+authenticate+decrypt (workers)': 30 }, utilisation: 0.19 }));
  assert.equal(r.resource, 'cpu');
});

test('an empty profile (a run that did nothing) still gets a verdict, with shares in 0-1', () => {
  for (const f of [backupBound, restoreBound, verifyBound]) {
    const b = f(report({ wall: 0 }));
    assert.ok(b.share >= 0 && b.share <= 1, `${b.resource} ${b.share}`);
  }
});
