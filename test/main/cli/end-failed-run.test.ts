// endFailedRun: how a run that threw ends on the command line when a signal was received — a
// cancellation says what the stop did; a failure the run was already ending with is still said.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { endFailedRun } from '../../../src/main/cli/common.js';
import { QvmBackupError } from '../../../src/main/errors.js';
import { messages } from '../../../src/main/io/message-out.js';
import type { Progress } from '../../../src/main/progress/progress.js';

function ended(err: unknown, interruptedBy: NodeJS.Signals | undefined): { code: number; stderr: string; finished: string[] } {
  const finished: string[] = [];
  const progress = { operation: 'backup', finish: (_ok: boolean, text: string) => void finished.push(text) } as unknown as Progress;
  // the command's messages (io/message-out.ts), caught on their way out
  const out = messages();
  const [write, writeKept] = [out.write.bind(out), out.writeKept.bind(out)];
  let stderr = '';
  out.write = out.writeKept = (s: string | Uint8Array) => {
    stderr += String(s);
    return true;
  };
  try {
    const code = endFailedRun('qvm-backup', err, { json: false, progress, failText: 'Backup failed', interruptedBy });
    return { code, stderr, finished };
  } finally {
    [out.write, out.writeKept] = [write, writeKept];
  }
}

test('a signal after a failure: the signal\'s exit status, and the failure in the one line', () => {
  const r = ended(new QvmBackupError('ERR_TAR_FAILED', 'VM work: tar failed (exit 2): tar: private.img: Cannot stat'), 'SIGINT');
  assert.equal(r.code, 130);
  assert.equal(r.stderr, 'qvm-backup: error: interrupted while ending after a failure: VM work: tar failed (exit 2): tar: private.img: Cannot stat (SIGINT)\n');
  assert.deepEqual(r.finished, ['Backup interrupted']);
});

test('a signal before any failure: the stop\'s own message', () => {
  const r = ended(new QvmBackupError('ERR_CANCELLED', 'backup interrupted: partial archive removed, nothing left in the backup location'), 'SIGTERM');
  assert.equal(r.code, 143);
  assert.equal(r.stderr, 'qvm-backup: error: backup interrupted: partial archive removed, nothing left in the backup location (SIGTERM)\n');
});

test('no signal: the failure with its own exit status', () => {
  const r = ended(new QvmBackupError('ERR_TAR_FAILED', 'VM work: tar failed'), undefined);
  assert.equal(r.code, 7);
  assert.equal(r.stderr, 'qvm-backup: error: VM work: tar failed\n');
});
