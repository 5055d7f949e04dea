// Children die with us. Node cannot set PR_SET_PDEATHSIG on the processes it starts, so they are
// started through util-linux `setpriv --pdeathsig KILL`, which sets it and execs the program (same
// PID): when this process ends, even by `kill -9`, the kernel kills them — a tar blocked opening a
// FIFO, or a command still holding a half-written destination, never outlives the run. Where
// setpriv is missing the program starts as it is (pipes closing still stop most of them).
import type { ChildProcess } from 'node:child_process';
import { accessSync, constants as fsc, statSync } from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';

let setpriv: string | null | undefined;

/** Whether process `pid` exists here (EPERM: it does, as another user's). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Absolute path of the executable file `name` in PATH (or `searchPath`), or null: the one PATH
 *  lookup (tar, setpriv, dd, the compression filter programs). Empty and relative entries are
 *  skipped: they name the current directory, which is no place to take a program from (and a
 *  relative result would be looked up again by whoever execs it). */
export function findInPath(name: string, searchPath = process.env['PATH'] ?? ''): string | null {
  for (const dir of searchPath.split(path.delimiter)) {
    if (!path.isAbsolute(dir)) continue;
    const p = path.join(dir, name);
    try {
      accessSync(p, fsc.X_OK);
      if (statSync(p).isFile()) return p;
    } catch {
      // not here
    }
  }
  return null;
}

/** `[file, args]` that run `file args` so that it is killed when this process dies (`signal`: the
 *  signal it then gets; KILL unless it is a shell that traps another to end what it started). */
export function diesWithUs(file: string, args: readonly string[], signal: 'KILL' | 'TERM' = 'KILL'): [string, string[]] {
  if (setpriv === undefined) setpriv = process.platform === 'linux' ? findInPath('setpriv') : null;
  return setpriv === null ? [file, [...args]] : [setpriv, ['--pdeathsig', signal, '--', file, ...args]];
}

/** `signal` to the process group led by `pid` (a child started `detached`); false when there is
 *  no such group (any more). */
export function signalGroup(pid: number | undefined, signal: NodeJS.Signals): boolean {
  if (pid === undefined) return false;
  try {
    process.kill(-pid, signal);
    return true;
  } catch {
    return false;
  }
}

/** SIGKILL to the process group of `child`, started `detached` (a group of its own), unless it has
 *  ended; when the group is gone already, to the child alone. */
export function killGroup(child: ChildProcess): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  if (!signalGroup(child.pid, 'SIGKILL')) child.kill('SIGKILL');
}

let spawnObserver: ((ms: number) => void) | undefined;

/** Report the main-thread time of every child start to `fn` (the run's stage profile) until the
 *  returned function is called. One run per process: the last observer set wins. */
export function observeSpawns(fn: (ms: number) => void): () => void {
  spawnObserver = fn;
  return () => {
    if (spawnObserver === fn) spawnObserver = undefined;
  };
}

/** Start a child with `start` (synchronous: fork and exec happen in it), timing it when observed. */
export function timedSpawn<T>(start: () => T): T {
  const obs = spawnObserver;
  if (obs === undefined) return start();
  const t0 = performance.now();
  try {
    return start();
  } finally {
    obs(performance.now() - t0);
  }
}
