// runRestore with a person to answer (confirmWaits), format 4: the first chunk's key is derived in a
// child while confirm() waits. A "no" (or a failed run) kills that child before runRestore returns,
// also in a library caller that keeps running (the CLI's exit would end it anyway: pdeathsig).
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { runRestore } from '../../../src/main/restore/run-restore.js';
import { makeProgress } from '../../../src/main/cli/common.js';
import { BACKUP_BIN, node, passFile, sampleIn, tempDir } from '../../helpers/cli.js';
import { alive, cmdline, descendants, waitFor } from '../../helpers/processes.js';
import { memberOffsets } from './stream/stream-helpers.js';

const MiB = 1024 * 1024;

test('a declined plan kills the first chunk\'s running derivation before runRestore returns (logN 21, ~10 s of work)', { timeout: 120_000 }, async () => {
  const t = tempDir('qvmb-first-');
  try {
    const { root, home } = sampleIn(t.dir, { bigImageBytes: 4 * MiB, bigDataBytes: 256 * 1024, smallImageBytes: 1 * MiB, smallDataBytes: 16 * 1024 });
    const pw = passFile(t.dir);
    const archive = join(t.dir, 'b.bin');
    const b = node(BACKUP_BIN, ['-y', '--qubes-root', root, '--dom0-home', home, '-p', pw, '--scrypt-logn', '12', archive, 'vault']);
    assert.equal(b.status, 0, b.stderr);
    const bin = readFileSync(archive);
    const first = [...(await memberOffsets(bin)).entries()].find(([n]) => n.endsWith('.000.enc') && !n.startsWith('qubes.xml'))!;
    const at = first[1].offset;
    bin[at + 7] = 21;
    createHash('sha256').update(bin.subarray(at, at + 48)).digest().copy(bin, at + 48, 0, 16);
    writeFileSync(archive, bin);
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
