// Runs GNU tar through execa and turns its exit into a QvmBackupError (ERR_TAR_FAILED with the
// command, exit code and stderr tail; ERR_CANCELLED on abort). Also finds and checks the tar binary.
import { constants as fsc, promises as fsp } from 'node:fs';
import path from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { execa, type ResultPromise } from 'execa';
import { QvmBackupError } from '../errors.js';
import { TailBuffer } from '../io/tail-buffer.js';
import { diesWithUs, timedSpawn } from '../io/child-lifetime.js';

/** Options every tar driver accepts. */
export interface TarRunOptions {
  /** The tar binary (default: `tar` from PATH). Injectable for tests. */
  tarPath?: string;
  /** Cancels the run: tar is killed (SIGTERM, then SIGKILL after 3 s) and the run fails with ERR_CANCELLED. */
  signal?: AbortSignal;
}

export interface SpawnTarOptions extends TarRunOptions {
  stdin: 'pipe' | 'ignore';
  stdout: 'pipe' | 'ignore';
  /** The file or member the run concerns (error context). */
  file?: string;
  /** Collect stdout as lines (for `tar -t`); stdout must be 'pipe'. */
  collectLines?: boolean;
  /** Removes noise (e.g. multi-volume prompts) from stderr before it is quoted in errors. */
  stderrFilter?: (text: string) => string;
}

export interface TarProcess {
  readonly stdin: Writable | null;
  readonly stdout: Readable | null;
  /** Resolves when tar exited 0; rejects with ERR_TAR_FAILED / ERR_CANCELLED otherwise. */
  readonly done: Promise<void>;
  /** Settles (always resolves) once tar has exited, however it ended. */
  readonly exited: Promise<void>;
  /** Lines of stdout when `collectLines` was set (resolves at exit). */
  readonly lines: Promise<string[]>;
  readonly command: string;
  /** Whether the process has exited. */
  readonly hasExited: () => boolean;
  kill(): void;
}

const MAX_LINES = 1_000_000;

function shellQuote(a: string): string {
  return /^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replaceAll("'", `'\\''`)}'`;
}

/** Spawn tar with LC_ALL=C; stdout/stdin streamed, stderr kept as a bounded tail. */
export function spawnTar(args: string[], opts: SpawnTarOptions): TarProcess {
  const bin = opts.tarPath ?? 'tar';
  const command = [bin, ...args].map(shellQuote).join(' ');
  const tail = new TailBuffer(4096);
  const [file, argv] = diesWithUs(bin, args);
  const child: ResultPromise = timedSpawn(() => execa(file, argv, {
    stdin: opts.stdin,
    stdout: opts.stdout,
    stderr: 'pipe',
    buffer: false,
    reject: false,
    env: { LC_ALL: 'C' },
    cleanup: true,
    forceKillAfterDelay: 3000,
    ...(opts.signal ? { cancelSignal: opts.signal } : {}),
  }));
  child.stderr?.on('data', (d: Buffer) => tail.push(d));
  // EPIPE on tar's stdin surfaces as tar's own exit status; keep it from crashing the process.
  child.stdin?.on('error', () => undefined);

  const lines: string[] = [];
  if (opts.collectLines && child.stdout) {
    let rest = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (s: string) => {
      const parts = (rest + s).split('\n');
      rest = parts.pop() ?? '';
      for (const l of parts) if (lines.length < MAX_LINES) lines.push(l);
    });
    child.stdout.on('end', () => {
      if (rest !== '') lines.push(rest);
    });
  }

  let exitedFlag = false;
  const result = child.then((r) => {
    exitedFlag = true;
    return r;
  });
  const exited = result.then(() => undefined);
  const done = result.then((r) => {
    if (!r.failed && r.exitCode === 0) return;
    const stderrTail = tail.text(opts.stderrFilter);
    const ctx = { command, exitCode: r.exitCode, stderrTail, ...(opts.file !== undefined ? { file: opts.file } : {}) };
    // not found: by spawn itself, or by setpriv failing to exec it (diesWithUs)
    const missing = ((r as { code?: string }).code === 'ENOENT' && r.exitCode === undefined) || (file !== bin && r.exitCode === 127 && /failed to execute/.test(stderrTail));
    if (missing) {
      const msg = opts.tarPath === undefined ? 'GNU tar not found in PATH' : `tar not found: ${opts.tarPath}`;
      throw new QvmBackupError('ERR_TAR_FAILED', msg, ctx, r);
    }
    if (r.isCanceled) throw new QvmBackupError('ERR_CANCELLED', `tar cancelled${opts.file ? ` (${opts.file})` : ''}`, ctx, r);
    const how = r.exitCode !== undefined ? `exit ${r.exitCode}` : r.signal ? `killed by ${r.signal}` : (r.originalMessage ?? 'failed');
    // tar runs with LC_ALL=C, so its errno texts are strerror()'s: a full disk is told apart here,
    // where the failure happens, and keeps its own code (exit 6)
    const full = /: (No space left on device|Disk quota exceeded)$/m.test(stderrTail);
    throw new QvmBackupError(full ? 'ERR_NO_SPACE' : 'ERR_TAR_FAILED', `tar failed (${how}): ${stderrTail || '(no error output)'}`, ctx, r);
  });
  done.catch(() => undefined); // callers await it later; never an unhandled rejection
  return {
    stdin: child.stdin,
    stdout: child.stdout,
    done,
    exited,
    lines: exited.then(() => lines),
    command,
    hasExited: () => exitedFlag,
    kill: () => {
      child.kill('SIGTERM');
    },
  };
}

/** Absolute path of `tar` in PATH; ERR_TAR_FAILED "GNU tar not found in PATH" if there is none. */
export async function findTar(): Promise<string> {
  for (const dir of (process.env['PATH'] ?? '').split(path.delimiter)) {
    if (dir === '') continue;
    const p = path.join(dir, 'tar');
    try {
      await fsp.access(p, fsc.X_OK);
      if ((await fsp.stat(p)).isFile()) return p;
    } catch {
      // not here
    }
  }
  throw new QvmBackupError('ERR_TAR_FAILED', 'GNU tar not found in PATH', { command: 'tar' });
}

const checked = new Map<string, Promise<string>>();

/** Verify that `tarPath` (default: tar in PATH) is GNU tar; resolves to its version line. */
export function checkGnuTar(tarPath?: string): Promise<string> {
  const key = tarPath ?? '';
  let p = checked.get(key);
  if (!p) {
    p = (async () => {
      const bin = tarPath ?? (await findTar());
      const r = await execa(bin, ['--version'], { reject: false, stdin: 'ignore', env: { LC_ALL: 'C' }, timeout: 10_000 });
      const first = String(r.stdout ?? '').split('\n')[0] ?? '';
      if (r.failed || !/\(GNU tar\) \d/.test(first)) {
        const ctx = { command: `${bin} --version`, exitCode: r.exitCode };
        if ((r as { code?: string }).code === 'ENOENT') throw new QvmBackupError('ERR_TAR_FAILED', `tar not found: ${bin}`, ctx);
        throw new QvmBackupError('ERR_TAR_FAILED', `${bin} is not GNU tar (it says ${JSON.stringify(first || r.originalMessage || '')}); GNU tar is required`, ctx);
      }
      return first;
    })();
    checked.set(key, p);
    p.catch(() => checked.delete(key));
  }
  return p;
}
