// Child process for worker-pool.test.ts (a native crash must not take the test runner with it):
// rounds of compressBlock tasks aborted the moment the first one settles, on fresh regions of a
// shared buffer. Each region is stamped as soon as its task settles; after destroy() (which lets
// started tasks end) every stamp must still be there: a rejected task never writes afterwards.
// Prints a JSON summary on stdout. Mode `early N`: N pools of 8 threads, each destroyed right after
// its first task was aborted, while workers are still starting (a run that fails at once).
import { WorkerPool } from '../../../src/main/pipeline/worker-pool.js';
import { isQvmBackupError } from '../../../src/main/errors.js';

if (process.argv[2] === 'early') {
  const input = new SharedArrayBuffer(1 << 16);
  for (let i = 0; i < Number(process.argv[3] ?? '30'); i++) {
    const pool = new WorkerPool({ threads: 8 });
    const ac = new AbortController();
    const task = pool.run('hmacSlice', { algorithm: 'sha256', key: new Uint8Array(4), input: { sab: input, offset: 0, length: 1 << 16 } }, { signal: ac.signal }).catch(() => undefined);
    await new Promise((r) => setTimeout(r, (i * 37) % 100)); // stop at different points of the start-up
    ac.abort(new Error('stop'));
    await task;
    await pool.destroy();
  }
  process.stdout.write('{"early":"ok"}\n');
  process.exit(0);
}

const rounds = Number(process.argv[2] ?? '150');
const PER_ROUND = 4;
const IN = 64 * 1024;
const OUT = IN + 2048;
const sab = new SharedArrayBuffer(IN + rounds * PER_ROUND * OUT);
const bytes = new Uint8Array(sab);
for (let i = 0; i < IN; i++) bytes[i] = (i * 2654435761) >>> 24; // poorly compressible input
let uncaught = 0;
process.on('uncaughtException', (e) => {
  uncaught++;
  process.stderr.write(`uncaught: ${(e as Error).message}\n`);
});
const pool = new WorkerPool({ threads: 2 });
let cancelled = 0;
let done = 0;
let other = 0;
for (let round = 0; round < rounds; round++) {
  const ac = new AbortController();
  const tasks = [];
  for (let k = 0; k < PER_ROUND; k++) {
    const at = IN + (round * PER_ROUND + k) * OUT;
    const p = pool.run('compressBlock', { level: 1, input: { sab, offset: 0, length: IN }, output: { sab, offset: at, length: OUT } }, { signal: ac.signal });
    tasks.push(
      p.then(
        () => done++,
        (e: unknown) => (isQvmBackupError(e) && e.code === 'ERR_CANCELLED' ? cancelled++ : other++),
      ).finally(() => bytes.fill(0xee, at, at + OUT)),
    );
  }
  await Promise.race(tasks);
  ac.abort(new Error('stop'));
  await Promise.all(tasks);
}
await pool.destroy();
let overwritten = 0;
for (let t = 0; t < rounds * PER_ROUND; t++) {
  const at = IN + t * OUT;
  if (bytes.subarray(at, at + OUT).some((b) => b !== 0xee)) overwritten++;
}
process.stdout.write(`${JSON.stringify({ uncaught, cancelled, done, other, overwritten })}\n`);
