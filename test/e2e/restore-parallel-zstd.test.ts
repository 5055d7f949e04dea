// End to end (issue 9): a multi-chunk sparse image of several hundred MiB backed up with `-Z zstd`
// (independent frames with their content size, compressed in the workers) and restored with
// --threads 2 (the frames decoded by the workers: the stage profile counts the frame tasks) and with
// --threads 1 (the streaming decoder): byte-identical both ways, holes kept. Needs zstd in node:zlib
// (Node >= 22.15; CI runs it under Node 24).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { zstdZlib } from '../../src/workers/zstd-zlib.js';
import { BACKUP_BIN, RESTORE_BIN, duKiB, node, passFile, run, sampleIn, tempDir } from '../helpers/cli.js';

const MiB = 1024 * 1024;
const DATA_MIB = 300;
const noZstd = zstdZlib === null ? `Node ${process.version} has no zstd in node:zlib (the zstd program paths are tested elsewhere)` : false;

interface Summary {
  ok: boolean;
  stats?: { stages: { stage: string; count: number }[] };
}

function summaryOf(stdout: string): Summary {
  const line = stdout.trim().split('\n').reverse().find((l) => l.includes('"message_type":"summary"'));
  assert.ok(line !== undefined, `no summary in ${stdout.slice(-500)}`);
  return JSON.parse(line) as Summary;
}

test(`-Z zstd: a ${DATA_MIB} MiB-data image restores identically with --threads 2 (frames in the workers) and --threads 1`, { timeout: 600_000, skip: noZstd }, () => {
  const t = tempDir();
  try {
    const { root, home } = sampleIn(t.dir, { bigImageBytes: 3 * DATA_MIB * MiB, bigDataBytes: DATA_MIB * MiB, smallImageBytes: 4 * MiB, smallDataBytes: 64 * 1024 });
    const pw = passFile(t.dir);
    const archive = join(t.dir, 'a.bin');
    const b = node(BACKUP_BIN, ['-q', '-y', '-p', pw, '--qubes-root', root, '--dom0-home', home, '--scrypt-logn', '12', '--chunk-size', '32M', '-Z', 'zstd', archive, 'work']);
    assert.equal(b.status, 0, b.stderr);
    assert.match(run('tar', ['-xOf', archive, 'backup-header']).stdout, /^compression-filter=zstd$/m);
    const img = join(root, 'appvms/work/private.img');
    for (const threads of [2, 1]) {
      const host = join(t.dir, `host${threads}`);
      const hh = join(t.dir, `hh${threads}`, 'user');
      mkdirSync(hh, { recursive: true });
      const r = node(RESTORE_BIN, ['--json', '--stats', '-y', '-p', pw, '--qubes-root', host, '--dom0-home', hh, '--ignore-missing', '--threads', String(threads), archive]);
      assert.equal(r.status, 0, r.stderr);
      const s = summaryOf(r.stdout);
      assert.equal(s.ok, true);
      const frames = s.stats?.stages.find((x) => x.stage === 'decompress (workers)')?.count ?? 0;
      // one frame per 4 MiB of the inner tar stream (its data plus headers)
      if (threads === 2) assert.ok(frames >= DATA_MIB / 4, `--threads 2: frames decoded by the workers: ${frames}`);
      else assert.equal(frames, 0, '--threads 1: the streaming decoder beside the one worker');
      const restored = join(host, 'appvms/work/private.img');
      const cmp = run('cmp', [img, restored]);
      assert.equal(cmp.status, 0, `--threads ${threads}: ${cmp.stdout}${cmp.stderr}`);
      assert.ok(duKiB(restored) <= duKiB(img) + 64, `--threads ${threads}: holes kept (${duKiB(restored)} KiB vs ${duKiB(img)} KiB)`);
    }
  } finally {
    t.cleanup();
  }
});
