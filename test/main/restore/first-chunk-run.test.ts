// runRestore with a person to answer (confirmWaits), format 4: the first chunk's key is derived in a
// child while confirm() waits. A "no" (or a failed run) kills that child before runRestore returns,
// also in a library caller that keeps running (the CLI's exit would end it anyway: pdeathsig).
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { runRestore } from '../../../src/main/restore/run-restore.js';
import { makeProgress } from '../../../src/main/cli/common.js';
import { smallSampleArchive, tempDir } from '../../helpers/cli.js';
import { alive, cmdline, descendants, waitFor } from '../../helpers/processes.js';
import { forgeFirstChunkLogN } from './stream/stream-helpers.js';

test('a declined plan kills the first chunk\'s running derivation before runRestore returns (logN 21, ~10 s of work)', { timeout: 120_000 }, async () => {
  const t = tempDir('qvmb-first-');
  try {
    const { archive, pw } = smallSampleArchive(t.dir);
    writeFileSync(archive, await forgeFirstChunkLogN(readFileSync(archive), 21));
    const hh = join(t.dir, 'hh', 'user');
    mkdirSync(hh, { recursive: true });
    let child: number | undefined;
    const ac = new AbortController();
    const run = runRestore({
      location: archive,
      qubesRoot: join(t.dir, 'host'),
      dom0Home: hh,
      vms: [],
      exclude: [],
      skipDom0Home: false,
      ignoreUsernameMismatch: false,
      renameConflicting: false,
      skipConflicting: false,
      skipBroken: false,
      ignoreMissing: true,
      verifyOnly: false,
      threads: 2,
      getPassphrase: () => Promise.resolve(readFileSync(pw, 'utf8').trim()),
      confirm: async () => {
        await waitFor('the scrypt child deriving', () => (child = descendants(process.pid).find((p) => cmdline(p).includes('scryptSync'))) !== undefined, 30_000);
        return false;
      },
      confirmWaits: true,
      progress: makeProgress({ quiet: true }, 'restore'),
      signal: ac.signal,
    });
    const t0 = Date.now();
    await assert.rejects(run, (e: Error & { code?: string }) => e.code === 'ERR_DECLINED');
    assert.ok(child !== undefined);
    assert.ok(Date.now() - t0 < 30_000);
    // killed (SIGKILL) before runRestore returned: reaped within moments, not after its ~10 s
    await waitFor('the scrypt child gone', () => !alive(child!), 3000);
  } finally {
    t.cleanup();
  }
});
