// The peak resident memory of this process, for the summary's max_rss_bytes and the bench.
//
// Not getrusage(RUSAGE_SELF).ru_maxrss (process.resourceUsage().maxRSS): on Linux that survives
// exec, and a spawned process starts as a copy of its parent, so it reports the *parent's* resident
// memory at the fork when that was larger (a bench script holding 1 GiB made every restore it ran
// report 1 GiB). VmHWM in /proc/self/status is the high-water mark of this process image's own
// memory, which exec starts afresh; worker threads share it.
import { readFileSync } from 'node:fs';

/** Peak RSS in bytes of this process image (all its threads); getrusage's figure where /proc has none. */
export function peakRssBytes(statusText?: string): number {
  let text = statusText;
  if (text === undefined) {
    try {
      text = readFileSync('/proc/self/status', 'latin1');
    } catch {
      text = '';
    }
  }
  const m = /^VmHWM:\s*(\d+)\s*kB$/m.exec(text);
  return m ? Number(m[1]) * 1024 : process.resourceUsage().maxRSS * 1024;
}
