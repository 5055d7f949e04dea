// Runs GNU tar through execa and turns its exit into a QvmBackupError (ERR_TAR_FAILED with the
// command, exit code and stderr tail; ERR_CANCELLED on abort). Also finds and checks the tar binary.
import type { Readable, Writable } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';
import { isQvmBackupError, QvmBackupError } from '../errors.js';
import { findInPath } from '../io/child-lifetime.js';
import { exitDetail, processContext, runVersion, spawnProcess } from '../io/spawn.js';
import { oneLine } from '../io/tail-buffer.js';

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
  stderrFilter?: (text: string, part?: 'head' | 'tail') => string;
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
  /** tar's process id (undefined when it could not be started) */
  readonly pid: number | undefined;
  /** Whether the process has exited. */
  readonly hasExited: () => boolean;
  kill(): void;
}

const MAX_LINES = 1_000_000;

/** Calls `onLine` for every complete line of `stream` (UTF-8) as it arrives; returns a function
 *  giving the unfinished line after the last newline so far. */
function eachLine(stream: Readable, onLine: (line: string) => void): () => string {
  const utf8 = new StringDecoder('utf8');
  let rest = '';
  stream.on('data', (d: Buffer) => {
    const parts = (rest + utf8.write(d)).split('\n');
    rest = parts.pop() ?? '';
    for (const l of parts) onLine(l);
  });
  return () => rest;
}

/** The first bytes of a filtered tar's stderr kept beside its tail. */
const STDERR_HEAD_BYTES = 2048;

/** Spawn tar with LC_ALL=C; stdout/stdin streamed, stderr kept as a bounded tail. */
export function spawnTar(args: string[], opts: SpawnTarOptions): TarProcess {
  const bin = opts.tarPath ?? 'tar';
  const { child, command, stderr: tail, viaSetpriv } = spawnProcess(bin, args, {
    stdin: opts.stdin,
    stdout: opts.stdout,
    env: { LC_ALL: 'C' },
    ...(opts.signal ? { signal: opts.signal } : {}),
    // a tar whose chatter is filtered (the multi-volume prompts) may say far more after its first
    // error than the tail holds: its first words are kept too
    ...(opts.stderrFilter ? { stderrHeadBytes: STDERR_HEAD_BYTES } : {}),
  });
  // EPIPE on tar's stdin surfaces as tar's own exit status; keep it from crashing the process.
  child.stdin?.on('error', () => undefined);

  const lines: string[] = [];
  if (opts.collectLines && child.stdout) {
    const rest = eachLine(child.stdout, (l) => {
      if (lines.length < MAX_LINES) lines.push(l);
    });
    child.stdout.on('end', () => {
      if (rest() !== '') lines.push(rest());
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
    const ctx = { ...processContext(command, r, stderrTail), ...(opts.file !== undefined ? { file: opts.file } : {}) };
    // not found: by spawn itself, or by setpriv failing to exec it (diesWithUs)
    const missing = ((r as { code?: string }).code === 'ENOENT' && r.exitCode === undefined) || (viaSetpriv && r.exitCode === 127 && /failed to execute/.test(stderrTail));
    if (missing) {
      const msg = opts.tarPath === undefined ? 'GNU tar not found in PATH' : `tar not found: ${opts.tarPath}`;
      throw new QvmBackupError('ERR_TAR_FAILED', msg, ctx, r);
    }
    if (r.isCanceled) throw new QvmBackupError('ERR_CANCELLED', `tar cancelled${opts.file ? ` (${opts.file})` : ''}`, ctx, r);
    const how = exitDetail(r);
    // tar runs with LC_ALL=C, so its errno texts are strerror()'s: a full disk is told apart here,
    // where the failure happens, and keeps its own code (exit 6)
    const full = /: (No space left on device|Disk quota exceeded)$/m.test(stderrTail);
    // (its closing "Exiting with failure status due to previous errors" says nothing the exit status does not)
    const said = oneLine(stderrTail.replace(/^tar: Exiting with failure status due to previous errors$/gm, ''));
    throw new QvmBackupError(full ? 'ERR_NO_SPACE' : 'ERR_TAR_FAILED', `tar failed (${how}): ${said || '(no error output)'}`, ctx, r);
  });
  done.catch(() => undefined); // callers await it later; never an unhandled rejection
  return {
    stdin: child.stdin,
    stdout: child.stdout,
    done,
    exited,
    lines: exited.then(() => lines),
    command,
    pid: child.pid,
    hasExited: () => exitedFlag,
    kill: () => {
      child.kill('SIGTERM');
    },
  };
}

/** Absolute path of `tar` in PATH; ERR_TAR_FAILED "GNU tar not found in PATH" if there is none. */
export function findTar(): Promise<string> {
  const p = findInPath('tar');
  if (p === null) return Promise.reject(new QvmBackupError('ERR_TAR_FAILED', 'GNU tar not found in PATH', { command: 'tar' }));
  return Promise.resolve(p);
}

const checked = new Map<string, Promise<string>>();

/** Verify that `tarPath` (default: tar in PATH) is GNU tar; resolves to its version line. `signal`
 *  (the run's stop) kills a probe still running and rejects with ERR_CANCELLED; the probe is shared
 *  by the callers that ask while it runs (one run's), and a failed or cancelled one is forgotten. */
export function checkGnuTar(tarPath?: string, signal?: AbortSignal): Promise<string> {
  const key = tarPath ?? '';
  let p = checked.get(key);
  if (!p) {
    p = (async () => {
      const bin = tarPath ?? (await findTar());
      const out = await runVersion(bin, 10_000, 'ERR_TAR_FAILED', signal).catch((e: unknown) => {
        if (isQvmBackupError(e) && e.code === 'ERR_CANCELLED') throw e;
        const c = (e as QvmBackupError).context;
        const ctx = { command: `${bin} --version`, exitCode: c.exitCode };
        if (c['missing'] === true) throw new QvmBackupError('ERR_TAR_FAILED', `tar not found: ${bin}`, ctx, e);
        throw new QvmBackupError('ERR_TAR_FAILED', `${bin} is not GNU tar (${(e as Error).message}); GNU tar is required`, ctx, e);
      });
      const first = out.split('\n')[0] ?? '';
      if (!/\(GNU tar\) \d/.test(first)) throw new QvmBackupError('ERR_TAR_FAILED', `${bin} is not GNU tar (it says ${JSON.stringify(first)}); GNU tar is required`, { command: `${bin} --version`, exitCode: 0 });
      return first;
    })();
    checked.set(key, p);
    p.catch(() => checked.delete(key));
  }
  return p;
}
