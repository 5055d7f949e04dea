// The data runs of a sparse file, as lseek(SEEK_DATA / SEEK_HOLE) reports them — what GNU tar's
// --sparse uses. Node has no lseek, and reading a hole is no way out: on ext4 a read of a hole costs
// like a read of data from a fresh page cache (4 GiB of holes took 9 s of system time on this
// machine), so a 20 GiB image would be read for minutes. The map is asked of a small perl helper
// instead (perl-base is Essential in Debian; Fedora-based dom0s have perl): one process per run,
// started on first use, answering one request per line. It is given /proc/<our pid>/fd/<fd> of a
// file WE opened (and checked), so it looks at the very inode we read — never at a path that could
// have been replaced meanwhile. Without perl, or when it fails, callers use GNU tar as before.
import { spawnProcess, type Spawned } from './spawn.js';
import { QvmBackupError } from '../errors.js';

export interface Run {
  offset: number;
  length: number;
}

/** Maps past this many runs are not asked for (GNU tar handles such files). */
export const MAX_RUNS = 100_000;

// One request per line: "<path> <size>"; the answer: "ok o1 l1 o2 l2 ...", or "err <reason>".
// Runs are clamped to <size> (our fstat): a file that grows meanwhile changes nothing here.
// The signals a terminal or a group kill sends are the run's to handle: the helper runs in a process
// group of its own (a terminal's Ctrl-C reached a perl still starting, before the line below: 1 run in
// 10 under load), ignores them too, and ends when its input does (our close(), or our exit: the pipe
// closes; where setpriv exists it also dies with us).
const SCRIPT = String.raw`
use strict; $| = 1;
$SIG{INT} = $SIG{TERM} = $SIG{HUP} = $SIG{QUIT} = 'IGNORE';
while (my $line = <STDIN>) {
  chomp $line;
  my ($path, $size) = $line =~ /^(\S+) (\d+)$/ or do { print "err bad request\n"; next };
  my $fh;
  if (!open($fh, '<', $path)) { print "err open: $!\n"; next }
  my (@m, $err);
  my $p = 0;
  while ($p < $size) {
    my $d = sysseek($fh, $p, 3);
    if (!defined $d) { $err = "SEEK_DATA: $!" unless $!{ENXIO}; last }
    $d += 0;
    last if $d >= $size;
    my $h = sysseek($fh, $d, 4);
    if (!defined $h) { $err = "SEEK_HOLE: $!"; last }
    $h += 0;
    $h = $size if $h > $size;
    if ($h <= $d) { $err = "no progress at $d"; last }
    push @m, $d, $h - $d;
    if (@m > 2 * ${MAX_RUNS}) { $err = "too many runs"; last }
    $p = $h;
  }
  close $fh;
  print defined $err ? "err $err\n" : "ok @m\n";
}
`;

/** Asks the helper for data maps; one instance per run, `close()` at its end. */
export class HoleMapper {
  #proc: Spawned | null = null;
  #broken: string | null = null;
  #pending: { resolve: (line: string) => void; reject: (e: Error) => void }[] = [];
  #buffer = '';
  readonly #perl: string;
  readonly #timeoutMs: number;

  readonly #onUnavailable: ((why: string) => void) | undefined;

  /** `onUnavailable`: told once, when the helper stops being usable (not after close()). */
  constructor(o: { perl?: string; timeoutMs?: number; onUnavailable?: (why: string) => void } = {}) {
    this.#perl = o.perl ?? 'perl';
    this.#timeoutMs = o.timeoutMs ?? 20_000;
    this.#onUnavailable = o.onUnavailable;
  }

  /** Why the helper cannot be used (after a failure), or null. */
  get unavailable(): string | null {
    return this.#broken;
  }

  #start(): Spawned {
    if (this.#proc) return this.#proc;
    const p = spawnProcess(this.#perl, ['-e', SCRIPT], { stdin: 'pipe', stdout: 'pipe', env: { LC_ALL: 'C' }, detached: true }, 'perl (hole map helper)');
    this.#proc = p;
    p.child.stdin?.on('error', () => undefined); // its exit says why
    p.child.stdout?.setEncoding('utf8');
    p.child.stdout?.on('data', (s: string) => {
      this.#buffer += s;
      let nl: number;
      while ((nl = this.#buffer.indexOf('\n')) !== -1) {
        const line = this.#buffer.slice(0, nl);
        this.#buffer = this.#buffer.slice(nl + 1);
        this.#pending.shift()?.resolve(line);
      }
    });
    void p.child.then((r) => {
      const why = `the hole map helper (${this.#perl}) ended: ${r.exitCode !== undefined ? `exit ${r.exitCode}` : (r.signal ?? r.originalMessage ?? 'failed')}${p.stderr.text() ? `: ${p.stderr.text()}` : ''}`;
      this.#fail(why);
    });
    return p;
  }

  #fail(why: string): void {
    if (this.#broken === null) {
      this.#broken = why;
      this.#onUnavailable?.(why);
    }
    for (const w of this.#pending.splice(0)) w.reject(new QvmBackupError('ERR_IO', why));
  }

  /**
   * The data runs of the open file `fd` (of this process) of `size` bytes, in order; null when the
   * helper is not available or could not map this file (the caller then uses GNU tar).
   */
  async map(fd: number, size: number): Promise<Run[] | null> {
    if (this.#broken !== null) return null;
    const p = this.#start();
    const line = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#fail(`the hole map helper did not answer within ${this.#timeoutMs / 1000} s`);
        p.child.kill('SIGKILL');
      }, this.#timeoutMs);
      this.#pending.push({
        resolve: (l) => {
          clearTimeout(timer);
          resolve(l);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      p.child.stdin?.write(`/proc/${process.pid}/fd/${fd} ${size}\n`);
    }).catch(() => null);
    if (line === null || !line.startsWith('ok')) return null;
    return parseRuns(line.slice(2).trim(), size);
  }

  /** Stop the helper (end of the run). */
  async close(): Promise<void> {
    const p = this.#proc;
    if (!p) return;
    this.#broken ??= 'closed';
    p.child.stdin?.end();
    const killer = setTimeout(() => p.child.kill('SIGKILL'), 5000);
    await p.child.catch(() => undefined);
    clearTimeout(killer);
  }
}

/** "o1 l1 o2 l2 ..." → runs, checked: in order, not overlapping, inside the file; null if not. */
export function parseRuns(text: string, size: number): Run[] | null {
  if (text === '') return [];
  const nums = text.split(' ').map(Number);
  if (nums.length % 2 !== 0 || nums.length > 2 * MAX_RUNS) return null;
  const runs: Run[] = [];
  let end = 0;
  for (let i = 0; i < nums.length; i += 2) {
    const offset = nums[i]!;
    const length = nums[i + 1]!;
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < end || length <= 0 || offset + length > size) return null;
    runs.push({ offset, length });
    end = offset + length;
  }
  return runs;
}
