// The output sink that pipes the backup into `sh -c <command>` (or, for --dest-vm, into qvm-run).
// The program runs in its own process group so abort() stops the whole pipeline (dash forks, so
// killing sh alone leaves e.g. `sleep` running).
import { QvmBackupError } from '../errors.js';
import type { Sink } from './sink-types.js';
import { exitDetail, processContext, spawnProcess } from './spawn.js';
import { signalGroup } from './child-lifetime.js';
import { writableWrite } from './writable-write.js';
import { boundedWait, orAbort } from '../pipeline/waits.js';
import { oneLine } from './tail-buffer.js';

/** How long a command that stopped reading gets to exit before it is killed. */
const EXIT_GRACE_MS = 5000;

/** What the wrapper says (on the program's stderr, with UNREAD_STATUS) when the program exited 0
 *  and left archive bytes unread in its stdin pipe. */
const UNREAD_MARK = 'qvm-backup: the program exited with status 0 and left archive data unread';
const UNREAD_STATUS = 125;
/**
 * `sh -c UNREAD_CHECK sh program args…`: runs the program on our pipe, then — when it exited 0 —
 * reads what is left there: a byte means it did not take the whole archive. A command that exits
 * 0 having read only part of it (`head -c N > file`, or one that reads nothing) must not pass for
 * a backup taken: the bytes it left are lost when the pipe closes, and a write of ours fails with
 * EPIPE only when they do not fit in the pipe's buffer (up to a few hundred KiB went unnoticed).
 * Any other exit status is the program's own.
 */
const UNREAD_CHECK = `"$@"; rc=$?; if [ "$rc" -eq 0 ] && [ "$(head -c 1 | wc -c)" -ne 0 ]; then echo '${UNREAD_MARK}' >&2; exit ${UNREAD_STATUS}; fi; exit "$rc"`;

/**
 * A sink feeding `sh -c <shellCommand>` on its stdin. commit() closes stdin and requires exit 0
 * (else ERR_IO with the exit code and stderr tail); abort() kills the command's process group.
 * The command's stdout goes to our stderr so that it never mixes with backup data.
 */
export function commandSink(shellCommand: string, env?: Record<string, string>): Sink {
  return processSink('sh', ['-c', shellCommand], { description: `command ${shellCommand}`, what: 'output command', command: shellCommand, stdout: 2, ...(env ? { env } : {}) });
}

export interface ProcessSinkOptions {
  /** for Sink.description */
  description: string;
  /** how messages name the program ("output command", "qubes.Backup in VM backupvm") */
  what: string;
  /** the error context's `command` */
  command: string;
  /** where the program's stdout goes: our stderr (2) or nowhere */
  stdout: 2 | 'ignore';
  /** written before the archive: the location line of qubes.Backup */
  firstLine?: string;
  /** added to the program's environment */
  env?: Record<string, string>;
}

/** A sink feeding `program args` on its stdin; see commandSink. */
export function processSink(program: string, args: readonly string[], o: ProcessSinkOptions): Sink {
  const ctx = { command: o.command };
  // own process group, killed as a whole (execa's `cleanup` skips detached children)
  const { child, stderr: tail } = spawnProcess('sh', ['-c', UNREAD_CHECK, 'sh', program, ...args], { stdin: 'pipe', stdout: o.stdout, detached: true, ...(o.env ? { env: o.env } : {}) }, o.command);
  const killGroup = (signal: NodeJS.Signals): void => void signalGroup(child.pid, signal);
  // Our replacement for execa's `cleanup: true`: never leave the command running when we exit.
  const onExit = (): void => killGroup('SIGKILL');
  process.on('exit', onExit);
  const result = child.then((r) => r);
  void result.finally(() => process.off('exit', onExit));
  // The command's own exit, which is what is waited for: execa's result also waits for its pipes
  // to close, and a process the command left behind (a `sleep &`, an ssh master) may hold stderr
  // open for hours. What it left is killed with the group at our exit.
  const exited = new Promise<{ exitCode?: number; signal?: NodeJS.Signals; failed: boolean; originalMessage: string }>((res) => {
    child.once('exit', (code, sig) => res({ ...(code !== null ? { exitCode: code } : {}), ...(sig !== null ? { signal: sig } : {}), failed: code !== 0, originalMessage: '' }));
    child.once('error', (e) => res({ failed: true, originalMessage: e.message }));
  });

  const stdin = child.stdin;
  let inputError: Error | null = null;
  stdin?.on('error', (e) => {
    inputError ??= e;
  });

  /** Wait for the command to end, killing it after `graceMs`. */
  const ended = async (graceMs: number): Promise<Awaited<typeof exited>> => {
    const first = await boundedWait(exited, graceMs);
    if (first !== 'timeout') return first;
    killGroup('SIGTERM');
    const second = await boundedWait(exited, 2000);
    if (second !== 'timeout') return second;
    killGroup('SIGKILL');
    return exited;
  };
  const failure = async (what: string, cause?: unknown): Promise<QvmBackupError> => {
    const r = await ended(EXIT_GRACE_MS);
    const said = tail.text();
    const unread = r.exitCode === UNREAD_STATUS && said.includes(UNREAD_MARK);
    const t = oneLine(said.replace(UNREAD_MARK, ''));
    // a command that succeeded but stopped reading (`head -c N > file`) did not take the archive
    const detail = unread || (r.exitCode === 0 && cause !== undefined) ? 'exited with status 0 before it had read the whole archive' : `failed (${exitDetail(r)})`;
    return new QvmBackupError('ERR_IO', `${what}: ${o.what} ${detail}${t ? `: ${t}` : ''}`, processContext(o.command, unread ? { ...r, exitCode: 0 } : r, t), cause);
  };

  let state: 'open' | 'failed' | 'committed' | 'aborted' = 'open';
  const after = (what: string): QvmBackupError =>
    state === 'aborted'
      ? new QvmBackupError('ERR_CANCELLED', `${what} the ${o.what}: it was stopped`, ctx)
      : new QvmBackupError('ERR_INTERNAL', `${what} the ${o.what} after it ended`, ctx);
  // qubes.Backup reads the location first; queued before any archive byte (a pipe write of a short
  // line; its failure shows as the first write's failure)
  if (o.firstLine !== undefined) stdin?.write(o.firstLine);
  return {
    description: o.description,
    async write(data) {
      if (state !== 'open' || !stdin) throw after('write to');
      try {
        await writableWrite(stdin, data, () => inputError);
      } catch (e) {
        if (state !== 'open') throw after('write to');
        state = 'failed';
        throw await failure(`writing to the ${o.what}`, e);
      }
    },
    async commit(signal) {
      if (state !== 'open') throw after('commit of');
      state = 'committed';
      stdin?.end();
      // a command that never exits is stopped by abort(), once the signal has ended this wait
      const r = await orAbort(exited, signal);
      if (r.failed || r.exitCode !== 0) throw await failure('finishing the backup');
    },
    said: () => oneLine(tail.text().replace(UNREAD_MARK, '')),
    async abort() {
      if (state === 'aborted' || (state !== 'open' && child.exitCode !== null)) return;
      state = 'aborted';
      stdin?.destroy();
      await ended(0);
    },
  };
}
