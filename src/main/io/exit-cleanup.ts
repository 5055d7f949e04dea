// What a run removes even when it ends without its own cleanup: a second signal's forced exit
// (process.exit from the signal handler) or a crash. The run removes these itself as it ends or
// fails; this is the net under it, for files only we use and that nothing else would ever remove:
// a partial archive (`.<name>.partial-<pid>`) and the private FIFO directory of a format 2 run.
// Synchronous, as 'exit' listeners must be; a path the run removed or renamed first is gone from
// the list (or simply no longer there: the removal ignores a missing path).
import { rmSync } from 'node:fs';

const paths = new Map<string, { recursive: boolean }>();
let hooked = false;

function removeAll(): void {
  for (const [p, o] of paths) {
    try {
      rmSync(p, { force: true, recursive: o.recursive });
    } catch {
      // exiting anyway: what cannot be removed stays
    }
  }
  paths.clear();
}

/** Remove `path` (a file, or with `recursive` a directory of ours) if the process exits before
 *  `forgetAtExit(path)` (or the returned function) was called. */
export function removeAtExit(path: string, o: { recursive?: boolean } = {}): () => void {
  if (!hooked) {
    process.on('exit', removeAll);
    hooked = true;
  }
  paths.set(path, { recursive: o.recursive === true });
  return () => forgetAtExit(path);
}

/** `path` is no longer ours to remove at exit (the run removed or renamed it). */
export function forgetAtExit(path: string): void {
  paths.delete(path);
}
