// The output sink that pipes the backup into `sh -c <command>`. The shell runs in its own process
// group so abort() stops the whole pipeline (dash forks, so killing sh alone leaves e.g. `sleep` running).
import { setTimeout as sleep } from 'node:timers/promises';
import { execa } from 'execa';
import { diesWithUs, timedSpawn } from './child-lifetime.js';
import { QvmBackupError } from '../errors.js';
import type { Sink } from './sink.js';
import { TailBuffer } from './tail-buffer.js';
import { writableWrite } from './writable-write.js';

/** How long a command that stopped reading gets to exit before it is killed. */
const EXIT_GRACE_MS = 5000;

/**
 * A sink feeding `sh -c <shellCommand>` on its stdin. commit() closes stdin and requires exit 0
 * (else ERR_IO with the exit code and stderr tail); abort() kills the command's process group.
 * The command's stdout goes to our stderr so that it never mixes with backup data.
 */
export function commandSink(shellCommand: string): Sink {
  const ctx = { command: shellCommand };
  const tail = new TailBuffer(4096);
  const [file, argv] = diesWithUs('sh', ['-c', shellCommand]);
  const child = timedSpawn(() => execa(file, argv, {
    stdin: 'pipe',
    stdout: 2,
    stderr: 'pipe',
    buffer: false,
    reject: false,
    detached: true, // own process group, killed as a whole (execa's `cleanup` skips detached children)
  }));
  const killGroup = (signal: NodeJS.Signals): void => {
    try {
      if (child.pid !== undefined) process.kill(-child.pid, signal);
    } catch {
      // already gone
    }
  };
  // Our replacement for execa's `cleanup: true`: never leave the command running when we exit.
  const onExit = (): void => killGroup('SIGKILL');
  process.on('exit', onExit);
  const result = child.then((r) => r);
  void result.finally(() => process.off('exit', onExit));

  child.stderr?.on('data', (d: Buffer) => tail.push(d));
  const stdin = child.stdin;
  let inputError: Error | null = null;
  stdin?.on('error', (e) => {
    inputError ??= e;
  });

  /** Wait for the command to end, killing it after `graceMs`. */
  const ended = async (graceMs: number): Promise<Awaited<typeof result>> => {
    const first = await Promise.race([result, sleep(graceMs).then(() => null)]);
    if (first) return first;
    killGroup('SIGTERM');
    const second = await Promise.race([result, sleep(2000).then(() => null)]);
    if (second) return second;
    killGroup('SIGKILL');
    return result;
  };
  const failure = async (what: string, cause?: unknown): Promise<QvmBackupError> => {
    const r = await ended(EXIT_GRACE_MS);
    const detail = r.exitCode !== undefined ? `exit ${r.exitCode}` : r.signal ? `signal ${r.signal}` : (r.originalMessage ?? 'failed');
    const t = tail.text();
    return new QvmBackupError('ERR_IO', `${what}: output command failed (${detail})${t ? `: ${t}` : ''}`, { ...ctx, exitCode: r.exitCode, stderrTail: t }, cause);
  };

  let state: 'open' | 'failed' | 'committed' | 'aborted' = 'open';
  const after = (what: string): QvmBackupError =>
    state === 'aborted'
      ? new QvmBackupError('ERR_CANCELLED', `${what} the output command: it was stopped`, ctx)
      : new QvmBackupError('ERR_INTERNAL', `${what} the output command after it ended`, ctx);
  return {
    description: `command ${shellCommand}`,
    async write(data) {
      if (state !== 'open' || !stdin) throw after('write to');
      try {
        await writableWrite(stdin, data, () => inputError);
      } catch (e) {
        if (state !== 'open') throw after('write to');
        state = 'failed';
        throw await failure('writing to the output command', e);
      }
    },
    async commit() {
      if (state !== 'open') throw after('commit of');
      state = 'committed';
      stdin?.end();
      const r = await result;
      if (r.failed || r.exitCode !== 0) throw await failure('finishing the backup');
    },
    async abort() {
      if (state === 'aborted' || (state !== 'open' && child.exitCode !== null)) return;
      state = 'aborted';
      stdin?.destroy();
      await ended(0);
    },
  };
}
