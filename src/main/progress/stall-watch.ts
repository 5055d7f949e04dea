// The stall watch of a run (--stall-timeout, and the library's `stallTimeout`): a run that has not
// moved for a minute says so, once per stall; with a timeout it is stopped, as a signal would stop
// it, and ends with ERR_STALLED. A destination or a source that stops taking or giving bytes (a
// dead network, a full pipe nobody reads) would otherwise hold the run for ever.
import { QvmBackupError } from '../errors.js';

/** How long a run may not move before it is said (a timeout lowers it to half its own). */
const STALL_WARN_MS = 60_000;

/** What the watch looks at: the run's progress reporter. */
export interface Watched {
  /** how long the run has not moved (no byte counted, no new phase; 0 while it waits for the user) */
  readonly stillMs: number;
  /** where the run is, for the stop's message */
  line(): string;
  warn(text: string): void;
}

/**
 * Watch `run`; after `timeoutSec` without a move call `stop` with the ERR_STALLED error. `option`
 * is how the user spells the timeout (in the messages). Returns the function that ends the watch.
 */
export function watchStalls(run: Watched, stop: (why: QvmBackupError) => void, timeoutSec: number | undefined, option = '--stall-timeout'): () => void {
  // what moves: progress/activity.ts (reads, decoded pieces, pieces written), the counters, a phase
  const warnMs = timeoutSec !== undefined ? Math.min(STALL_WARN_MS, (timeoutSec * 1000) / 2) : STALL_WARN_MS;
  let warned = false;
  const timer = setInterval(
    () => {
      const still = run.stillMs;
      if (still < warnMs) {
        warned = false;
        return;
      }
      const sec = still < 10_000 ? (still / 1000).toFixed(1) : String(Math.floor(still / 1000));
      if (timeoutSec !== undefined && still >= timeoutSec * 1000) {
        clearInterval(timer);
        stop(new QvmBackupError('ERR_STALLED', `no progress for ${sec} s (${option} ${timeoutSec}): stopped; the destination, the source or a command it waited for did not move (last: ${run.line()})`));
        return;
      }
      if (warned) return;
      warned = true;
      run.warn(`no progress for ${sec} s: still waiting on the destination, the source or a command${timeoutSec === undefined ? ` (${option} SECONDS stops such a run)` : `; stopped at ${timeoutSec} s`}`);
    },
    Math.min(1000, Math.max(100, warnMs / 4)),
  );
  timer.unref();
  return () => clearInterval(timer);
}
