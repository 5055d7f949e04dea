// Many small VMs: qvm-backup / qvm-backup-restore on collections of N small VMs (the sample's five
// fixed VMs plus N-5 AppVMs; every image 8 MiB apparent, 1 MiB of VM-like data), side by side with
// the Qubes R4 steps done by stock tools per VM file (backup: `tar --sparse | gzip | split` into
// 100 MiB chunk files, `scrypt enc` per chunk, outer `tar --posix`; restore: `tar -i -x`, then per
// file `scrypt dec` per chunk `| gzip -d | tar -x`), format 4, gzip -6, at scrypt logN 14. Reports
// wall and CPU seconds (user + sys of every process) per VM, their slopes over N (least squares:
// the per-VM cost that stays when N grows) and, at logN 19, our wall time against the ideal
// (chunks × one derivation) / cores. Our own stage profile (--stats) of the largest N is shown.
// Usage: node dist/scripts/bench-many.js [--quick] [--counts 10,50,100,200] [--no-19] [--vms-19 N] [--firewall]
//   --quick: N = 10 and 50, no logN 19, printed only; otherwise the section of BENCHMARKS.md is
//   written (do it on a quiet machine). --firewall: every AppVM also has a firewall.xml (a small
//   inner archive each, as most Qubes VMs have; its own section, logN 14 only).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { makeSampleCollection } from './make-sample.js';
import { checkBenchArgs, writeSection } from './bench-report.js';

const MiB = 1024 * 1024;
const args = process.argv.slice(2);
checkBenchArgs(args, 'Usage: node dist/scripts/bench-many.js [--quick] [--counts 10,50,100,200] [--no-19] [--vms-19 N] [--firewall]', ['--quick', '--no-19', '--firewall'], { '--counts': 'counts', '--vms-19': 'count' });
const QUICK = args.includes('--quick');
const argOf = (name: string): string | undefined => (args.includes(name) ? args[args.indexOf(name) + 1] : undefined);
const COUNTS = (argOf('--counts') ?? (QUICK ? '10,50' : '10,50,100,200')).split(',').map(Number);
const FIREWALL = args.includes('--firewall');
const WITH_19 = !QUICK && !args.includes('--no-19') && !FIREWALL;
const VMS_19 = Number(argOf('--vms-19') ?? 20);
const CORES = availableParallelism();
const FIXED_VMS = 5; // the sample's template, sys-net, work, personal, vault
const SECTION = FIREWALL
  ? `## Many small VMs with a firewall.xml each, Node ${process.versions.node.split('.')[0]} (bench-many.js --firewall)`
  : `## Many small VMs, Node ${process.versions.node.split('.')[0]} (npm run bench)`;
const root = fileURLToPath(new URL('../../', import.meta.url));
const backupBin = join(root, 'bin/qvm-backup');
const restoreBin = join(root, 'bin/qvm-backup-restore');
const nodeOnPath = { PATH: `${dirname(process.execPath)}:${process.env['PATH'] ?? ''}` };
const PASS = 'bench passphrase';

// One logN 19 derivation, timed in a node started the way bin/qvm-backup starts ours (glibc's huge
// pages for large allocations: the tunable is read at process start, so not in this process). The
// ideal the logN 19 run is held against must be what one of our derivations costs, not a slower one.
function oneDerivation19(): number {
  const code = `const {scryptSync}=require('node:crypto');const t=process.hrtime.bigint();scryptSync('x','y',64,{N:2**19,r:8,p:1,maxmem:${600 * MiB}});process.stdout.write(String(Number(process.hrtime.bigint()-t)/1e9));`;
  const tunables = [process.env.GLIBC_TUNABLES, 'glibc.malloc.hugetlb=1'].filter(Boolean).join(':');
  const r = spawnSync(process.execPath, ['-e', code], { encoding: 'utf8', env: { ...process.env, GLIBC_TUNABLES: tunables } });
  const s = Number(r.stdout);
  if (r.status !== 0 || !(s > 0)) throw new Error(`timing one logN 19 derivation failed: ${r.stderr}`);
  return s;
}

/** CPU seconds of the waited-for children of this process so far (utime + stime, /proc/self/stat). */
function childrenCpu(): number {
  const stat = readFileSync('/proc/self/stat', 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[13]) + Number(f[14])) / 100;
}

interface Run {
  wall: number;
  cpu: number;
  stats?: Record<string, unknown>;
}

function once(cmd: string, argv: string[], env: NodeJS.ProcessEnv = {}): Run {
  const c0 = childrenCpu();
  const t0 = process.hrtime.bigint();
  const r = spawnSync(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env }, maxBuffer: 256 * MiB });
  const wall = Number(process.hrtime.bigint() - t0) / 1e9;
  if (r.status !== 0) throw new Error(`${cmd} ${argv.slice(0, 3).join(' ')}… failed (${r.status}): ${r.stderr?.toString().slice(-2000)}`);
  const summary = r.stdout.toString().split('\n').filter((l) => l.includes('"summary"')).pop();
  const stats = summary ? (JSON.parse(summary) as { stats?: Record<string, unknown> }).stats : undefined;
  return { wall, cpu: childrenCpu() - c0, ...(stats ? { stats } : {}) };
}

/** The reference writer: every VM file through its own tar | gzip | split and `scrypt enc` per chunk. */
const REF_BACKUP = `
set -euo pipefail
q=$1; out=$2; pass=$3; logn=$4; work=$5; list=$6
mkdir -p "$work"
printf 'version=4\\nencrypted=True\\ncompressed=True\\ncompression-filter=gzip\\nhmac-algorithm=scrypt\\nbackup-id=20260101T000000-1\\n' > "$work/backup-header"
echo "backup-header!$pass" | scrypt enc -P --logN "$logn" -r 8 -p 1 "$work/backup-header" "$work/backup-header.hmac"
tar -Pc -C "$q" qubes.xml | gzip | split --numeric-suffixes --suffix-length=3 --bytes=104857600 - "$work/qubes.xml."
echo "x!qubes.xml.000!$pass" | scrypt enc -P --logN "$logn" -r 8 -p 1 "$work/qubes.xml.000" "$work/qubes.xml.000.enc"
(cd "$work" && tar -cO --posix backup-header && tar -cO --posix backup-header.hmac && tar -cO --posix qubes.xml.000.enc) > "$out"
while read -r dir name sub; do
  mkdir -p "$work/$sub"
  tar -Pc --sparse -C "$dir" --xform "s:^$name:$sub$name:" "$name" | gzip | split --numeric-suffixes --suffix-length=3 --bytes=104857600 - "$work/$sub$name."
  for c in "$work/$sub$name".[0-9][0-9][0-9]; do
    echo "x!\${c#$work/}!$pass" | scrypt enc -P --logN "$logn" -r 8 -p 1 "$c" "$c.enc"
    rm "$c"
  done
  (cd "$work" && for c in $(ls "$sub$name".*.enc | sort -V); do tar -cO --posix "$c"; rm "$c"; done) >> "$out"
done < "$list"
`;
const REF_RESTORE = `
set -euo pipefail
archive=$1; pass=$2; out=$3; work=$4
mkdir -p "$work" "$out"
tar -i -xf "$archive" -C "$work"
echo "backup-header!$pass" | scrypt dec -P "$work/backup-header.hmac" > /dev/null
echo "x!qubes.xml.000!$pass" | scrypt dec -P "$work/qubes.xml.000.enc" | gzip -d | tar -x -C "$out"
cd "$work"
for first in vm*/*.000.enc; do
  base=\${first%.000.enc}
  for c in $(ls "$base".*.enc | sort -V); do echo "x!\${c%.enc}!$pass" | scrypt dec -P "$c"; done | gzip -d | tar -x -C "$out"
done
`;

interface Point {
  vms: number;
  ours: { backup: Run; restore: Run };
  ref: { backup: Run; restore: Run };
}

/** A collection of `vms` small VMs in `dir`; returns its qubes root and the reference's file list. */
function collection(dir: string, vms: number): { q: string; home: string; list: string } {
  const q = join(dir, 'qubes');
  const home = join(dir, 'home', 'user');
  makeSampleCollection({ root: q, home, bigImageBytes: 8 * MiB, bigDataBytes: MiB, smallImageBytes: 8 * MiB, smallDataBytes: MiB, manyAppVms: { count: vms - FIXED_VMS, imageBytes: 8 * MiB, dataBytes: MiB } });
  rmSync(join(q, 'appvms/work/notes.txt'));
  // with --firewall, every AppVM gets the sample's (work's) firewall.xml
  if (FIREWALL) {
    const firewall = readFileSync(join(q, 'appvms/work/firewall.xml'));
    for (const vm of readdirSync(join(q, 'appvms'))) writeFileSync(join(q, 'appvms', vm, 'firewall.xml'), firewall);
  } else rmSync(join(q, 'appvms/work/firewall.xml'));
  // the files a format 4 backup holds, as `dir name vmN/` lines (qids from the sample's qubes.xml)
  const xml = readFileSync(join(q, 'qubes.xml'), 'utf8');
  const lines: string[] = [];
  for (const m of xml.matchAll(/<property name="name">([^<]+)<\/property>[\s\S]*?<property name="qid">(\d+)<\/property>/g)) {
    const [, name, qid] = m;
    const d = existsSync(join(q, 'vm-templates', name!)) ? join(q, 'vm-templates', name!) : join(q, 'appvms', name!);
    for (const f of readdirSync(d).filter((x) => x.endsWith('.img') || x === 'firewall.xml').sort()) lines.push(`${d} ${f} vm${qid}/`);
  }
  const list = join(dir, 'files.txt');
  writeFileSync(list, lines.join('\n') + '\n');
  return { q, home, list };
}

function measure(work: string, vms: number, logN: number, withRef: boolean): Point {
  const dir = join(work, `n${vms}`);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const { q, home, list } = collection(dir, vms);
  const pass = join(dir, 'pass');
  writeFileSync(pass, `${PASS}\n`);
  spawnSync('sh', ['-c', `cat "${q}"/*/*/*.img > /dev/null`]); // warm the page cache for both
  const archive = join(dir, 'ours.bin');
  const backup = once(backupBin, ['--json', '--stats', '-y', '-p', pass, '--qubes-root', q, '--dom0-home', home, '-x', 'dom0', '--scrypt-logn', String(logN), archive], nodeOnPath);
  const host = join(dir, 'host');
  mkdirSync(join(dir, 'hh', 'user'), { recursive: true });
  const restore = once(restoreBin, ['--json', '--stats', '-y', '-p', pass, '--qubes-root', host, '--dom0-home', join(dir, 'hh', 'user'), '--ignore-missing', archive], nodeOnPath);
  const installed = readdirSync(join(host, 'appvms')).length + readdirSync(join(host, 'vm-templates')).length;
  if (installed !== vms) throw new Error(`restored ${installed} VMs, expected ${vms}`);
  let ref = { backup: { wall: 0, cpu: 0 }, restore: { wall: 0, cpu: 0 } };
  if (withRef) {
    const refArchive = join(dir, 'ref.bin');
    const rb = once('bash', ['-c', REF_BACKUP, 'ref', q, refArchive, PASS, String(logN), join(dir, 'ref-tmp'), list]);
    const rr = once('bash', ['-c', REF_RESTORE, 'ref', refArchive, PASS, join(dir, 'ref-out'), join(dir, 'ref-rtmp')]);
    ref = { backup: rb, restore: rr };
  }
  rmSync(dir, { recursive: true, force: true });
  return { vms, ours: { backup, restore }, ref };
}

/** Least-squares slope of y over x. */
function slope(xs: number[], ys: number[]): number {
  const n = xs.length;
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let num = 0;
  let den = 0;
  for (let i = 0; i < n; i++) {
    num += (xs[i]! - mx) * (ys[i]! - my);
    den += (xs[i]! - mx) ** 2;
  }
  return den === 0 ? Number.NaN : num / den;
}

const f2 = (x: number): string => x.toFixed(2);
const ms = (x: number): string => `${(1000 * x).toFixed(0)} ms`;

function main(): void {
  if (spawnSync('sh', ['-c', 'command -v scrypt']).status !== 0) {
    console.error('bench-many: the scrypt CLI is needed for the reference pipeline (apt-get install scrypt)');
    process.exit(2);
  }
  const work = join(tmpdir(), `qvmb-bench-many-${process.pid}`);
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });
  const loadBefore = loadavg()[0]!;
  const lines: string[] = [];
  try {
    const points = COUNTS.map((n) => measure(work, n, 14, true));
    lines.push('| VMs | backup ours | backup reference | speedup | restore ours | restore reference | speedup |', '|---:|---:|---:|---:|---:|---:|---:|');
    const cell = (r: Run, n: number): string => `${f2(r.wall)} s, ${f2(r.cpu)} CPU-s (${ms(r.wall / n)}, ${ms(r.cpu / n)} CPU /VM)`;
    for (const p of points) {
      lines.push(`| ${p.vms} | ${cell(p.ours.backup, p.vms)} | ${cell(p.ref.backup, p.vms)} | **${f2(p.ref.backup.wall / p.ours.backup.wall)}×** | ${cell(p.ours.restore, p.vms)} | ${cell(p.ref.restore, p.vms)} | **${f2(p.ref.restore.wall / p.ours.restore.wall)}×** |`);
    }
    const xs = points.map((p) => p.vms);
    const sl = (get: (p: Point) => number): string => ms(slope(xs, points.map(get)));
    lines.push('', `Slope over ${xs.join(', ')} VMs (least squares, per added VM): backup ours ${sl((p) => p.ours.backup.wall)} wall / ${sl((p) => p.ours.backup.cpu)} CPU, reference ${sl((p) => p.ref.backup.wall)} / ${sl((p) => p.ref.backup.cpu)}; restore ours ${sl((p) => p.ours.restore.wall)} / ${sl((p) => p.ours.restore.cpu)}, reference ${sl((p) => p.ref.restore.wall)} / ${sl((p) => p.ref.restore.cpu)}.`);
    const last = points[points.length - 1]!;
    lines.push('', `Stage profile of our run at ${last.vms} VMs (\`--stats\`): backup ${JSON.stringify(last.ours.backup.stats)}; restore ${JSON.stringify(last.ours.restore.stats)}`);
    if (WITH_19) {
      const one = oneDerivation19();
      const p19 = measure(work, VMS_19, 19, false);
      const chunks = VMS_19 + 1 + 2; // one chunk per image (the template has two), qubes.xml, the header
      const ideal = (chunks * one) / CORES;
      lines.push('', `logN 19, ${VMS_19} VMs (${chunks} derivations each way, one derivation ${f2(one)} s in a node started as the launchers start ours, with glibc's huge pages for large allocations): backup ${f2(p19.ours.backup.wall)} s, restore ${f2(p19.ours.restore.wall)} s; ideal (derivations × ${f2(one)} s) / ${CORES} cores = ${f2(ideal)} s: backup at ${f2(p19.ours.backup.wall / ideal)}×, restore at ${f2(p19.ours.restore.wall / ideal)}× of it.`);
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  const loadAfter = loadavg()[0]!;
  const text = [
    SECTION,
    '',
    `Measured ${new Date().toISOString().slice(0, 10)} by \`node dist/scripts/bench-many.js${args.length ? ' ' + args.join(' ') : ''}\` on ${cpus()[0]?.model ?? 'unknown CPU'} (${CORES} cores), Node ${process.version}. N VMs = the sample's template (two images), NetVM and three AppVMs plus N-5 small AppVMs, every image 8 MiB apparent with 1 MiB of VM-like data${FIREWALL ? ', every AppVM with a copy of the work VM firewall.xml (an inner archive of its own)' : ''}; the dom0 home left out (\`-x dom0\`) so both sides hold the same files. Format 4, gzip -6, scrypt logN 14 (r 8, p 1). Reference = the Qubes R4 steps with stock tools per VM file (\`tar --sparse | gzip | split\`, \`scrypt enc\` per chunk, outer \`tar --posix\`; restore \`tar -i -x\`, \`scrypt dec | gzip -d | tar -x\` per file). CPU = user + sys of every process of the run. 1-minute load average ${loadBefore.toFixed(1)} before, ${loadAfter.toFixed(1)} after.`,
    '',
    ...lines,
    '',
  ].join('\n');
  console.log(text);
  if (!QUICK) writeSection(SECTION, text);
}

main();
