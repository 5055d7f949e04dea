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

// Operations whose result the exit hooks depend on: a VM directory being made in, or moved into
// or out of, the qubes root, and the qubes.xml write that lists the moved ones. A forced exit that
// came while one was in flight would run the hooks before it landed (a mkdir or rename in libuv's
// threads completes after the hook looked, leaving a directory that qubes.xml does not list until
// the next restore's sweep); it waits for them first, a bounded time (exitWhenSettled).
const inFlight = new Set<Promise<void>>();

/** `op` changes what the exit hooks must clean up: a forced exit waits for it (bounded). */
export function exitWaitsFor<T>(op: Promise<T>): Promise<T> {
  const settled = op.then(
    () => undefined,
    () => undefined,
  );
  inFlight.add(settled);
  void settled.then(() => inFlight.delete(settled));
  return op;
}

/** Call `exit` (synchronously, in the same turn as the check) once no operation of exitWaitsFor is
 *  in flight, or after `ms` at most: what an operation's continuation starts is waited for too. */
export function exitWhenSettled(ms: number, exit: () => void): void {
  const deadline = Date.now() + ms;
  let timer: NodeJS.Timeout | undefined;
  const check = (): void => {
    clearTimeout(timer);
    const left = deadline - Date.now();
    if (inFlight.size === 0 || left <= 0) {
      exit();
      return;
    }
    const expired = new Promise<void>((res) => (timer = setTimeout(res, left)));
    void Promise.race([...inFlight, expired]).then(check);
  };
  check();
}
