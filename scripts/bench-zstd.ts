// zstd against gzip on the same bytes: 4 MiB blocks compressed through the real worker pool (gzip -6,
// zstd -1/-3/-6 where node:zlib has zstd), the streaming decoders restore uses, and the programs
// (`zstd -T1/-T<n>`, `gzip`) on the same data. MB/s per core = the 1-worker (1-thread) figure.
// Each figure is measured --reps times (default 3): the table gives the best and the spread.
// Usage: npm run build && node dist/scripts/bench-zstd.js [--reps N] [--quick] [--wait-quiet]
// Writes the section "## zstd and gzip, Node <major>" of BENCHMARKS.md (not with --quick).
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Transform } from 'node:stream';
import { SlotPool, type Slot } from '../src/main/pipeline/slot-pool.js';
import { WorkerPool } from '../src/main/pipeline/worker-pool.js';
import { blockBound, blockCodecAvailable, type BlockCodec } from '../src/workers/compress.js';
import { createInnerDecoder } from '../src/main/restore/stream/inner-decoder.js';
import { cpuTicks, foreignShare, generate, timeIt, waitQuiet } from './bench.js';
import { checkBenchArgs, writeSection } from './bench-report.js';

const MiB = 1024 * 1024;
const argv = process.argv.slice(2);
checkBenchArgs(argv, 'Usage: node dist/scripts/bench-zstd.js [--reps N] [--quick] [--wait-quiet]', ['--quick', '--wait-quiet'], { '--reps': 'count' });
const QUICK = argv.includes('--quick');
const repsArg = argv.indexOf('--reps');
const REPS = repsArg >= 0 ? Math.max(1, Number(argv[repsArg + 1])) : QUICK ? 1 : 3;
const TOTAL = (QUICK ? 16 : 100) * MiB;
const BLOCK = 4 * MiB;
const THREADS = Math.max(2, os.availableParallelism());
const MAJOR = process.versions.node.split('.')[0];
const SECTION = `## zstd and gzip, Node ${MAJOR} (node dist/scripts/bench-zstd.js)`;

/** Seconds of `reps` runs: best, worst. */
async function runs(fn: () => Promise<unknown>): Promise<{ best: number; worst: number }> {
  const t: number[] = [];
  for (let i = 0; i < REPS; i++) t.push(await timeIt(fn));
  return { best: Math.min(...t), worst: Math.max(...t) };
}

function program(cmd: string, args: string[], file: string): { best: number; worst: number } | null {
  const t: number[] = [];
  for (let i = 0; i < REPS; i++) {
    const t0 = process.hrtime.bigint();
    const r = spawnSync(cmd, [...args, file], { stdio: ['ignore', 'ignore', 'pipe'] });
    if (r.error || r.status !== 0) return null;
    t.push(Number(process.hrtime.bigint() - t0) / 1e9);
  }
  return { best: Math.min(...t), worst: Math.max(...t) };
}

/** Decode `input` with a streaming decoder on this thread (as restore does), output discarded. */
function decodeStream(d: Transform, input: Uint8Array): Promise<void> {
  return new Promise((resolve, reject) => {
    d.on('data', () => {});
    d.on('error', reject);
    d.on('end', resolve);
    for (let off = 0; off < input.length; off += MiB) d.write(input.subarray(off, off + MiB));
    d.end();
  });
}

/** `1.5.4` from `<cmd> --version`, or 'not installed'. */
function versionOf(cmd: string): string {
  const r = spawnSync(cmd, ['--version'], { encoding: 'utf8' });
  return /\d+\.\d+(\.\d+)?/.exec(r.stdout ?? '')?.[0] ?? 'not installed';
}

const mbs = (s: number): string => {
  const v = TOTAL / 1e6 / s;
  return v >= 100 ? v.toFixed(0) : v.toFixed(1);
};
const span = (r: { best: number; worst: number } | null): string => (r === null ? 'n/a' : `**${mbs(r.best)}** (${mbs(r.worst)})`);

async function main(): Promise<void> {
  if (argv.includes('--wait-quiet')) await waitQuiet();
  const started = Date.now();
  const ticks0 = cpuTicks();
  const bound = blockBound(BLOCK);
  const nBlocks = Math.ceil(TOTAL / BLOCK);
  const slots = new SlotPool({ slotBytes: Math.max(TOTAL, nBlocks * bound), slots: 2, name: 'bench' });
  const [data, out] = [await slots.acquire(), await slots.acquire()] as [Slot, Slot];
  const mix = generate(data.bytes.subarray(0, TOTAL));
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'qvmb-bench-zstd-'));
  const file = path.join(tmp, 'data.bin');
  fs.writeFileSync(file, data.bytes.subarray(0, TOTAL));
  const pools = [new WorkerPool({ threads: 1 }), new WorkerPool({ threads: THREADS })] as const;
  const lines: string[] = [];
  const inProcess = blockCodecAvailable('zstd');
  try {
    const codecs: Array<[BlockCodec, number]> = [['gzip', 6], ...(inProcess ? ([['zstd', 1], ['zstd', 3], ['zstd', 6]] as Array<[BlockCodec, number]>) : [])];
    // warm up every codec in every worker
    for (const p of pools) await Promise.all(codecs.flatMap(([codec, level]) => Array.from({ length: p.threads }, () => p.run('compressBlock', { codec, level, input: data.slice(0, 1 << 16), output: out.slice(0, bound) }))));
    lines.push(`| codec | ratio | 1 worker MB/s (per core) | ${THREADS} workers MB/s | program, 1 thread MB/s | program, ${THREADS} threads MB/s | decode, streaming on 1 thread, MB/s of output | program decode MB/s |`, '|---|---:|---:|---:|---:|---:|---:|---:|');
    for (const [codec, level] of codecs) {
      let sizes: number[] = [];
      const job = (p: WorkerPool) => async () => {
        const rs = await Promise.all(
          Array.from({ length: nBlocks }, (_, i) => p.run('compressBlock', { codec, level, input: data.slice(i * BLOCK, Math.min(BLOCK, TOTAL - i * BLOCK)), output: out.slice(i * bound, bound) })),
        );
        sizes = rs.map((r) => (r.ok ? r.length : Number.NaN));
      };
      const one = await runs(job(pools[0]));
      const all = await runs(job(pools[1]));
      const packed = Buffer.concat(sizes.map((n, i) => out.bytes.subarray(i * bound, i * bound + n)));
      const decode = await runs(() => decodeStream(createInnerDecoder(codec === 'gzip' ? { kind: 'gunzip' } : { kind: 'zstd' })!, packed));
      const packedFile = path.join(tmp, `data.${codec}`);
      fs.writeFileSync(packedFile, packed);
      const prog1 = codec === 'gzip' ? program('gzip', [`-${level}`, '-c'], file) : program('zstd', [`-${level}`, '-T1', '-q', '-c'], file);
      const progN = codec === 'gzip' ? null : program('zstd', [`-${level}`, `-T${THREADS}`, '-q', '-c'], file);
      const progD = program(codec, ['-d', '-q', '-c'], packedFile);
      const ratio = sizes.reduce((a, b) => a + b, 0) / TOTAL;
      lines.push(`| ${codec} -${level} | ${ratio.toFixed(3)} | ${span(one)} | ${span(all)} | ${span(prog1)} | ${codec === 'gzip' ? '–' : span(progN)} | ${span(decode)} | ${span(progD)} |`);
    }
    if (!inProcess) {
      // this runtime compresses zstd with the program only: its figures on the same data
      for (const level of [1, 3, 6]) {
        const p1 = program('zstd', [`-${level}`, '-T1', '-q', '-c'], file);
        const pN = program('zstd', [`-${level}`, `-T${THREADS}`, '-q', '-c'], file);
        const size = spawnSync('zstd', [`-${level}`, '-T1', '-q', '-c', file], { maxBuffer: 2 * TOTAL }).stdout.length;
        lines.push(`| zstd -${level} (program only) | ${(size / TOTAL).toFixed(3)} | n/a | n/a | ${span(p1)} | ${span(pN)} | n/a | – |`);
      }
    }
  } finally {
    await Promise.all(pools.map((p) => p.destroy()));
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  const foreign = foreignShare(ticks0, started);
  const pct = (x: number): string => `${((100 * x) / TOTAL).toFixed(0)} %`;
  const text = [
    SECTION,
    '',
    `Measured ${new Date().toISOString().slice(0, 10)} by \`node dist/scripts/bench-zstd.js --reps ${REPS}${QUICK ? ' --quick' : ''}\` on ${os.cpus()[0]?.model ?? 'unknown CPU'} ` +
      `(${os.availableParallelism()} cores), Node ${process.version} (node:zlib zstd: ${inProcess ? 'yes' : 'no'}), zstd ${versionOf('zstd')}, gzip ${versionOf('gzip')}. ` +
      `${TOTAL / MiB} MiB of generated VM-image-like data (zero runs ${pct(mix.zero)}, text-like ${pct(mix.text)}, random ${pct(mix.random)}) in ${BLOCK / MiB} MiB blocks, ` +
      `each an independent gzip member / zstd frame (level, content size, checksum), through the real worker pool; programs read the same bytes from /tmp (page cache) into /dev/null. ` +
      `MB = 10^6 bytes of uncompressed data; **best** of ${REPS} runs, the worst in parentheses. Ratio = compressed / uncompressed. ` +
      `The machine is shared: other processes used ${foreign === null ? 'an unknown share' : `${(100 * foreign).toFixed(0)} %`} of its CPU during the ${((Date.now() - started) / 1000).toFixed(0)} s run` +
      `${(foreign ?? 0) > 0.1 ? ' (BUSY: figures are lower bounds, the multi-worker ones most of all)' : ''}.`,
    '',
    ...lines,
    '',
  ].join('\n');
  console.log(text);
  if (QUICK) return;
  writeSection(SECTION, text);
}

main().catch((e: unknown) => {
  console.error(e);
  process.exitCode = 1;
});
