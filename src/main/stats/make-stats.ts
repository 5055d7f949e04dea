// The stage profile of one run, with the bound rule of its operation.
import { RunStats } from './run-stats.js';
import { backupBound, restoreBound, verifyBound } from './bound.js';

/** On when `enabled` (--stats, --json, the library's `stats`), else a no-op one. */
export function statsFor(operation: 'backup' | 'restore' | 'verify', enabled: boolean): RunStats {
  const bound = { backup: backupBound, restore: restoreBound, verify: verifyBound }[operation];
  return new RunStats({ enabled, bound });
}
