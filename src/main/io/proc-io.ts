// Bytes a process has read so far (`rchar` of /proc/<pid>/io, Linux): how far a `tar -c` whose
// output goes through a compression program has got through its input, which its compressed
// output cannot tell. undefined where /proc is not there or the process is gone.
import { readFileSync } from 'node:fs';

export function bytesReadBy(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const m = /^rchar: (\d+)$/m.exec(readFileSync(`/proc/${pid}/io`, 'latin1'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}
