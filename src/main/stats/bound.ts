// Which resource bounded a run, read from its stage profile — so that a user can tell "my disk",
// "my CPU" or "my destination" without reading the table. A heuristic over shares of the wall time
// (the user's typing excluded), in a fixed order, each needing half the run or more: the
// destination (backup) or source (restore) that the run spent that long on; the workers when they
// were busy three quarters of their capacity, or when one kind of task (key derivation, say) ran
// that long; the main thread when its event loop was that busy; then the other side of the
// pipeline. When none did, `mixed`: nothing is blamed. Pure: it only reads the report.
import type { Bound, StageReport, StatsReport } from './report-types.js';

export type { Bound, BoundResource } from './report-types.js';

/** Stage names the verdict reads (the ones the runs record). */
export const STAGE = {
  backupWrite: 'write (sink)',
  backupWaitChunk: 'wait for the next chunk (writer)',
  backupCommit: 'commit (flush, fsync, rename)',
  backupSourceTar: 'tar -c (start to exit)',
  backupSourceInProcess: 'inner tar in-process (open to end)',
  backupCompressProgram: 'compression program (start to exit)',
  restoreRead: 'read (outer archive)',
  restoreSource: 'read from the source (file, pipe or command)',
  restoreWaitSlot: 'wait for a chunk slot (reader)',
  restoreExtract: 'decompress+extract (per chunk)',
  restoreFinish: 'extract: finish (flush, tar exit)',
  restoreImageWrite: 'write images (in-process; one write at a time per file)',
  restoreImageDrop: 'hand flushed image pages back (dd helper; beside the writes)',
  restoreImagePrefault: 'prepare image pages ahead (reads, libuv; beside the writes)',
  restoreInstall: 'install (all VMs)',
} as const;

/** A stage's active time over the wall time. */
function share(r: StatsReport, stage: string): number {
  const s = r.stages.find((x) => x.stage === stage);
  return s === undefined || r.wall_s <= 0 ? 0 : Math.min(1, s.active_s / r.wall_s);
}

/** The busiest stage done by the workers (their names end in "(workers)"). */
function heaviestWorkerStage(r: StatsReport): StageReport | undefined {
  return r.stages.filter((s) => s.stage.endsWith('(workers)')).sort((a, b) => b.busy_s - a.busy_s)[0];
}

const pct = (x: number): string => `${Math.round(100 * x)} %`;

/** Above this share of the wall time a wait or a stage is what bounded the run. */
const DOMINANT = 0.5;
/** Workers busy at least this share of their capacity: the CPU is the bound. */
const WORKERS_SATURATED = 0.75;
/** Main-thread event loop busy at least this share: the main thread is the bound. */
const MAIN_SATURATED = 0.85;

function cpuOrMain(r: StatsReport): Bound | undefined {
  const top = heaviestWorkerStage(r);
  const what = top === undefined ? 'worker tasks' : top.stage.replace(' (workers)', '');
  const threads = `${r.workers.threads} worker thread${r.workers.threads === 1 ? '' : 's'}`;
  if (r.workers.threads > 0 && r.workers.utilisation >= WORKERS_SATURATED) {
    return {
      resource: 'cpu',
      stage: top?.stage ?? 'workers',
      share: r.workers.utilisation,
      why: `the ${threads} were busy ${pct(r.workers.utilisation)} of the run, most of it in ${what}: more threads (--threads) or faster cores would help`,
    };
  }
  // fewer tasks at a time than threads (few chunks, or key derivations held by --max-memory): one
  // kind of task still ran most of the run
  const perWall = top === undefined || r.wall_s <= 0 ? 0 : top.busy_s / r.wall_s;
  if (top !== undefined && perWall >= DOMINANT) {
    return {
      resource: 'cpu',
      stage: top.stage,
      share: Math.min(1, perWall),
      why: `${what} took ${top.busy_s.toFixed(1)} s of worker time in a ${r.wall_s.toFixed(1)} s run (${perWall.toFixed(1)} of the ${threads} on average, ${top.count} tasks): their CPU cost bounded the run`,
    };
  }
  if (r.event_loop_utilisation >= MAIN_SATURATED) {
    return { resource: 'main thread', stage: 'event loop', share: r.event_loop_utilisation, why: `the main thread was busy ${pct(r.event_loop_utilisation)} of the run` };
  }
  return undefined;
}

/** No resource took half the run: name the longest of `stages`, blaming nothing. */
function mixed(r: StatsReport, stages: readonly string[]): Bound {
  const [stage, sh] = stages.map((st) => [st, share(r, st)] as const).sort((a, b) => b[1] - a[1])[0] ?? ['', 0];
  return {
    resource: 'mixed',
    stage,
    share: sh,
    why: `no one resource took half the run (the longest stage, ${stage}, ${pct(sh)}; workers busy ${pct(r.workers.utilisation)}, main thread ${pct(r.event_loop_utilisation)}): fixed costs such as start-up, key derivations and fsyncs weigh as much as the data`,
  };
}

/** The bound of a backup run. */
export function backupBound(r: StatsReport): Bound {
  const write = share(r, STAGE.backupWrite) + share(r, STAGE.backupCommit);
  if (write >= DOMINANT) {
    return { resource: 'destination', stage: STAGE.backupWrite, share: Math.min(1, write), why: `writing the archive to the destination took ${pct(write)} of the run: the destination (disk, network or command) accepted data slower than it was produced` };
  }
  const cpu = cpuOrMain(r);
  if (cpu) return cpu;
  const wait = share(r, STAGE.backupWaitChunk);
  const has = (stage: string): boolean => r.stages.some((s) => s.stage === stage);
  // a compression program (a process of its own: its CPU is in no worker's figures) feeds the chunks
  const program = has(STAGE.backupCompressProgram);
  const sourceStage = program ? STAGE.backupCompressProgram : has(STAGE.backupSourceInProcess) ? STAGE.backupSourceInProcess : STAGE.backupSourceTar;
  if (wait >= DOMINANT) {
    return {
      resource: 'source',
      stage: sourceStage,
      share: wait,
      why: `the writer waited ${pct(wait)} of the run for chunks while the workers were busy only ${pct(r.workers.utilisation)}: ${program ? 'the compression program (its own process, its CPU not in the workers\' figures) or reading the VM files' : 'reading the VM files (their disk)'} bounded the run`,
    };
  }
  return mixed(r, [STAGE.backupWrite, STAGE.backupWaitChunk, sourceStage, STAGE.backupCommit]);
}

/** The bound of a restore run. */
export function restoreBound(r: StatsReport): Bound {
  return restoreOrVerifyBound(r, false);
}

/** The bound of a --verify-only run (it writes nothing). */
export function verifyBound(r: StatsReport): Bound {
  return restoreOrVerifyBound(r, true);
}

function restoreOrVerifyBound(r: StatsReport, verify: boolean): Bound {
  // the source is read by the header phase and the data pass (STAGE.restoreRead is the latter's)
  const read = share(r, STAGE.restoreSource);
  if (read >= DOMINANT) {
    return { resource: 'source', stage: STAGE.restoreSource, share: read, why: `reading the archive took ${pct(read)} of the run: its disk, pipe or source command delivered data slower than it was restored` };
  }
  // the image writes are a serial stage beside the CPU work: with the workers not saturated, half
  // the run spent writing images is the disk (and the kernel filling the page cache)
  const imageWrites = share(r, STAGE.restoreImageWrite);
  if (imageWrites >= DOMINANT && r.workers.utilisation < WORKERS_SATURATED && !verify) {
    return {
      resource: 'destination',
      stage: STAGE.restoreImageWrite,
      share: imageWrites,
      why: `writing the VM images took ${pct(imageWrites)} of the run (a file takes one write at a time: the kernel copies it into the page cache, then the disk takes it) while the workers were busy ${pct(r.workers.utilisation)}: the qubes root's disk and memory bounded the run`,
    };
  }
  const cpu = cpuOrMain(r);
  if (cpu) return cpu;
  const write = Math.min(1, share(r, STAGE.restoreExtract) + share(r, STAGE.restoreFinish) + share(r, STAGE.restoreInstall));
  const waitSlot = share(r, STAGE.restoreWaitSlot);
  if (write >= DOMINANT && verify) {
    return {
      resource: 'cpu',
      stage: STAGE.restoreExtract,
      share: write,
      why: `decompressing and checking the inner archives (outside the worker pool) took ${pct(write)} of the run while the workers were busy only ${pct(r.workers.utilisation)}`,
    };
  }
  if (write >= DOMINANT) {
    return {
      resource: 'destination',
      stage: STAGE.restoreExtract,
      share: write,
      why: `extracting, writing and installing the files took ${pct(write)} of the run (the reader waited ${pct(waitSlot)} for free chunk slots) while the workers were busy only ${pct(r.workers.utilisation)}: writing to the qubes root's disk bounded the run`,
    };
  }
  return mixed(r, [STAGE.restoreSource, STAGE.restoreExtract, STAGE.restoreInstall, STAGE.restoreWaitSlot]);
}
