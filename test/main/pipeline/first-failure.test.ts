// FirstFailure: the first real error is the cause; cancellations (ERR_CANCELLED, AbortError, the
// user's interrupt reason) never replace it, and are the cause only when nothing else failed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { QvmBackupError } from '../../../src/main/errors.js';
import { FirstFailure, isCancellation } from '../../../src/main/pipeline/first-failure.js';

test('the first real failure wins over the cancellations before and after it', () => {
  const f = new FirstFailure();
  const cancelled = new QvmBackupError('ERR_CANCELLED', 'scryptEncrypt cancelled');
  const tar = new QvmBackupError('ERR_TAR_FAILED', 'tar failed (exit 2): file shrank');
  f.record(cancelled);
  assert.equal(f.failed, false);
  assert.equal(f.cause, cancelled);
  f.record(tar);
  f.record(new QvmBackupError('ERR_IO', 'a later consequence'));
  f.record(Object.assign(new Error('The task has been aborted'), { name: 'AbortError' }));
  assert.equal(f.failed, true);
  assert.equal(f.cause, tar);
});

test("the user's interrupt reason is a cancellation, not a cause", () => {
  const ac = new AbortController();
  const reason = new Error('interrupted by SIGINT');
  ac.abort(reason);
  const f = new FirstFailure(ac.signal);
  f.record(reason);
  assert.equal(f.failed, false);
  assert.equal(f.cause, reason);
  assert.ok(isCancellation(reason, reason));
  assert.ok(!isCancellation(new Error('EPIPE')));
  assert.equal(new FirstFailure().cause, undefined);
});
