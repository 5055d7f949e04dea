// A restore's start-up, compared across builds: how long each build's qvm-backup-restore takes
// from its start to its data pass (its --json status "deriving keys for the first chunks", sent
// once the header and qubes.xml are authenticated, the host locked and the plan made) and to its
// exit, run in turns, N rounds; medians and ranges. For start-up changes, worth tens of ms: a
// whole restore of the bench image varies by ±0.1 s from run to run, which hides them.
// The restore target is an existing, empty qubes root (a real host's root exists) and a fresh
// dom0 home, made anew before each run.
// Usage: node dist/scripts/bench-start.js [--rounds N] [--archive FILE --passphrase-file FILE] [CHECKOUT...]
//   CHECKOUT: a built checkout (its bin/qvm-backup-restore runs); default: this one. The same one
//   named twice shows the measure's own noise.
//   Without --archive, the bench's archive is made first: one 4 GiB image holding 1 GiB of data,
//   format 4, scrypt logN 14 (as bench-backup's restore rows).
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { makeSampleCollection } from './make-sample.js';

const MiB = 1024 * 1024;
const HERE = fileURLToPath(new URL('../..', import.meta.url));
/** the status line that starts the data pass (run-restore.ts) */
const DATA_PASS = 'deriving keys for the first chunks';
/** no run of the bench archive takes a minute: one that does is stuck */
const RUN_TIMEOUT_MS = 60_000;

interface Timing {
  toData: number;
  toExit: number;
}

function argValue(args: string[], name: string): string | undefined {
  const i = args.indexOf(name);
  if (i < 0) return undefined;
  const v = args[i + 1];
  if (v === undefined) throw new Error(`${name} needs a value`);
  args.splice(i, 2);
  return v;
}

/** One restore by `checkout`'s launcher: ms to its data pass and to its exit. */
function once(checkout: string, archive: string, pass: string, work: string): Promise<Timing> {
  const root = join(work, 'host');
  const home = join(work, 'hh', 'user');
  rmSync(root, { recursive: true, force: true });
  rmSync(join(work, 'hh'), { recursive: true, force: true });
  mkdirSync(root);
  mkdirSync(home, { recursive: true });
  spawnSync('sync'); // the last run's dirty pages are written back before this one starts
  const argv = ['--json', '-y', '-p', pass, '--qubes-root', root, '--dom0-home', home, '--ignore-missing', archive];
  const t0 = performance.now();
  const c = spawn(join(checkout, 'bin/qvm-backup-restore'), argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  let toData: number | undefined;
  c.stdout.on('data', (d: Buffer) => {
    out += d.toString();
    if (toData === undefined && out.includes(DATA_PASS)) toData = performance.now() - t0;
  });
  c.stderr.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-2000)));
  const timer = setTimeout(() => c.kill('SIGKILL'), RUN_TIMEOUT_MS);
  return new Promise((done, fail) => {
    c.on('error', fail);
    c.on('close', (code, signal) => {
      clearTimeout(timer);
      const toExit = performance.now() - t0;
      if (code !== 0 || toData === undefined) fail(new Error(`${checkout}: exit ${code ?? signal}${toData === undefined ? ', no data pass status' : ''}: ${err}`));
      else done({ toData, toExit });
    });
  });
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

const ms = (xs: number[]): string => `${median(xs).toFixed(0)} ms (${Math.min(...xs).toFixed(0)}–${Math.max(...xs).toFixed(0)})`;

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const rounds = Number(argValue(args, '--rounds') ?? 15);
  if (!Number.isInteger(rounds) || rounds < 1) throw new Error('--rounds: a positive integer');
  let archive = argValue(args, '--archive');
  let pass = argValue(args, '--passphrase-file');
  if ((archive === undefined) !== (pass === undefined)) throw new Error('--archive and --passphrase-file go together');
  const checkouts = (args.length > 0 ? args : [HERE]).map((c) => resolve(c));
  const work = mkdtempSync(join(tmpdir(), 'qvmb-bench-start-'));
  try {
    if (archive === undefined || pass === undefined) {
      const q = join(work, 'qubes');
      const home = join(work, 'home', 'user');
      makeSampleCollection({ root: q, home, bigImageBytes: 4096 * MiB, bigDataBytes: 1024 * MiB, smallImageBytes: 8 * MiB, smallDataBytes: 64 * 1024 });
      rmSync(join(q, 'appvms/work/firewall.xml'));
      rmSync(join(q, 'appvms/work/notes.txt'));
      pass = join(work, 'pass');
      writeFileSync(pass, 'bench passphrase\n');
      archive = join(work, 'a14.bin');
      const b = spawnSync(join(HERE, 'bin/qvm-backup'), ['-q', '-y', '-p', pass, '--qubes-root', q, '--dom0-home', home, '--scrypt-logn', '14', archive, 'work'], { stdio: ['ignore', 'ignore', 'pipe'] });
      if (b.status !== 0) throw new Error(`making the archive failed: ${b.stderr.toString()}`);
      rmSync(q, { recursive: true, force: true });
    }
    spawnSync('cat', [archive], { stdio: 'ignore' }); // in the page cache for every run
    // a checkout may be named twice: the spread between two series of the same code is the noise
    const runs = checkouts.map((c) => ({ c, t: [] as Timing[] }));
    for (let i = 0; i < rounds; i++) for (const r of runs) r.t.push(await once(r.c, archive, pass, work));
    console.log(`restore start-up, ${rounds} rounds in turns (median, range), node ${process.version}:`);
    for (const { c, t } of runs) console.log(`  ${c}: to the data pass ${ms(t.map((x) => x.toData))}, to the exit ${ms(t.map((x) => x.toExit))}`);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  console.error(`bench-start: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(1);
});
