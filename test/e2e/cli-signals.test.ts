// Signals and the confirmation at every phase a run can wait in: SIGINT/SIGTERM end the run with
// 130/143 and no output left behind, also while it waits for a passphrase or for the y/N answer
// (which a blocking read used to hold until Enter) or for a hung `tar --version` start-up check
// (which used to hold it for its 10 s timeout); answering "no" is exit 0, "nothing done".
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, mkdirSync, readFileSync, openSync, closeSync, readlinkSync, constants, writeFileSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir, passFile, node, run, haveCmd, BACKUP_BIN, RESTORE_BIN, sampleIn } from '../helpers/cli.js';
import { alive, cmdline, descendants, waitFor } from '../helpers/processes.js';

const MiB = 1024 * 1024;
const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

function sample(dir: string) {
  return sampleIn(dir, { bigImageBytes: 64 * MiB, bigDataBytes: 12 * MiB, smallImageBytes: 8 * MiB, smallDataBytes: 256 * 1024 });
}

/** Start a command; collects stdout+stderr; `exit(ms)` fails the test when it does not end in time. */
function start(cmd: string, args: string[], env?: NodeJS.ProcessEnv, o: { detached?: boolean } = {}) {
  const child: ChildProcess = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], ...(env ? { env } : {}), detached: o.detached === true });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return {
    child,
    output: () => out,
    async exit(ms = 15_000): Promise<number | null> {
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`no exit within ${ms} ms after the signal:\n${out}`)), ms)));
      try {
        return await Promise.race([exited, late]);
      } finally {
        clearTimeout(timer);
      }
    },
    cleanup(): void {
      for (const p of [...descendants(child.pid!), child.pid!]) if (alive(p)) process.kill(p, 'SIGKILL');
    },
  };
}

const expected = { SIGINT: 130, SIGTERM: 143, SIGHUP: 129 } as const;

for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  test(`${sig} while waiting for the passphrase on stdin: exit ${expected[sig]} at once, nothing written`, async () => {
    const t = tempDir();
    try {
      const { root, home } = sample(t.dir);
      const out = join(t.dir, 'out');
      mkdirSync(out);
      const r = start(process.execPath, [BACKUP_BIN, '--qubes-root', root, '--dom0-home', home, '-y', '-p', '-', out]);
      try {
        await waitFor('the plan', () => r.output().includes('Total size:')); // then the passphrase is read
        r.child.kill(sig);
        assert.equal(await r.exit(), expected[sig], r.output());
        assert.match(r.output(), new RegExp(`qvm-backup: error: .*${sig}`));
        assert.deepEqual(readdirSync(out), []);
      } finally {
        r.cleanup();
      }
    } finally {
      t.cleanup();
    }
  });
}

for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) test(`${sig} while a backup writes: exit ${expected[sig]}, partial file removed, no child process left`, { timeout: 120_000 }, async () => {
  const t = tempDir();
  try {
    const { root, home } = sample(t.dir);
    const pw = passFile(t.dir);
    const out = join(t.dir, 'out');
    mkdirSync(out);
    const r = start(process.execPath, [BACKUP_BIN, '-q', '--qubes-root', root, '--dom0-home', home, '-p', pw, '-y', '--scrypt-logn', '16', '--chunk-size', '1M', out]);
    try {
      // images are archived in-process (tar runs only for the dom0 home, briefly, at the end): the
      // run's children are then the hole-map helper (perl) and any tar
      await waitFor('a child reading the VMs while the partial file exists', () => readdirSync(out).some((n) => n.includes('.partial-')) && descendants(r.child.pid!).some((p) => /\btar -Pc|perl/.test(cmdline(p))));
      const tree = descendants(r.child.pid!);
      r.child.kill(sig);
      assert.equal(await r.exit(30_000), expected[sig], r.output());
      assert.deepEqual(readdirSync(out), [], 'partial output removed');
      assert.deepEqual(tree.filter(alive), [], 'no child process left');
      assert.doesNotMatch(readFileSync(join(root, 'qubes.xml'), 'utf8'), /backup_timestamp/);
    } finally {
      r.cleanup();
    }
  } finally {
    t.cleanup();
  }
});

test('SIGINT to the whole process group (a terminal\'s Ctrl-C) while a backup writes: exit 130, one clean message, nothing left', { timeout: 120_000 }, async () => {
  // the terminal signals every process of the group at once: tar, the hole-map helper and the
  // compression program get it too, and their ends must not read as the run's news
  const t = tempDir();
  try {
    const { root, home } = sample(t.dir);
    const pw = passFile(t.dir);
    for (let i = 0; i < 3; i++) {
      const out = join(t.dir, `out-${i}`);
      mkdirSync(out);
      const r = start(process.execPath, [BACKUP_BIN, '--qubes-root', root, '--dom0-home', home, '-p', pw, '-y', '--scrypt-logn', '16', '--chunk-size', '1M', ...(i === 1 ? ['-Z', 'xz'] : []), out], undefined, { detached: true });
      try {
        await waitFor('the hole-map helper while the partial file exists', () => readdirSync(out).some((n) => n.includes('.partial-')) && descendants(r.child.pid!).some((p) => /perl/.test(cmdline(p))));
        process.kill(-r.child.pid!, 'SIGINT');
        assert.equal(await r.exit(30_000), 130, r.output());
        const o = r.output();
        assert.doesNotMatch(o, /hole map helper|GNU tar makes|^\s+at |node:internal/m, o);
        assert.match(o, /^qvm-backup: error: backup interrupted: partial archive removed, nothing left in the backup location \(SIGINT\)$/m, o);
        assert.deepEqual(o.split('\n').filter((l) => l.startsWith('warning:')), ['warning: SIGINT: stopping (press Ctrl-C again to force)'], o);
        assert.deepEqual(readdirSync(out), [], 'partial output removed');
      } finally {
        r.cleanup();
      }
    }
  } finally {
    t.cleanup();
  }
});

test('after SIGINT the progress says "stopping" (JSON status phase), for backup and restore', { timeout: 180_000 }, async () => {
  const t = tempDir();
  try {
    const { root, home } = sample(t.dir);
    const pw = passFile(t.dir);
    const archive = join(t.dir, 'b.bin');
    // logN 19: the header's key derivation keeps each run busy for a second or more
    const made = node(BACKUP_BIN, ['-q', '-y', '--qubes-root', root, '--dom0-home', home, '-p', pw, '--scrypt-logn', '19', archive, 'vault']);
    assert.equal(made.status, 0, made.stderr);
    const host = join(t.dir, 'host');
    mkdirSync(join(host, 'h', 'user'), { recursive: true });
    for (const args of [
      [BACKUP_BIN, '--json', '-y', '--qubes-root', root, '--dom0-home', home, '-p', pw, '--scrypt-logn', '19', join(t.dir, 'b2.bin')],
      [RESTORE_BIN, '--json', '-y', '-p', pw, '--qubes-root', join(host, 'q'), '--dom0-home', join(host, 'h', 'user'), '--ignore-missing', archive],
    ]) {
      const r = start(process.execPath, args);
      try {
        await waitFor('a status line', () => r.output().includes('"message_type":"status"'));
        r.child.kill('SIGINT');
        assert.equal(await r.exit(60_000), 130, r.output());
        const lines = r.output().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { message_type: string; phase?: string | null });
        const stopping = lines.findIndex((l) => l.message_type === 'status' && l.phase === 'stopping');
        assert.ok(stopping >= 0, r.output());
        assert.ok(lines.slice(stopping + 1).every((l) => l.message_type !== 'status' || l.phase === 'stopping'), `no other phase after it: ${r.output()}`);
      } finally {
        r.cleanup();
      }
    }
  } finally {
    t.cleanup();
  }
});

test('a second SIGINT while the first one stops the run (forced exit): exit 130 at once, the partial file still removed', { timeout: 120_000 }, async () => {
  const t = tempDir();
  try {
    const { root, home } = sample(t.dir);
    const pw = passFile(t.dir);
    const out = join(t.dir, 'out');
    mkdirSync(out);
    // logN 19: the stop waits for the key derivations in the workers (about a second each), so the
    // second signal comes while it does
    const r = start(process.execPath, [BACKUP_BIN, '--qubes-root', root, '--dom0-home', home, '-p', pw, '-y', '--scrypt-logn', '19', out]);
    try {
      await waitFor('the partial file', () => readdirSync(out).some((n) => n.includes('.partial-')));
      r.child.kill('SIGINT');
      await waitFor('the first signal taken', () => r.output().includes('stopping (press Ctrl-C again to force)'));
      r.child.kill('SIGINT');
      assert.equal(await r.exit(30_000), 130, r.output());
      assert.match(r.output(), /forced exit/);
      assert.deepEqual(readdirSync(out), [], 'no partial file left by the forced exit');
    } finally {
      r.cleanup();
    }
  } finally {
    t.cleanup();
  }
});

for (const writer of ['no writer yet', 'a writer that sends nothing'] as const) {
  test(`SIGTERM while the passphrase file is a FIFO with ${writer}: exit 143 at once`, async () => {
    const t = tempDir();
    try {
      const { root, home } = sample(t.dir);
      const pw = passFile(t.dir);
      const archive = join(t.dir, 'b.bin');
      const b = node(BACKUP_BIN, ['-q', '--qubes-root', root, '--dom0-home', home, '-p', pw, '-y', '--scrypt-logn', '10', archive, 'vault']);
      assert.equal(b.status, 0, b.stderr);
      const fifo = join(t.dir, 'pass.fifo');
      assert.equal(run('mkfifo', [fifo]).status, 0);
      const r = start(process.execPath, [RESTORE_BIN, '-y', '--verify-only', '-p', fifo, archive]);
      let fd: number | undefined;
      try {
        if (writer === 'no writer yet') {
          await waitFor('the command to open the FIFO', () => readdirSync(`/proc/${r.child.pid!}/fd`).some((n) => readlinkOr(`/proc/${r.child.pid!}/fd/${n}`) === fifo));
        } else {
          // opening the write end without blocking succeeds once the command has the FIFO open to read
          await waitFor('the command to open the FIFO', () => {
            try {
              fd = openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK);
              return true;
            } catch {
              return false;
            }
          });
        }
        r.child.kill('SIGTERM');
        assert.equal(await r.exit(), 143, r.output());
      } finally {
        if (fd !== undefined) closeSync(fd);
        r.cleanup();
      }
    } finally {
      t.cleanup();
    }
  });
}

test('SIGINT while the start-up `tar --version` check hangs: exit 130 within 2 s, the probe killed, no stack trace', { timeout: 60_000 }, async () => {
  const t = tempDir();
  try {
    // the first `tar` in PATH notes its pid, then hangs (exec: the probe itself sleeps)
    const bin = join(t.dir, 'bin');
    mkdirSync(bin);
    const pids = join(t.dir, 'tar-pids');
    writeFileSync(join(bin, 'tar'), `#!/bin/sh\necho $$ >> ${q(pids)}\nexec sleep 30\n`);
    chmodSync(join(bin, 'tar'), 0o755);
    const env = { ...process.env, PATH: `${bin}:${process.env['PATH'] ?? ''}` };
    const pw = passFile(t.dir);
    const archive = join(t.dir, 'a.bin');
    writeFileSync(archive, 'never read: tar is checked first');
    const out = join(t.dir, 'out');
    mkdirSync(out);
    const qubes = join(t.dir, 'qubes');
    mkdirSync(qubes);
    const commands = [
      ['qvm-backup', BACKUP_BIN, '-y', '-p', pw, '--qubes-root', qubes, '--dom0-home', join(t.dir, 'home'), out],
      ['qvm-backup-restore', RESTORE_BIN, '-y', '-p', pw, '--qubes-root', join(t.dir, 'host'), '--dom0-home', join(t.dir, 'hh'), archive],
    ];
    for (const [prog, ...argv] of commands) {
      writeFileSync(pids, '');
      const r = start(process.execPath, argv, env);
      try {
        await waitFor('the tar probe', () => readFileSync(pids, 'utf8').trim() !== '' || r.child.exitCode !== null);
        assert.equal(r.child.exitCode, null, r.output());
        const probe = Number(readFileSync(pids, 'utf8').trim());
        assert.ok(alive(probe), 'the probe runs');
        r.child.kill('SIGINT');
        assert.equal(await r.exit(2_000), 130, r.output());
        assert.match(r.output(), new RegExp(`${prog}: error: .*SIGINT`));
        assert.doesNotMatch(r.output(), /^\s+at /m, 'no stack trace');
        await waitFor('the probe to be gone', () => !alive(probe), 2_000);
        nothingWritten(out, t.dir);
      } finally {
        r.cleanup();
      }
    }
  } finally {
    t.cleanup();
  }
});

/** No archive in `out`, no restore target (host, hh) in `dir`. */
function nothingWritten(out: string, dir: string): void {
  assert.deepEqual(readdirSync(out), []);
  assert.deepEqual(readdirSync(dir).filter((n) => n === 'host' || n === 'hh'), [], 'nothing created for the restore');
}

function readlinkOr(p: string): string {
  try {
    return readlinkSync(p);
  } catch {
    return '';
  }
}

// The y/N question is only asked on a terminal: `script` gives the command one (a pty).
const pty = haveCmd('script') ? false : 'util-linux script(1) is not installed';

for (const answer of ['decline', 'ctrl-c'] as const) {
  test(`confirmation on a terminal, ${answer}: ${answer === 'decline' ? 'exit 0 "nothing done"' : 'Ctrl-C ends the wait, exit 130'}; nothing written`, { skip: pty, timeout: 60_000 }, async () => {
    const t = tempDir();
    try {
      const { root, home } = sample(t.dir);
      const pw = passFile(t.dir);
      const out = join(t.dir, 'out');
      mkdirSync(out);
      const archive = join(t.dir, 'b.bin');
      const b = node(BACKUP_BIN, ['-q', '--qubes-root', root, '--dom0-home', home, '-p', pw, '-y', '--scrypt-logn', '10', archive, 'vault']);
      assert.equal(b.status, 0, b.stderr);
      const host = join(t.dir, 'host');
      const commands = [
        [BACKUP_BIN, '--qubes-root', root, '--dom0-home', home, '-p', pw, '--scrypt-logn', '10', out],
        [RESTORE_BIN, '--qubes-root', host, '--dom0-home', join(t.dir, 'hh', 'user'), '--ignore-missing', '-p', pw, archive],
      ];
      for (const argv of commands) {
        const r = start('script', ['-qec', `exec ${[process.execPath, ...argv].map(q).join(' ')}`, '/dev/null']);
        try {
          await waitFor('the question', () => r.output().includes('[y/N]') || r.child.exitCode !== null).catch((e: Error) => assert.fail(`${e.message}: ${r.output()}`));
          assert.equal(r.child.exitCode, null, r.output());
          r.child.stdin!.write(answer === 'decline' ? 'n\n' : '\x03');
          const code = await r.exit();
          if (answer === 'decline') {
            assert.equal(code, 0, r.output());
            assert.match(r.output(), /: cancelled by the user: nothing done/);
          } else {
            assert.equal(code, 130, r.output());
          }
          nothingWritten(out, t.dir);
        } finally {
          r.cleanup();
        }
      }
    } finally {
      t.cleanup();
    }
  });
}
