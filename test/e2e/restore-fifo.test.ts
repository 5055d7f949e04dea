// A named pipe as the archive location: Ctrl-C/SIGTERM ends the run at once, whether no writer has
// come yet (the open is waiting) or a writer is connected but sends nothing (the read is waiting).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { closeSync, constants, openSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { RESTORE_BIN, run, tempDir } from '../helpers/cli.js';
import { waitFor } from '../helpers/processes.js';

/** True when a thread of `pid` sleeps in the kernel's FIFO open, waiting for a writer. */
function waitingForWriter(pid: number): boolean {
  try {
    return readdirSync(`/proc/${pid}/task`).some((tid) => readFileSync(`/proc/${pid}/task/${tid}/wchan`, 'utf8') === 'wait_for_partner');
  } catch {
    return false;
  }
}

for (const writer of ['no writer yet', 'a writer that sends nothing'] as const) {
  test(`SIGTERM while the archive is a FIFO with ${writer}: exit 143 at once`, { timeout: 60_000 }, async () => {
    const t = tempDir();
    let fd: number | undefined;
    try {
      const fifo = path.join(t.dir, 'archive.fifo');
      assert.equal(run('mkfifo', [fifo]).status, 0);
      const pw = path.join(t.dir, 'pw');
      writeFileSync(pw, 'x\n');
      const child = spawn(process.execPath, [RESTORE_BIN, '-q', '-y', '--verify-only', '-p', pw, fifo], { stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
      if (writer === 'no writer yet') {
        await waitFor('the restore to wait for the pipe writer', () => waitingForWriter(child.pid!));
      } else {
        await waitFor('the restore to open the pipe', () => {
          try {
            fd = openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK);
            return true;
          } catch {
            return false;
          }
        });
      }
      child.kill('SIGTERM');
      const code = await Promise.race([exited, new Promise<string>((r) => setTimeout(() => r('still running'), 15_000))]);
      if (code === 'still running') child.kill('SIGKILL');
      assert.equal(code, 143, stderr);
    } finally {
      if (fd !== undefined) closeSync(fd);
      t.cleanup();
    }
  });
}
