// Whole-backup and whole-restore benchmark: qvm-backup / qvm-backup-restore (format 4, gzip-6,
// 100 MiB chunks) against a reference pipeline built from the stock tools the way Qubes R4 runs them
// (tar --sparse | gzip | 100 MiB chunk files in a temp dir, one `scrypt enc` per chunk, one after the
// other; restore: `scrypt dec` per chunk | gzip -d | tar -x), on the same sample image in the same
// run, at scrypt logN 14 (the KDF does not hide the rest) and 19 (the default). The commands of one
// comparison run in turns; for each: the median wall time of the repeats and their range (an even
// number of rounds: the mean of the two middle runs' wall times, the other columns those of the
// slower of them — bench-median.ts),
// CPU-seconds per GB (the children's user+sys), peak RSS,
// and a ceiling = our CPU time spread over all cores (the smaller of the --threads 1 run's and the run's
// own), for a restore at least its serial image writes (efficiency = ceiling / achieved).
// Writes the "## Whole backup and restore" section of BENCHMARKS.md.
// --restore-only: only the restore comparison at logN 14 (5 rounds), in a section of its own.
// Usage: node dist/scripts/bench-backup.js [--data-mib N] [--repeat N] [--no-19] [--quick] [--restore-only]
import { spawnSync } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync, readFileSync, statSync } from 'node:fs';
import { tmpdir, availableParallelism, cpus, loadavg, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { makeSampleCollection } from './make-sample.js';
import { blockCodecAvailable } from '../src/workers/compress.js';
import { defaultMaxMemory } from '../src/main/pipeline/memory-default.js';
import { defaultRestoreMaxMemory } from '../src/main/restore/settings.js';
import { checkBenchArgs, writeSection } from './bench-report.js';
import { medianRun } from './bench-median.js';
import { STAGE } from '../src/main/stats/bound.js';
import type { StatsReport } from '../src/main/stats/report-types.js';

const MiB = 1024 * 1024;
const args = process.argv.slice(2);
checkBenchArgs(args, 'Usage: node dist/scripts/bench-backup.js [--data-mib N] [--repeat N] [--no-19] [--quick] [--restore-only]', ['--no-19', '--quick', '--restore-only'], { '--data-mib': 'count', '--repeat': 'count' });
const QUICK = args.includes('--quick');
const RESTORE_ONLY = args.includes('--restore-only');
const dataArg = args.indexOf('--data-mib');
const DATA_MIB = dataArg >= 0 ? Number(args[dataArg + 1]) : QUICK ? 64 : 1024;
const REPEAT = args.includes('--repeat') ? Number(args[args.indexOf('--repeat') + 1]) : QUICK ? 1 : RESTORE_ONLY ? 5 : 3;
const LOGNS = QUICK || RESTORE_ONLY || args.includes('--no-19') ? [14] : [14, 19];
const CORES = availableParallelism();
const MAJOR = process.versions.node.split('.')[0];
const SECTION = RESTORE_ONLY ? `## One image's restore against its ceiling, Node ${MAJOR} (bench-backup.js --restore-only)` : `## Whole backup and restore, Node ${MAJOR} (npm run bench)`;
const root = fileURLToPath(new URL('../../', import.meta.url));
// the installed commands (launchers that exec node with huge pages on), with this node on PATH
const backupBin = join(root, 'bin/qvm-backup');
const restoreBin = join(root, 'bin/qvm-backup-restore');
const nodeOnPath = { PATH: `${dirname(process.execPath)}:${process.env['PATH'] ?? ''}` };

/** CPU seconds of the waited-for children of this process so far (utime + stime, /proc/self/stat). */
function childrenCpu(): number {
  const stat = readFileSync('/proc/self/stat', 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[13]) + Number(f[14])) / 100; // cutime, cstime in clock ticks (CLK_TCK 100)
}

interface Run {
  wall: number;
  cpu: number;
  rss: number;
  /** a restore's slowest serial stage (its VM image writes: one at a time per file), from its profile */
  serial: number;
}

/** Read `files` into the page cache (the inputs a run reads: the image a backup reads, the archive
 *  a restore reads). The bench's data is meant to be in the page cache for every run, ours and the
 *  reference's alike; on a machine that takes cold page-cache pages back (this VM's DAMON pageout:
 *  the 424 MB bench archive had 156 MiB left cached 45 s after a restore read it) a run would otherwise read part of its input
 *  from the disk, a cost the CPU ceiling does not count and that differs from run to run. */
function warm(files: readonly string[]): void {
  if (files.length === 0) return;
  const r = spawnSync('cat', [...files], { stdio: ['ignore', 'ignore', 'pipe'] });
  if (r.status !== 0) throw new Error(`cannot read ${files.join(' ')} into the page cache: ${r.error?.message ?? r.stderr.toString().trim()}`);
}

/** Run a command once: wall seconds, children's CPU seconds, peak RSS from our JSON summary. */
function once({ cmd, argv, env = {}, before, input = [] }: Spec): Run {
  before?.();
  warm(input);
  // the previous run's dirty pages (the reference never flushes its output) are written back
  // before this run starts, not during it
  spawnSync('sync');
  const c0 = childrenCpu();
  const t0 = process.hrtime.bigint();
  const r = spawnSync(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env }, maxBuffer: 64 * MiB });
  const wall = Number(process.hrtime.bigint() - t0) / 1e9;
  if (r.status !== 0) throw new Error(`${cmd} ${argv.join(' ')} failed (${r.status}): ${r.stderr?.toString().slice(-2000)}`);
  const summary = r.stdout.toString().split('\n').filter((l) => l.includes('"summary"')).pop();
  const parsed = summary ? (JSON.parse(summary) as { max_rss_bytes?: number; stats?: StatsReport }) : {};
  const writes = parsed.stats?.stages.find((x) => x.stage === STAGE.restoreImageWrite)?.busy_s ?? 0;
  return { wall, cpu: childrenCpu() - c0, rss: parsed.max_rss_bytes ?? 0, serial: writes };
}

/** One run of `sp` (it makes the archive the restores read), as a Measured of that run. */
function onceOf(sp: Spec): Measured {
  const r = once(sp);
  return { ...r, min: r.wall, max: r.wall };
}

interface Spec {
  cmd: string;
  argv: string[];
  env?: NodeJS.ProcessEnv;
  before?: () => void;
  /** what the run reads, read into the page cache before it (warm) */
  input?: readonly string[];
}

/**
 * Run the commands of one comparison in turns, REPEAT rounds (ours, the reference, ours, …), so that a
 * change of the machine's state during the bench (page cache, the VM's free memory handed back to the
 * host, other load) falls on all of them alike; each gets its median (medianRun) and the range of
 * its wall times.
 */
function together(specs: Spec[]): Measured[] {
  const runs: Run[][] = specs.map(() => []);
  for (let i = 0; i < REPEAT; i++) specs.forEach((sp, k) => runs[k]!.push(once(sp)));
  return runs.map((rs) => medianRun(rs));
}

/** The reference: Qubes R4's writer and reader steps with stock tools, sequential, chunk files on disk. */
const REF_BACKUP = `
set -euo pipefail
dir=$1; name=$2; sub=$3; out=$4; pass=$5; logn=$6; work=$7; xml=$8; filter=$9
mkdir -p "$work/$sub"
# the header, its scrypt copy and qubes.xml cost one key derivation each, as in a real backup
printf 'version=4\\nencrypted=True\\ncompressed=True\\ncompression-filter=%s\\nhmac-algorithm=scrypt\\nbackup-id=20260101T000000-1\\n' "$filter" > "$work/backup-header"
echo "backup-header!$pass" | scrypt enc -P --logN "$logn" -r 8 -p 1 "$work/backup-header" "$work/backup-header.hmac"
tar -Pc -C "$(dirname "$xml")" qubes.xml | $filter | split --numeric-suffixes --suffix-length=3 --bytes=104857600 - "$work/qubes.xml."
echo "x!qubes.xml.000!$pass" | scrypt enc -P --logN "$logn" -r 8 -p 1 "$work/qubes.xml.000" "$work/qubes.xml.000.enc"
(cd "$work" && tar -cO --posix backup-header && tar -cO --posix backup-header.hmac && tar -cO --posix qubes.xml.000.enc) > "$out"
tar -Pc --sparse -C "$dir" --xform "s:^$name:$sub$name:" "$name" | $filter | split --numeric-suffixes --suffix-length=3 --bytes=104857600 - "$work/$sub$name."
for c in "$work/$sub$name".[0-9][0-9][0-9]; do
  echo "$pass" | scrypt enc -P --logN "$logn" -r 8 -p 1 "$c" "$c.enc"
  rm "$c"
done
(cd "$work" && for c in $(ls "$sub$name".*.enc | sort -V); do tar -cO --posix "$c"; rm "$c"; done) >> "$out"
`;
const REF_RESTORE = `
set -euo pipefail
archive=$1; pass=$2; out=$3; work=$4; filter=$5
mkdir -p "$work" "$out"
tar -i -xf "$archive" -C "$work"
echo "backup-header!$pass" | scrypt dec -P "$work/backup-header.hmac" > /dev/null
echo "x!qubes.xml.000!$pass" | scrypt dec -P "$work/qubes.xml.000.enc" | $filter -d | tar -x -C "$out"
find "$work" -name 'private.img.*.enc' | sort -V | while read -r f; do echo "$pass" | scrypt dec -P "$f"; done | $filter -d | tar -x -C "$out"
`;

type Measured = Run & { min: number; max: number };

function cell(r: Measured, mb: number): string {
  return `${r.wall.toFixed(1)} s (${r.min.toFixed(1)}–${r.max.toFixed(1)}; ${(mb / r.wall).toFixed(0)} MB/s, ${(r.cpu / (mb / 1000)).toFixed(1)} CPU-s/GB${r.rss ? `, ${Math.round(r.rss / MiB)} MiB RSS` : ''})`;
}

/** Peak RSS of each of our runs, by operation and logN, against the issue's bound (see the text). */
const peaks: Array<{ op: 'backup' | 'restore'; logN: number; rss: number }> = [];

/** The same work perfectly parallel: the smaller CPU time of the one-thread run and of the run itself
 *  (the one-thread run can do more: a streaming gunzip, more fresh pages), over the cores. */
function spread(one: Measured, all: Measured): number {
  return Math.min(one.cpu, all.cpu) / CORES;
}

function row(name: string, ours: Measured, ref: Measured, mb: number, ceiling?: number): string {
  const m = /^(backup|restore)\b.*?logN (\d+)/.exec(name);
  if (m && ours.rss > 0) peaks.push({ op: m[1] as 'backup' | 'restore', logN: Number(m[2]), rss: ours.rss });
  const eff = ceiling !== undefined ? ` | ${ceiling.toFixed(1)} s | ${((100 * ceiling) / ours.wall).toFixed(0)} %` : ' | – | –';
  return `| ${name} | ${cell(ours, mb)} | ${cell(ref, mb)} | **${(ref.wall / ours.wall).toFixed(2)}×**${eff} |`;
}

function main(): void {
  if (spawnSync('sh', ['-c', 'command -v scrypt']).status !== 0) {
    console.error('bench-backup: the scrypt CLI is needed for the reference pipeline (apt-get install scrypt)');
    process.exit(2);
  }
  const work = join(tmpdir(), `qvmb-bench-${process.pid}`);
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });
  try {
    const q = join(work, 'qubes');
    const home = join(work, 'home', 'user');
    makeSampleCollection({ root: q, home, bigImageBytes: 4 * DATA_MIB * MiB, bigDataBytes: DATA_MIB * MiB, smallImageBytes: 8 * MiB, smallDataBytes: 64 * 1024 });
    const img = join(q, 'appvms/work/private.img');
    // the VM holds just its private image, so both sides process the same files
    rmSync(join(q, 'appvms/work/firewall.xml'));
    rmSync(join(q, 'appvms/work/notes.txt'));
    const dataBytes = statSync(img).blocks * 512;
    const mb = dataBytes / 1e6;
    const pass = join(work, 'pass');
    writeFileSync(pass, 'bench passphrase\n');
    spawnSync('cat', [img], { stdio: ['ignore', 'ignore', 'ignore'] }); // warm the page cache for both
    const loadBefore = loadavg()[0]!;
    const host = join(work, 'host');
    const freshHost = (): void => {
      rmSync(host, { recursive: true, force: true });
      rmSync(join(work, 'hh'), { recursive: true, force: true });
      mkdirSync(join(work, 'hh', 'user'), { recursive: true });
    };
    const refOut = join(work, 'ref-out');
    const freshRef = (): void => {
      rmSync(refOut, { recursive: true, force: true });
      rmSync(join(work, 'ref-rtmp'), { recursive: true, force: true });
    };
    const table: string[] = [];
    let same = true;
    const sizes: string[] = [];
    const serials: string[] = [];
    let refGzip14: Measured | undefined;
    for (const logN of LOGNS) {
      const oursArchive = join(work, `ours-${logN}.bin`);
      const backupArgs = (threads: number) => ['--json', '-y', '-p', pass, '--qubes-root', q, '--dom0-home', home, '--scrypt-logn', String(logN), '--threads', String(threads), oursArchive, 'work'];
      const rmArchive = (): void => rmSync(oursArchive, { force: true });
      const refArchive = join(work, `ref-${logN}.bin`);
      const ours = (threads: number, env: NodeJS.ProcessEnv = {}): Spec => ({ cmd: backupBin, argv: backupArgs(threads), env: { ...nodeOnPath, ...env }, before: rmArchive, input: [img] });
      const refBackup: Spec = { cmd: 'bash', argv: ['-c', REF_BACKUP, 'ref', join(q, 'appvms/work'), 'private.img', 'vm3/', refArchive, 'bench passphrase', String(logN), join(work, 'ref-tmp'), join(q, 'qubes.xml'), 'gzip'], before: () => rmSync(join(work, 'ref-tmp'), { recursive: true, force: true }), input: [img] };
      // the last of ours in a round (threads = cores, in-process) leaves the archive restored below
      // at logN 19 also ours with each scrypt engine fixed (QVMB_KDF=openssl, =wasm; the default
      // takes each worker's measured faster one), in the same rounds
      const opensslKdf = { QVMB_KDF: 'openssl' };
      const wasmKdf = { QVMB_KDF: 'wasm' };
      const bm = RESTORE_ONLY ? [ours(CORES), refBackup].map(onceOf) : together(logN === 14 ? [ours(1), ours(CORES, { QVMB_INNER_TAR: 'tar' }), ours(CORES), refBackup] : [ours(CORES, opensslKdf), ours(CORES, wasmKdf), ours(CORES), refBackup]);
      const [b, refB] = [bm.at(-2)!, bm.at(-1)!];
      const [b1, bTar] = logN === 14 && !RESTORE_ONLY ? bm : [];
      const [bOpenssl, bWasm] = logN !== 14 && !RESTORE_ONLY ? bm : [];
      const restoreArgs = (threads: number) => ['--json', '-y', '-p', pass, '--qubes-root', host, '--dom0-home', join(work, 'hh', 'user'), '--ignore-missing', '--threads', String(threads), oursArchive];
      const oursR = (threads: number, env: NodeJS.ProcessEnv = {}): Spec => ({ cmd: restoreBin, argv: restoreArgs(threads), env: { ...nodeOnPath, ...env }, before: freshHost, input: [oursArchive] });
      const refRestore: Spec = { cmd: 'bash', argv: ['-c', REF_RESTORE, 'ref', refArchive, 'bench passphrase', refOut, join(work, 'ref-rtmp'), 'gzip'], before: freshRef, input: [refArchive] };
      // --restore-only also runs ours keeping the image's pages (prepared ahead instead: the default
      // before drop-behind), in the same rounds
      const noDrop = RESTORE_ONLY ? [oursR(CORES, { QVMB_DROP_BEHIND: '0' })] : [];
      const rm = together(logN === 14 ? [oursR(1), oursR(CORES, { QVMB_IMAGE_EXTRACTION: 'tar' }), ...noDrop, oursR(CORES), refRestore] : [oursR(CORES, opensslKdf), oursR(CORES, wasmKdf), oursR(CORES), refRestore]);
      const [r, refR] = [rm.at(-2)!, rm.at(-1)!];
      const [r1, rTar, rNoDrop] = logN === 14 ? rm : [];
      const [rOpenssl, rWasm] = logN !== 14 ? rm : [];
      same &&= spawnSync('cmp', [img, join(host, 'appvms/work/private.img')]).status === 0;
      if (logN === 14) refGzip14 = refB;
      sizes.push(`logN ${logN}: ours ${(statSync(oursArchive).size / 1e6).toFixed(0)} MB, reference ${(statSync(refArchive).size / 1e6).toFixed(0)} MB`);
      if (b1) table.push(row(`backup, logN ${logN}, --threads 1`, b1, refB, mb));
      if (bTar) table.push(row(`backup, logN ${logN}, inner archives by GNU tar (QVMB_INNER_TAR=tar)`, bTar, refB, mb));
      if (bOpenssl) table.push(row(`backup, logN ${logN}, ${CORES} threads, scrypt by node:crypto only (QVMB_KDF=openssl)`, bOpenssl, refB, mb));
      if (bWasm) table.push(row(`backup, logN ${logN}, ${CORES} threads, scrypt by the WebAssembly module only (QVMB_KDF=wasm)`, bWasm, refB, mb));
      if (!RESTORE_ONLY) table.push(row(`backup, logN ${logN}, ${CORES} threads`, b, refB, mb, b1 ? spread(b1, b) : undefined));
      if (r1) table.push(row(`restore, logN ${logN}, --threads 1`, r1, refR, mb));
      if (rTar) table.push(row(`restore, logN ${logN}, images by GNU tar (QVMB_IMAGE_EXTRACTION=tar)`, rTar, refR, mb));
      if (RESTORE_ONLY && rNoDrop) table.push(row(`restore, logN ${logN}, ${CORES} threads, image pages kept in the page cache, prepared ahead (QVMB_DROP_BEHIND=0)`, rNoDrop, refR, mb));
      if (rOpenssl) table.push(row(`restore, logN ${logN}, ${CORES} threads, scrypt by node:crypto only (QVMB_KDF=openssl)`, rOpenssl, refR, mb));
      if (rWasm) table.push(row(`restore, logN ${logN}, ${CORES} threads, scrypt by the WebAssembly module only (QVMB_KDF=wasm)`, rWasm, refR, mb));
      // the issue's ceiling: the work spread over the cores, or the slowest serial stage
      if (r1) serials.push(`logN ${logN}: ${spread(r1, r).toFixed(1)} s of CPU per core, image writes ${r.serial.toFixed(1)} s`);
      table.push(row(`restore, logN ${logN}, ${CORES} threads`, r, refR, mb, r1 ? Math.max(spread(r1, r), r.serial) : undefined));
      rmSync(refArchive, { force: true });
      rmSync(oursArchive, { force: true });
    }
    // -Z zstd at logN 14: ours (in the workers where node:zlib has zstd, else the zstd program run
    // by tar) against the reference writer with its gzip default and with zstd as its filter
    const zstdEngine = blockCodecAvailable('zstd') ? 'zstd -3 in the workers (node:zlib)' : `zstd -3 -T${CORES} program (no zstd in this node:zlib)`;
    if (!RESTORE_ONLY) {
      const oursArchive = join(work, 'ours-zstd.bin');
      const rmArchive = (): void => rmSync(oursArchive, { force: true });
      const backupArgs = (threads: number) => ['--json', '-y', '-p', pass, '--qubes-root', q, '--dom0-home', home, '--scrypt-logn', '14', '-Z', 'zstd', '--threads', String(threads), oursArchive, 'work'];
      const refArchive = join(work, 'ref-zstd.bin');
      const ours = (threads: number): Spec => ({ cmd: backupBin, argv: backupArgs(threads), env: nodeOnPath, before: rmArchive, input: [img] });
      const [b1, b, refB] = together([ours(1), ours(CORES), { cmd: 'bash', argv: ['-c', REF_BACKUP, 'ref', join(q, 'appvms/work'), 'private.img', 'vm3/', refArchive, 'bench passphrase', '14', join(work, 'ref-tmp'), join(q, 'qubes.xml'), 'zstd'], before: () => rmSync(join(work, 'ref-tmp'), { recursive: true, force: true }), input: [img] }]) as [Measured, Measured, Measured];
      const [r, refR] = together([
        { cmd: restoreBin, argv: ['--json', '-y', '-p', pass, '--qubes-root', host, '--dom0-home', join(work, 'hh', 'user'), '--ignore-missing', oursArchive], env: nodeOnPath, before: freshHost, input: [oursArchive] },
        { cmd: 'bash', argv: ['-c', REF_RESTORE, 'ref', refArchive, 'bench passphrase', refOut, join(work, 'ref-rtmp'), 'zstd'], before: freshRef, input: [refArchive] },
      ]) as [Measured, Measured];
      same &&= spawnSync('cmp', [img, join(host, 'appvms/work/private.img')]).status === 0;
      sizes.push(`-Z zstd: ours ${(statSync(oursArchive).size / 1e6).toFixed(0)} MB, reference ${(statSync(refArchive).size / 1e6).toFixed(0)} MB`);
      table.push(row(`backup -Z zstd, logN 14, --threads 1, ${zstdEngine}; reference with zstd`, b1, refB, mb));
      table.push(row(`backup -Z zstd, logN 14, ${CORES} threads; reference with zstd`, b, refB, mb, spread(b1, b)));
      if (refGzip14) table.push(row(`backup -Z zstd, logN 14, ${CORES} threads; reference with its gzip default`, b, refGzip14, mb));
      table.push(row(`restore -Z zstd archive, logN 14, ${CORES} threads; reference with zstd -d`, r, refR, mb));
      rmSync(refArchive, { force: true });
      rmArchive();
    }

    if (!RESTORE_ONLY) {
      spawnSync('truncate', ['-s', '20G', img]);
      const oursArchive = join(work, 'ours-20g.bin');
      // its data is in the first 4 × DATA_MIB MiB, the original image (whose holes a read fills the
      // page cache with zeros for, as the cat at the start did; the 16 GiB hole after it is not
      // read): that part is read before each backup
      const warmData = (): void => {
        const r = spawnSync('sh', ['-c', 'head -c "$1" "$2" > /dev/null', 'warm', String(4 * DATA_MIB * MiB), img], { stdio: ['ignore', 'ignore', 'pipe'] });
        if (r.status !== 0) throw new Error(`cannot read ${img} into the page cache: ${r.stderr.toString().trim()}`);
      };
      const rmArchive = (): void => {
        rmSync(oursArchive, { force: true });
        warmData();
      };
      const backupArgs = ['--json', '-y', '-p', pass, '--qubes-root', q, '--dom0-home', home, '--scrypt-logn', '14', oursArchive, 'work'];
      const refArchive = join(work, 'ref-20g.bin');
      const [bTar, b, refB] = together([
        { cmd: backupBin, argv: backupArgs, env: { ...nodeOnPath, QVMB_INNER_TAR: 'tar' }, before: rmArchive },
        { cmd: backupBin, argv: backupArgs, env: nodeOnPath, before: rmArchive },
        { cmd: 'bash', argv: ['-c', REF_BACKUP, 'ref', join(q, 'appvms/work'), 'private.img', 'vm3/', refArchive, 'bench passphrase', '14', join(work, 'ref-tmp'), join(q, 'qubes.xml'), 'gzip'], before: () => (rmSync(join(work, 'ref-tmp'), { recursive: true, force: true }), warmData()) },
      ]) as [Measured, Measured, Measured];
      const [r, refR] = together([
        { cmd: restoreBin, argv: ['--json', '-y', '-p', pass, '--qubes-root', host, '--dom0-home', join(work, 'hh', 'user'), '--ignore-missing', oursArchive], env: nodeOnPath, before: freshHost, input: [oursArchive] },
        { cmd: 'bash', argv: ['-c', REF_RESTORE, 'ref', refArchive, 'bench passphrase', refOut, join(work, 'ref-rtmp'), 'gzip'], before: freshRef, input: [refArchive] },
      ]) as [Measured, Measured];
      same &&= spawnSync('cmp', [img, join(host, 'appvms/work/private.img')]).status === 0;
      table.push(row('backup, 20 GiB image (same data), logN 14, inner archives by GNU tar', bTar, refB, mb));
      table.push(row(`backup, 20 GiB image (same data), logN 14, ${CORES} threads`, b, refB, mb));
      table.push(row(`restore, 20 GiB image (same data), logN 14, ${CORES} threads`, r, refR, mb));
      rmSync(refArchive, { force: true });
      rmArchive();
    }
    const loadAfter = loadavg()[0]!;
    // the issue's bound: --max-memory (its default already holds one derivation per thread) + one
    // more derivation per thread + 200 MB
    const kdf = (logN: number): number => CORES * 128 * 8 * 2 ** logN;
    const boundOf = (op: 'backup' | 'restore', logN: number): number => (op === 'backup' ? defaultMaxMemory(CORES, logN, totalmem()) : defaultRestoreMaxMemory(CORES, totalmem())) + kdf(logN) + 200e6;
    const rssBounds = [...new Set(peaks.map((p) => `${p.op} ${p.logN}`))].map((k) => {
      const [op, n] = k.split(' ') as ['backup' | 'restore', string];
      const logN = Number(n);
      const highest = Math.max(...peaks.filter((p) => p.op === op && p.logN === logN).map((p) => p.rss));
      const bound = boundOf(op, logN);
      return `${op} logN ${logN}: highest ${Math.round(highest / MiB)} MiB of ${Math.round(bound / MiB)} MiB (${highest <= bound ? 'within' : 'OVER'})`;
    }).join('; ');
    const lines = [
      SECTION,
      '',
      ...(RESTORE_ONLY ? ['Only the restore comparison at logN 14 (`--restore-only`): each archive made once, then the restores in turns; the backup, zstd and 20 GiB rows (and what the text below says of them) are in the whole-run section.', ''] : []),
      `Measured ${new Date().toISOString().slice(0, 10)} by \`npm run bench\` (\`node dist/scripts/bench-backup.js${args.length ? ' ' + args.join(' ') : ''}\`) on ${cpus()[0]?.model ?? 'unknown CPU'} (${CORES} cores), Node ${process.version}. One VM image of ${4 * DATA_MIB} MiB apparent size holding ${DATA_MIB} MiB of VM-like data (text, zero runs, random; sparse), page cache warm (each run's input — the image, the archive — read just before it, ours and the reference's alike); the "20 GiB image" rows: the same image extended to 20 GiB with a hole. Format 4, gzip -6 (the \`-Z zstd\` rows: ${zstdEngine}, the reference then running \`zstd\` / \`zstd -d\` as its filter), 100 MiB chunks, both sides, scrypt r=8 p=1 at the logN shown. Reference = the Qubes R4 steps with stock tools: \`tar --sparse | gzip | split\` into chunk files, \`scrypt enc\` per chunk one after the other, outer \`tar --posix\`; restore = \`tar -i -x\`, \`scrypt dec\` per chunk \`| gzip -d | tar -x\`. MB/s are MB of image data (${mb.toFixed(0)} MB) per second; the commands of one comparison ran in turns, ${REPEAT} rounds: each cell is the median run${REPEAT % 2 === 0 ? ' (an even number of rounds: the mean wall time of the two middle runs, the other figures those of the slower of them)' : ''}, with the range of its wall times in brackets; CPU-s/GB counts every process of the run (user + sys). Ceiling = our CPU time divided by the ${CORES} cores (the same work perfectly parallel; the smaller of the \`--threads 1\` run's CPU time and the run's own, as the one-thread run can do more work) or, for a restore, the slowest serial stage if that is longer: the writes of the VM image, one at a time (the kernel serialises a file's writes), as the run's own profile timed them (${serials.join('; ')}); efficiency = ceiling / achieved. Archives: ${sizes.join('; ')}. Restored image identical: ${same ? 'yes' : 'NO'}. Peak RSS of our runs (from each run's own summary) against the bound --max-memory (its default) + one key derivation per thread + 200 MB: ${rssBounds}. 1-minute load average ${loadBefore.toFixed(1)} before, ${loadAfter.toFixed(1)} after.`,
      '',
      '| run | qvm-backup (this) | reference pipeline | speedup | ceiling | efficiency |',
      '|---|---:|---:|---:|---:|---:|',
      ...table,
      '',
    ];
    const text = lines.join('\n');
    console.log(text);
    if (!same) process.exitCode = 1;
    if (!QUICK) writeSection(SECTION, text);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

main();
