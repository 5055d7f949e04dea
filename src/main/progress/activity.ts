// When the run last moved, for the stall check (--stall-timeout): every place where bytes really
// move (a read from the archive or a disk, a write to the destination or an image, a piece
// decoded) notes it here, however the counters shown to the user are grouped (a 100 MiB chunk is
// counted once it is whole). One clock per process: a second run in the same process can only make
// the first look busier, never stalled.

let last = Date.now();
let held = 0;

/** Something moved now. */
export function moved(): void {
  last = Date.now();
}

/** While `fn` runs, the run counts as moving: local work that cannot be stopped halfway and shows
 *  no bytes (a file's final fsync, a copy by `cp`). */
export async function movingWhile<T>(fn: () => Promise<T>): Promise<T> {
  held++;
  try {
    return await fn();
  } finally {
    held--;
    last = Date.now();
  }
}

/** When the run last moved (now while something holds it moving). */
export function lastMoved(): number {
  return held > 0 ? Date.now() : last;
}
