// Codec benchmark through the real worker pool on VM-image-like data in pre-touched SAB slots,
// compared in the same run with the reference CLIs (gzip, openssl, scrypt) on the same bytes.
// Usage: node dist/scripts/bench.js [--quick] [--wait-quiet] (npm run bench runs it first: scripts/bench-all.mjs)
//   --quick: 16 MiB smoke run, printed only (BENCHMARKS.md untouched); --wait-quiet: first wait up to
//   10 min for the 1-minute load average to drop below 0.5 (other jobs skew every figure).
import { spawnSync } from 'node:child_process';
import { createCipheriv } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { SlotPool, type Slot } from '../src/main/pipeline/slot-pool.js';
import { WorkerPool } from '../src/main/pipeline/worker-pool.js';
import { gzipBound } from '../src/workers/compress.js';
import type { SharedSlice } from '../src/workers/task-types.js';
import { checkBenchArgs, writeSection } from './bench-report.js';

const MiB = 1024 * 1024;
const QUICK = process.argv.includes('--quick');
const TOTAL = (QUICK ? 16 : 100) * MiB;
const BLOCK = 4 * MiB;
const THREADS = Math.max(2, os.availableParallelism());
const KEY = Buffer.alloc(32, 7);
const IV = Buffer.alloc(16, 9);
const PW = 'bench-passphrase';
const SECTION = `## Codecs, Node ${process.versions.node.split('.')[0]} (npm run bench)`;

type Pool = WorkerPool;
interface Row { op: string; bytes: number; one: number; all: number; ref?: { name: string; seconds: number } }

/** Fill `buf` deterministically: segments of 64 KiB-1 MiB, each zeros, text-like or random. */
export function generate(buf: Uint8Array): { zero: number; text: number; random: number } {
  let seed = 0x9e3779b9;
  const rnd = (): number => {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    return seed >>> 0;
  };
  const words = ('qubes xen domain vm template appvm netvm firewall /var/lib/qubes/appvms private.img root.img volatile ' +
    'kernel modules systemd journal INFO WARN ERROR user home .config .cache lib64 usr bin sbin etc passwd fstab ' +
    'the of and to in is that for it as with was on by be this from at or an which are error 0x7f45 1024 4096 65536').split(' ');
  const random = createCipheriv('aes-128-ctr', Buffer.alloc(16, 0x42), Buffer.alloc(16));
  const mix = { zero: 0, text: 0, random: 0 };
  const kinds = ['zero', 'text', 'random'] as const;
  let group: Array<(typeof kinds)[number]> = [];
  let groupLen = 0;
  for (let off = 0; off < buf.length; ) {
    if (group.length === 0) {
      // three segments of one length, one of each kind in random order: the mix is exactly 1/3 each
      group = [...kinds].sort(() => (rnd() % 2 === 0 ? -1 : 1));
      groupLen = (64 * 1024) << rnd() % 5;
    }
    const len = Math.min(buf.length - off, groupLen);
    const kind = group.pop() ?? 'zero';
    mix[kind] += len;
    if (kind === 'zero') buf.fill(0, off, off + len);
    else if (kind === 'random') buf.set(random.update(new Uint8Array(len)), off);
    else {
      let w = off;
      while (w < off + len) {
        const word = rnd() % 9 === 0 ? (rnd() % 100000).toString(16) : (words[rnd() % words.length] ?? '');
        for (let i = 0; i < word.length && w < off + len; i++) buf[w++] = word.charCodeAt(i);
        if (w < off + len) buf[w++] = rnd() % 12 === 0 ? 10 : 32;
      }
    }
    off += len;
  }
  return mix;
}

/** Load the worker module and compile each codec in every worker before timing anything. */
async function warmUp(p: Pool, input: SharedSlice, output: SharedSlice): Promise<void> {
  await Promise.all(
    Array.from({ length: 2 * p.threads }, () => [
      p.run('compressBlock', { level: 6, input, output }),
      p.run('cipherPiece', { mode: 'encrypt', cipher: 'aes-256-cbc', key: KEY, iv: IV, final: false, input, output }),
      p.run('hmacSlice', { algorithm: 'SHA512', key: KEY, input }),
      p.run('scryptEncrypt', { passphrase: PW, logN: 10, r: 8, p: 1, input, output }),
    ]).flat(),
  );
}

/** CPU ticks: the whole machine busy, and this process with its waited-for children (Linux only). */
export function cpuTicks(): { machine: number; self: number } | null {
  try {
    const cpu = (fs.readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '').trim().split(/\s+/).slice(1).map(Number);
    const busy = cpu.reduce((a, b, i) => (i === 3 || i === 4 || i >= 8 ? a : a + b), 0); // minus idle, iowait, guest
    const stat = fs.readFileSync('/proc/self/stat', 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ').map(Number);
    return { machine: busy, self: (f[11] ?? 0) + (f[12] ?? 0) + (f[13] ?? 0) + (f[14] ?? 0) };
  } catch {
    return null;
  }
}

export async function waitQuiet(): Promise<void> {
  const until = Date.now() + 10 * 60 * 1000;
  while ((os.loadavg()[0] ?? 0) >= 0.5 && Date.now() < until) {
    console.error(`waiting for a quiet machine (load ${(os.loadavg()[0] ?? 0).toFixed(2)})`);
    await new Promise((r) => setTimeout(r, 15000));
  }
}

export async function timeIt(fn: () => Promise<unknown>): Promise<number> {
  const t0 = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

async function best(reps: number, fn: () => Promise<unknown>): Promise<number> {
  let b = Number.POSITIVE_INFINITY;
  for (let i = 0; i < reps; i++) b = Math.min(b, await timeIt(fn));
  return b;
}

export function refTime(cmd: string, args: string[], input?: string): number | null {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(cmd, args, { input: input ?? '', stdio: ['pipe', 'ignore', 'pipe'], env: { ...process.env, LC_ALL: 'C' } });
  if (r.error || r.status !== 0) {
    console.error(`reference ${cmd} ${args.join(' ')} failed: ${r.error?.message ?? r.stderr.toString().trim()}`);
    return null;
  }
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

function ranges(total: number, size: number): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  for (let off = 0; off < total; off += size) out.push([off, Math.min(size, total - off)]);
  return out;
}

async function main(): Promise<void> {
  if (process.argv.includes('--wait-quiet')) await waitQuiet();
  const started = Date.now();
  const ticks0 = cpuTicks();
  const slots = new SlotPool({ slotBytes: TOTAL + MiB, slots: 3, name: 'bench' });
  const [data, out1, out2] = [await slots.acquire(), await slots.acquire(), await slots.acquire()] as [Slot, Slot, Slot];
  const mix = generate(data.bytes.subarray(0, TOTAL));
  const input = (off: number, len: number): SharedSlice => data.slice(off, len);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'qvmb-bench-'));
  const file = path.join(tmp, 'data.bin');
  fs.writeFileSync(file, data.bytes.subarray(0, TOTAL));
  const pools: [Pool, Pool] = [new WorkerPool({ threads: 1 }), new WorkerPool({ threads: THREADS })];
  const rows: Row[] = [];
  const both = async (reps: number, job: (p: Pool) => Promise<unknown>): Promise<[number, number]> => [
    await best(reps, () => job(pools[0])),
    await best(reps, () => job(pools[1])),
  ];
  for (const p of pools) await warmUp(p, input(0, 1 << 16), out1.slice(0, 1 << 17));
  try {
    // gzip-6, 4 MiB blocks into separate members
    const bound = gzipBound(BLOCK);
    const blocks = ranges(TOTAL, BLOCK);
    let gzLens: number[] = [];
    const gzip = async (p: Pool): Promise<void> => {
      const rs = await Promise.all(blocks.map(([off, len], i) => p.run('compressBlock', { level: 6, input: input(off, len), output: out1.slice(i * bound, bound) })));
      gzLens = rs.map((r) => (r.ok ? r.length : Number.NaN));
    };
    const [g1, gN] = await both(1, gzip);
    const gzFile = path.join(tmp, 'data.gz');
    fs.writeFileSync(gzFile, spawnSync('gzip', ['-6', '-c', file], { maxBuffer: 2 * TOTAL }).stdout);
    rows.push({ op: 'gzip -6, 4 MiB blocks', bytes: TOTAL, one: g1, all: gN, ref: { name: 'gzip -6 -c', seconds: refTime('gzip', ['-6', '-c', file]) ?? NaN } });
    // gunzip of those members (restore side), output into out2
    const gunzip = (p: Pool): Promise<unknown> =>
      Promise.all(blocks.map(([, len], i) => p.run('opensslOpen', { cipher: null, passphrase: '', input: out1.slice(i * bound, gzLens[i] ?? 0), output: out2.slice(i * BLOCK, len), decompress: 'gzip' })));
    const [u1, uN] = await both(3, gunzip);
    rows.push({ op: 'gunzip of those blocks (MB/s of output)', bytes: TOTAL, one: u1, all: uN, ref: { name: 'gzip -dc', seconds: refTime('gzip', ['-dc', gzFile]) ?? NaN } });
    // AES-256-CBC pieces (4 independent streams of TOTAL/4), encrypt and decrypt
    const quarter = ranges(TOTAL, TOTAL / 4);
    const cbc = (mode: 'encrypt' | 'decrypt') => (p: Pool): Promise<unknown> =>
      Promise.all(quarter.map(([off, len]) => p.run('cipherPiece', { mode, cipher: 'aes-256-cbc', key: KEY, iv: IV, final: false, input: (mode === 'encrypt' ? data : out1).slice(off, len), output: (mode === 'encrypt' ? out1 : out2).slice(off, len) })));
    const [e1, eN] = await both(3, cbc('encrypt'));
    rows.push({ op: 'AES-256-CBC encrypt pieces', bytes: TOTAL, one: e1, all: eN, ref: { name: 'openssl enc -aes-256-cbc', seconds: refTime('openssl', ['enc', '-e', '-aes-256-cbc', '-md', 'MD5', '-pass', `pass:${PW}`, '-in', file, '-out', '/dev/null']) ?? NaN } });
    const [d1, dN] = await both(3, cbc('decrypt'));
    const encFile = path.join(tmp, 'data.enc');
    spawnSync('openssl', ['enc', '-e', '-aes-256-cbc', '-md', 'MD5', '-pass', `pass:${PW}`, '-in', file, '-out', encFile]);
    rows.push({ op: 'AES-256-CBC decrypt pieces', bytes: TOTAL, one: d1, all: dN, ref: { name: 'openssl enc -d -aes-256-cbc', seconds: refTime('openssl', ['enc', '-d', '-aes-256-cbc', '-md', 'MD5', '-pass', `pass:${PW}`, '-in', encFile, '-out', '/dev/null']) ?? NaN } });
    // scrypt file (KDF logN 14 + AES-256-CTR + HMAC-SHA256), two whole chunks
    const scrypt = (p: Pool): Promise<unknown> =>
      Promise.all([out1, out2].map((o) => p.run('scryptEncrypt', { passphrase: PW, logN: 14, r: 8, p: 1, input: input(0, TOTAL), output: o.slice(0, TOTAL + 128) })));
    const [s1, sN] = await both(2, scrypt);
    const sref = refTime('scrypt', ['enc', '-P', '--logN', '14', '-r', '8', '-p', '1', file, '/dev/null'], `${PW}\n`);
    rows.push({ op: `scryptEncrypt logN 14, 2 × ${TOTAL / MiB} MiB chunks`, bytes: 2 * TOTAL, one: s1, all: sN, ref: { name: 'scrypt enc --logN 14 (1 chunk)', seconds: sref === null ? NaN : 2 * sref } });
    // HMAC-SHA512
    const hmac = (p: Pool): Promise<unknown> => Promise.all(quarter.map(([off, len]) => p.run('hmacSlice', { algorithm: 'SHA512', key: KEY, input: input(off, len) })));
    const [h1, hN] = await both(3, hmac);
    rows.push({ op: 'HMAC-SHA512', bytes: TOTAL, one: h1, all: hN, ref: { name: 'openssl dgst -sha512 -hmac', seconds: refTime('openssl', ['dgst', '-sha512', '-hmac', PW, file]) ?? NaN } });
    // scrypt KDF alone: empty chunks
    const kdfRows: string[] = [];
    for (const logN of QUICK ? [14, 16] : [14, 18, 20]) {
      const kdf = (p: Pool, n: number): Promise<unknown> =>
        Promise.all([out1, out2].slice(0, n).map((o) => p.run('scryptEncrypt', { passphrase: PW, logN, r: 8, p: 1, input: input(0, 0), output: o.slice(0, 128) })));
      const reps = logN <= 16 ? 3 : 1;
      await kdf(pools[1], 1);
      const one = await best(reps, () => kdf(pools[0], 1));
      const two = await best(reps, () => kdf(pools[1], 2));
      kdfRows.push(`| 2^${logN} | ${(128 * 8 * 2 ** logN) / MiB} MiB | ${one.toFixed(2)} | ${two.toFixed(2)} | ${(1 / one).toFixed(2)} → ${(2 / two).toFixed(2)} |`);
    }
    report(rows, kdfRows, { mix, ratio: gzLens.reduce((a, b) => a + b, 0) / TOTAL, seconds: (Date.now() - started) / 1000, foreign: foreignShare(ticks0, started) });
  } finally {
    await Promise.all(pools.map((p) => p.destroy()));
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

/** Share of the machine's CPU that other processes used since `t0` (null when unknown). */
export function foreignShare(t0: { machine: number; self: number } | null, started: number): number | null {
  const t1 = cpuTicks();
  if (t0 === null || t1 === null) return null;
  const capacity = ((Date.now() - started) / 1000) * 100 * os.availableParallelism(); // USER_HZ = 100
  return Math.max(0, t1.machine - t0.machine - (t1.self - t0.self)) / capacity;
}

function report(rows: Row[], kdfRows: string[], info: { mix: { zero: number; text: number; random: number }; ratio: number; seconds: number; foreign: number | null }): void {
  const mbs = (bytes: number, s: number): number => bytes / 1e6 / s;
  const f = (x: number): string => (Number.isFinite(x) ? (x >= 100 ? x.toFixed(0) : x.toFixed(1)) : 'n/a');
  const pct = (x: number): string => `${((100 * x) / TOTAL).toFixed(0)} %`;
  const lines = [
    SECTION,
    '',
    `Measured ${new Date().toISOString().slice(0, 10)} by \`npm run bench\`${QUICK ? ' --quick' : ''} on ${os.cpus()[0]?.model ?? 'unknown CPU'} ` +
      `(${os.availableParallelism()} cores), Node ${process.version}. ${TOTAL / MiB} MiB of generated VM-image-like data ` +
      `(zero runs ${pct(info.mix.zero)}, text-like ${pct(info.mix.text)}, random ${pct(info.mix.random)}; gzip-6 ratio ${(100 * info.ratio).toFixed(1)} %) ` +
      `in pre-touched SharedArrayBuffer slots, through the real piscina pool (1 worker, then ${THREADS}). ` +
      `References read the same bytes from a file in /tmp (page cache) and write to /dev/null. MB = 10^6 bytes; best of 1-3 runs; ` +
      `expect ±15 % noise. Total run time ${info.seconds.toFixed(0)} s; other processes used ` +
      `${info.foreign === null ? 'an unknown share' : `${(100 * info.foreign).toFixed(0)} %`} of the machine's CPU meanwhile` +
      `${(info.foreign ?? 0) > 0.1 ? ' (BUSY MACHINE: the figures are lower bounds and the speedups are not meaningful)' : ''}.`,
    '',
    `| operation | 1 worker MB/s | ${THREADS} workers MB/s | speedup | reference CLI (1 process) | ref MB/s | ours 1w / ref | ours ${THREADS}w / ref |`,
    '|---|---:|---:|---:|---|---:|---:|---:|',
  ];
  for (const r of rows) {
    const one = mbs(r.bytes, r.one);
    const all = mbs(r.bytes, r.all);
    const ref = r.ref ? mbs(r.bytes, r.ref.seconds) : Number.NaN;
    lines.push(`| ${r.op} | ${f(one)} | ${f(all)} | ${(one > 0 ? all / one : NaN).toFixed(2)}× | ${r.ref?.name ?? '–'} | ${f(ref)} | ${(one / ref).toFixed(2)} | ${(all / ref).toFixed(2)} |`);
  }
  lines.push('', `| scrypt KDF (r=8, p=1) | memory each | 1 derivation, s | 2 concurrent, s wall | derivations/s: 1 → 2 concurrent |`, '|---|---:|---:|---:|---:|', ...kdfRows, '');
  const text = lines.join('\n');
  console.log(text);
  if (QUICK) return;
  writeSection(SECTION, text);
}

// run only as the entry script (bench-zstd.ts imports the helpers above)
if (process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  checkBenchArgs(process.argv.slice(2), 'Usage: node dist/scripts/bench.js [--quick] [--wait-quiet]', ['--quick', '--wait-quiet']);
  main().catch((e: unknown) => {
    console.error(e);
    process.exitCode = 1;
  });
}
