// A restore's start-up, compared across builds: how long each build's qvm-backup-restore takes
// from its start to its data pass (its --json status "deriving keys for the first chunks", sent
// once the header and qubes.xml are authenticated, the host locked and the plan made; format 4
// archives only) and to its exit, N rounds in turns (the order rotating from round to round, after
// one untimed round); medians and ranges. For start-up changes, worth tens of ms: a whole restore
// of the bench image varies by ±0.1 s from run to run, which hides them.
// The restore target is an existing, empty qubes root (a real host's root exists) and a fresh
// dom0 home, made anew before each run in the work directory.
// Every checkout's launcher runs the node that runs this script (first on PATH), as bench-backup.
// Usage: node dist/scripts/bench-start.js [--rounds N] [--timeout S] [--work-dir DIR]
//          [--archive FILE --passphrase-file FILE] [CHECKOUT...]
//   CHECKOUT: a built checkout (its bin/qvm-backup-restore runs); default: this one. The same one
//   named twice shows the measure's own noise.
//   Without --archive, the bench's archive is made first: one 4 GiB image holding 1 GiB of data,
//   format 4, scrypt logN 14 (as bench-backup's restore rows).
//   --work-dir: where the restores write (default: the system's temp directory; a tmpfs there
//   means they write into memory).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { accessSync, constants, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { makeSampleCollection } from './make-sample.js';

const MiB = 1024 * 1024;
const HERE = fileURLToPath(new URL('../..', import.meta.url));
/** the status that starts the data pass (run-restore.ts) */
const DATA_PASS = 'deriving keys for the first chunks';
/** the launchers run `node` from PATH: this script's own node first */
const ENV = { ...process.env, PATH: `${dirname(process.execPath)}:${process.env['PATH'] ?? ''}` };

interface Timing {
  toData: number;
  toExit: number;
}

class UsageError extends Error {}

function argValue(args: string[], name: string): string | undefined {
  const i = args.indexOf(name);
  if (i < 0) return undefined;
  const v = args[i + 1];
  if (v === undefined) throw new UsageError(`${name} needs a value`);
  args.splice(i, 2);
  if (args.includes(name)) throw new UsageError(`${name} is given twice`);
  return v;
}

function positive(name: string, v: string): number {
  if (!/^[1-9]\d*$/.test(v)) throw new UsageError(`${name}: a positive integer, got '${v}'`);
  return Number(v);
}

/** the child's last words: the last non-empty line of its stderr (a stack trace stays out) */
const lastLine = (s: string): string => s.split('\n').map((l) => l.trim()).filter((l) => l !== '').pop() ?? '';

/** the run in progress, for a signal to stop */
let running: ChildProcess | null = null;

/** One restore by `checkout`'s launcher: ms to its data pass and to its exit. */
function once(checkout: string, archive: string, pass: string, work: string, timeoutMs: number): Promise<Timing> {
  const root = join(work, 'host');
  const home = join(work, 'hh', 'user');
  rmSync(root, { recursive: true, force: true });
  rmSync(join(work, 'hh'), { recursive: true, force: true });
  mkdirSync(root);
  mkdirSync(home, { recursive: true });
  const argv = ['--json', '-y', '-p', pass, '--qubes-root', root, '--dom0-home', home, '--ignore-missing', archive];
  const t0 = performance.now();
  const c = spawn(join(checkout, 'bin/qvm-backup-restore'), argv, { stdio: ['ignore', 'pipe', 'pipe'], env: ENV });
  running = c;
  let pending = '';
  let err = '';
  let toData: number | undefined;
  c.stdout!.on('data', (d: Buffer) => {
    if (toData !== undefined) return;
    const lines = (pending + d.toString()).split('\n');
    pending = lines.pop()!;
    for (const l of lines) {
      let m: unknown;
      try {
        m = JSON.parse(l);
      } catch {
        continue;
      }
      const msg = m as { message_type?: unknown; phase?: unknown } | null;
      if (msg?.message_type === 'status' && msg.phase === DATA_PASS) {
        toData = performance.now() - t0;
        break;
      }
    }
  });
  c.stderr!.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-4000)));
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    c.kill('SIGKILL');
  }, timeoutMs);
  return new Promise((done, fail) => {
    c.on('error', (e) => {
      clearTimeout(timer);
      fail(new Error(`${checkout}: ${e.message}`));
    });
    c.on('close', (code, signal) => {
      clearTimeout(timer);
      running = null;
      const toExit = performance.now() - t0;
      const why = lastLine(err);
      if (timedOut) fail(new Error(`${checkout}: timed out after ${timeoutMs / 1000} s (--timeout)`));
      else if (code !== 0) fail(new Error(`${checkout}: exit ${code ?? signal}${why ? `: ${why}` : ''}`));
      else if (toData === undefined) fail(new Error(`${checkout}: the restore sent no data pass status (only format 4 archives do, and builds from 2026-12-02 on)`));
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
  if (args.includes('--help') || args.includes('-h')) {
    console.log('Usage: node dist/scripts/bench-start.js [--rounds N] [--timeout S] [--work-dir DIR] [--archive FILE --passphrase-file FILE] [CHECKOUT...]');
    return;
  }
  const rounds = positive('--rounds', argValue(args, '--rounds') ?? '15');
  const timeoutMs = 1000 * positive('--timeout', argValue(args, '--timeout') ?? '120');
  const workParent = resolve(argValue(args, '--work-dir') ?? tmpdir());
  let archive = argValue(args, '--archive');
  let pass = argValue(args, '--passphrase-file');
  if ((archive === undefined) !== (pass === undefined)) throw new UsageError('--archive and --passphrase-file go together');
  const unknown = args.find((a) => a.startsWith('-'));
  if (unknown !== undefined) throw new UsageError(`unknown option ${unknown}`);
  const checkouts = (args.length > 0 ? args : [HERE]).map((c) => resolve(c));
  // every checkout can run before anything is made
  for (const c of checkouts) {
    try {
      accessSync(join(c, 'bin/qvm-backup-restore'), constants.X_OK);
    } catch {
      throw new UsageError(`${c}: no bin/qvm-backup-restore to run (a built checkout of this project?)`);
    }
  }
  const work = mkdtempSync(join(workParent, 'qvmb-bench-start-'));
  // a stop: the run in progress ends with us, the work directory (GiBs) goes
  for (const [sig, status] of [['SIGINT', 130], ['SIGTERM', 143]] as const) {
    process.once(sig, () => {
      running?.kill('SIGKILL');
      rmSync(work, { recursive: true, force: true });
      process.exit(status);
    });
  }
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
      const b = spawnSync(join(HERE, 'bin/qvm-backup'), ['-q', '-y', '-p', pass, '--qubes-root', q, '--dom0-home', home, '--scrypt-logn', '14', archive, 'work'], { stdio: ['ignore', 'ignore', 'pipe'], env: ENV });
      if (b.status !== 0) throw new Error(`making the archive failed: ${lastLine(b.stderr.toString())}`);
      rmSync(q, { recursive: true, force: true });
    }
    spawnSync('cat', [archive], { stdio: 'ignore' }); // in the page cache for every run
    const runs = checkouts.map((c) => ({ c, t: [] as Timing[] }));
    // one untimed round (caches of every kind), then the order rotates: no checkout always first
    for (const r of runs) await once(r.c, archive, pass, work, timeoutMs).catch((e: unknown) => Promise.reject(new Error(`the untimed round: ${(e as Error).message}`)));
    for (let i = 0; i < rounds; i++) {
      for (let k = 0; k < runs.length; k++) {
        const r = runs[(i + k) % runs.length]!;
        r.t.push(await once(r.c, archive, pass, work, timeoutMs).catch((e: unknown) => Promise.reject(new Error(`round ${i + 1}: ${(e as Error).message}`))));
      }
    }
    const node = spawnSync('node', ['--version'], { env: ENV, encoding: 'utf8' }).stdout.trim();
    console.log(`restore start-up, ${rounds} rounds in turns (median, range), node ${node}:`);
    for (const { c, t } of runs) console.log(`  ${c}: to the data pass ${ms(t.map((x) => x.toData))}, to the exit ${ms(t.map((x) => x.toExit))}`);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  console.error(`bench-start: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(e instanceof UsageError ? 2 : 1);
});
