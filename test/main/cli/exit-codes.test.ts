// Exit statuses come from error codes only: an error that crossed a worker thread (a plain object
// with its code) keeps its status, a message that merely mentions a cause does not change it, and a
// full disk is recognised by errno also under a generic wrapper.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { exitCodeFor, exitCodeForSignal, EXIT } from '../../../src/main/cli/exit-codes.js';
import { QvmBackupError } from '../../../src/main/errors.js';

test('exit status by code, never by message text', () => {
  assert.equal(exitCodeFor(new QvmBackupError('ERR_CHUNK_AUTH', 'x')), EXIT.INTEGRITY);
  assert.equal(exitCodeFor(structuredClone({ code: 'ERR_CHUNK_AUTH', message: 'from a worker' })), EXIT.INTEGRITY);
  assert.equal(exitCodeFor(Object.assign(new Error('tar failed'), { code: 'ERR_TAR_FAILED' })), EXIT.TAR);
  assert.equal(exitCodeFor(new QvmBackupError('ERR_USAGE', 'x')), EXIT.USAGE);
  assert.equal(exitCodeFor(new QvmBackupError('ERR_PLAN', 'x')), EXIT.USAGE);
  assert.equal(exitCodeFor(new QvmBackupError('ERR_DECLINED', 'x')), EXIT.OK);
  assert.equal(exitCodeFor(new Error('No space left on device (ENOSPC): a chunk failed authentication')), EXIT.FAILURE);
  assert.equal(exitCodeFor(new QvmBackupError('ERR_IO', 'write failed', {}, Object.assign(new Error('x'), { code: 'ENOSPC' }))), EXIT.NO_SPACE);
  assert.equal(exitCodeFor(Object.assign(new Error('x'), { code: 'EDQUOT' })), EXIT.NO_SPACE);
  assert.equal(exitCodeFor(new QvmBackupError('ERR_CHUNK_AUTH', 'x', {}, Object.assign(new Error('x'), { code: 'ENOSPC' }))), EXIT.INTEGRITY, 'a specific code wins over its cause');
  assert.equal(exitCodeFor('a string'), EXIT.FAILURE);
  assert.equal(exitCodeForSignal('SIGINT'), 130);
  assert.equal(exitCodeForSignal('SIGTERM'), 143);
});
