// A process that exits without its run's cleanup (a second Ctrl-C's process.exit, a crash) still
// removes its partial archive and its FIFO directory (exit-cleanup.ts); a committed archive stays.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { tempDir } from '../../helpers/cli.js';
import { exitWaitsFor, exitWhenSettled } from '../../../src/main/io/exit-cleanup.js';

const child = path.join(path.dirname(fileURLToPath(import.meta.url)), 'exit-cleanup-child.js');

for (const mode of ['exit while writing', 'commit'] as const) {
  test(`process.exit after a file sink and a FIFO directory were made (${mode}): nothing of ours left but a committed archive`, () => {
    const t = tempDir();
    try {
      const target = path.join(t.dir, 'out', 'archive.bin');
      spawnSync('mkdir', ['-p', path.dirname(target), path.join(t.dir, 'tmp')]);
      const r = spawnSync(process.execPath, [child, target, mode === 'commit' ? 'commit' : 'exit'], { encoding: 'utf8', env: { ...process.env, TMPDIR: path.join(t.dir, 'tmp') } });
      assert.equal(r.status, 130, r.stderr);
      const seen = JSON.parse(r.stdout.trim()) as { fifoDir: string; partial: string[] };
      assert.equal(path.dirname(seen.fifoDir), path.join(t.dir, 'tmp'), 'the FIFO directory is made in TMPDIR');
      assert.equal(seen.partial.length, mode === 'commit' ? 0 : 1, 'the partial file existed before the exit');
      assert.equal(existsSync(seen.fifoDir), false, 'FIFO directory removed at exit');
      assert.deepEqual(readdirSync(path.join(t.dir, 'out')), mode === 'commit' ? ['archive.bin'] : [], 'no partial file left; a committed archive kept');
    } finally {
      t.cleanup();
    }
  });
}

test('a forced exit waits for the operations the exit hooks depend on, and for those their continuations start', async () => {
  let finishFirst!: () => void;
  let finishSecond!: () => void;
  let exited = 0;
  const steps: string[] = [];
  const first = exitWaitsFor(new Promise<void>((res) => (finishFirst = res)));
  // what an install does: once the mkdir landed, its continuation starts the rename
  void first.then(() => {
    steps.push('first landed');
    void exitWaitsFor(new Promise<void>((res) => (finishSecond = res))).then(() => steps.push('second landed'));
  });
  const done = new Promise<void>((res) =>
    exitWhenSettled(60_000, () => {
      exited++;
      steps.push('exit');
      res();
    }),
  );
  await new Promise((r) => setImmediate(r));
  assert.equal(exited, 0, 'not while the first operation is in flight');
  finishFirst();
  await new Promise((r) => setImmediate(r));
  assert.equal(exited, 0, 'not while the operation its continuation started is in flight');
  finishSecond();
  await done;
  assert.deepEqual(steps, ['first landed', 'second landed', 'exit']);
  assert.equal(exited, 1);
});

test('a forced exit waits no longer than its bound, and not at all when nothing is in flight; a failed operation counts as landed', async () => {
  await new Promise<void>((res) => exitWhenSettled(60_000, res)); // nothing in flight
  void exitWaitsFor(new Promise<void>(() => {})); // never lands (a hung file system)
  const t0 = Date.now();
  await new Promise<void>((res) => exitWhenSettled(50, res));
  assert.ok(Date.now() - t0 >= 45, 'the bound was waited');
  const failing = exitWaitsFor(Promise.reject(new Error('EIO')));
  await assert.rejects(failing, /EIO/, 'the caller still sees the failure');
});
