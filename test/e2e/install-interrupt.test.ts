// A restore stopped for good while it installs (helper-67 H3): a second Ctrl-C ("forced exit")
// or kill -9 between moving a group of VM directories into the qubes root and writing qubes.xml.
// The forced exit removes the group's directories itself; after a kill -9 the next restore finds
// them in the killed run's install journal and removes those qubes.xml does not list, and then
// restores the VMs it is asked for. Never a VM directory that qubes.xml does not list, for long.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir, node, RESTORE_BIN } from '../helpers/cli.js';
import { manyVmArchive, unlistedVmDirs } from '../helpers/many-vms.js';

/** Start a restore; once `k` VM directories are in place, send `signals` (10 ms apart). */
async function stopWhileInstalling(args: string[], appvms: string, k: number, signals: NodeJS.Signals[]): Promise<number | null> {
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  child.stderr.resume();
  const exited = new Promise<number | null>((res) => child.once('exit', (code) => res(code)));
  let done = false;
  void exited.then(() => (done = true));
  while (!done && (existsSync(appvms) ? readdirSync(appvms).length : 0) < k) await new Promise((r) => setTimeout(r, 2));
  for (const s of signals) {
    child.kill(s);
    await new Promise((r) => setTimeout(r, 10));
  }
  return exited;
}

test('a forced exit or kill -9 during install leaves no VM directory unlisted for the next restore', { timeout: 300_000 }, async () => {
  const t = tempDir('qvmb-inst-');
  try {
    const { archive, pw } = manyVmArchive(t.dir, 160);
    const hh = join(t.dir, 'hh', 'user');
    mkdirSync(hh, { recursive: true });
    // one Ctrl-C as the first VM directory appears in a new root: nothing installed leaves no
    // root behind (not an empty appvms/ and a lock file); something installed leaves qubes.xml
    const first = join(t.dir, 'host-first');
    await stopWhileInstalling([RESTORE_BIN, '-y', '-p', pw, '--qubes-root', first, '--dom0-home', hh, archive], join(first, 'appvms'), 1, ['SIGINT']);
    assert.ok(!existsSync(first) || existsSync(join(first, 'qubes.xml')), `left: ${existsSync(first) ? readdirSync(first).join(', ') : ''}`);
    assert.deepEqual(existsSync(first) ? unlistedVmDirs(first) : [], []);
    for (const [i, signals] of ([['SIGINT', 'SIGINT'], ['SIGKILL']] as NodeJS.Signals[][]).entries()) {
      const host = join(t.dir, `host${i}`);
      const args = [RESTORE_BIN, '-y', '-p', pw, '--qubes-root', host, '--dom0-home', hh, archive];
      await stopWhileInstalling(args, join(host, 'appvms'), 20, signals);
      if (signals[0] === 'SIGINT') assert.deepEqual(unlistedVmDirs(host), [], 'the forced exit removed what it had not registered');
      // the next restore (of two VMs, one of which the killed run may have left unregistered)
      const again = node(RESTORE_BIN, ['-y', '-p', pw, '--qubes-root', host, '--dom0-home', hh, '--skip-conflicting', archive, 'app-030', 'app-150']);
      assert.ok(again.status === 0 || again.status === 2, again.stderr);
      assert.deepEqual(unlistedVmDirs(host), []);
      assert.deepEqual(readdirSync(host).filter((n) => n.startsWith('.restore-')), [], 'no staging left');
    }
  } finally {
    t.cleanup();
  }
});
