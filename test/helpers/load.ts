// Background CPU load for concurrency tests: busy-looping processes beside the code under test,
// so that races show up the way they do on a loaded machine.
import { spawn, type ChildProcess } from 'node:child_process';

/** Start `n` busy loops; call stop() (in a finally) to kill them. */
export function busyLoops(n: number): { stop(): void } {
  const kids: ChildProcess[] = [];
  for (let i = 0; i < n; i++) kids.push(spawn(process.execPath, ['-e', 'for (;;) {}'], { stdio: 'ignore' }));
  return {
    stop: () => {
      for (const k of kids) k.kill('SIGKILL');
    },
  };
}
