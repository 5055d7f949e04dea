// The VM size limit of a restore (size-limit.ts): what a VM's inner archives may unpack to.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isQvmBackupError } from '../../../../src/main/errors.js';
import { SIZE_LIMIT_SLACK, SizeLimit, TrialCount, sizeLimitFor } from '../../../../src/main/restore/stream/size-limit.js';

test('the limit is the stated size, a quarter more and 64 MiB', () => {
  assert.equal(sizeLimitFor(0), SIZE_LIMIT_SLACK);
  assert.equal(sizeLimitFor(8 * 1024 ** 3), 10 * 1024 ** 3 + 64 * 1024 * 1024);
  assert.equal(sizeLimitFor(20480), 20480 + 5120 + 64 * 1024 * 1024);
});

test('take counts every file of the VM; past the limit it throws ERR_TOO_LARGE, then at every call', () => {
  const l = new SizeLimit('work', 0);
  l.take(SIZE_LIMIT_SLACK - 10, 'vm3/private.img');
  l.take(10, 'vm3/root.img');
  assert.equal(l.exceeded, false);
  assert.throws(() => l.take(1, 'vm3/firewall.xml'), (e: unknown) => isQvmBackupError(e) && e.code === 'ERR_TOO_LARGE' && e.context.vm === 'work' && e.context.file === 'vm3/firewall.xml' && /VM work/.test(e.message) && /--ignore-size-limit/.test(e.message));
  assert.equal(l.exceeded, true);
  assert.throws(() => l.take(0, 'vm3/firewall.xml'), /more data for VM work/);
  assert.match(String((() => { try { new SizeLimit('dom0', 5).take(SIZE_LIMIT_SLACK + 100, 'dom0-home/user'); } catch (e) { return (e as Error).message; } })()), /the dom0 home/);
});

test('giveBack uncounts a pass whose bytes are counted again elsewhere', () => {
  const l = new SizeLimit('work', 0);
  l.take(SIZE_LIMIT_SLACK, 'vm3/apps');
  l.giveBack(SIZE_LIMIT_SLACK);
  assert.equal(l.used, 0);
  l.take(SIZE_LIMIT_SLACK, 'vm3/apps');
  assert.equal(l.exceeded, false);
});

test('a trial pass gives back its own bytes only, whatever other files of the VM counted meanwhile', () => {
  const l = new SizeLimit('work', 0);
  const trial = new TrialCount(l);
  trial.take(1000, 'vm3/firewall.xml');
  l.take(5000, 'vm3/private.img'); // another inner archive of the VM, between the trial's takes
  trial.take(24, 'vm3/firewall.xml');
  trial.giveBackOwn();
  assert.equal(l.used, 5000);
  trial.giveBackOwn(); // nothing left of its own
  assert.equal(l.used, 5000);
  // it counts into the limit like any other, and sees the VM's state
  assert.throws(() => new TrialCount(l).take(SIZE_LIMIT_SLACK, 'vm3/notes.txt'), /more data for VM work/);
  assert.equal(new TrialCount(l).exceeded, true);
});
