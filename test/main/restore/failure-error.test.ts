// The line of a restore where VMs failed: each VM named once, even when its error names it too;
// partial (exit 3) when something was restored, else (and always for a verification) the first
// failure's own code.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { failureError } from '../../../src/main/restore/run-restore.js';

test('each failed VM is named once, also when its error starts with its name', () => {
  const e = failureError(
    [
      { name: 'work', error: 'work: vm3/notes.txt in vm3/notes.txt: a FIFO; refusing to restore it', code: 'ERR_UNSAFE_MEMBER' },
      { name: 'vault', error: 'workshop: not this VM\'s name at the start', code: 'ERR_CORRUPT' },
    ],
    ['personal'],
    3,
    false,
    undefined,
    undefined,
  );
  assert.equal(e.code, 'ERR_PARTIAL');
  assert.equal(e.message, "restore incomplete for 2 of 3:\n  work: vm3/notes.txt in vm3/notes.txt: a FIFO; refusing to restore it\n  vault: workshop: not this VM's name at the start");
  const none = failureError([{ name: 'work', error: 'work: broken', code: 'ERR_CORRUPT' }], [], 1, true, undefined, undefined);
  assert.equal(none.code, 'ERR_CORRUPT');
  assert.equal(none.message, 'verification failed:\n  work: broken');
});

test('a verification is never partial: its status is the first failure\'s, also when other VMs verified', () => {
  const e = failureError([{ name: 'work', error: 'work: a chunk failed authentication', code: 'ERR_CHUNK_AUTH' }], ['personal', 'vault'], 3, true, undefined, undefined);
  assert.equal(e.code, 'ERR_CHUNK_AUTH');
  assert.equal(e.message, 'verification failed for 1 of 3:\n  work: a chunk failed authentication');
});
