// A large restored image whose drop-behind helper cannot drop (a dd without iflag=nocache): the
// writer goes on preparing the page cache ahead instead (image-extractor.ts, FileSink), from the
// moment the helper's failure arrives, and the image is written the same. The end-to-end restore
// (test/e2e/restore-parallel-gunzip.test.ts) cannot check this: there the failure may arrive after
// the last write. Here the writes wait for it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { FileSink } from '../../../../src/main/restore/stream/image-extractor.js';
import { FLUSH_EVERY } from '../../../../src/main/io/background-flush.js';
import { DROP_MIN_BYTES } from '../../../../src/main/io/drop-behind.js';
import { RunStats } from '../../../../src/main/stats/run-stats.js';
import { STAGE } from '../../../../src/main/stats/bound.js';
import { tempDir } from '../../../helpers/cli.js';
import { waitFor } from '../../../helpers/processes.js';
import { SpanList } from '../../../../src/main/tar/single-member-reader.js';

const MiB = 1024 * 1024;
const PIECE = 4 * MiB;

test('a dd that cannot drop: the pages are prepared ahead from then on, no drops, the image the same', { timeout: 120_000 }, async () => {
  const t = tempDir();
  const oldPath = process.env['PATH'];
  try {
    const bad = join(t.dir, 'bad-dd');
    mkdirSync(bad);
    const ran = join(t.dir, 'dd-ran');
    writeFileSync(join(bad, 'dd'), `#!/bin/sh\necho "dd: invalid input flag" >&2\n: > '${ran}'\nexit 1\n`);
    chmodSync(join(bad, 'dd'), 0o755);
    process.env['PATH'] = `${bad}:${oldPath ?? ''}`;

    const out = join(t.dir, 'out');
    mkdirSync(out);
    const dataBytes = DROP_MIN_BYTES + 32 * MiB; // a helper is worth it from DROP_MIN_BYTES on
    const stats = new RunStats({ enabled: true, measureEventLoop: false });
    const sink = new FileSink(out, false, stats, true, false, true);
    await sink.begin({ name: 'vm3/private.img', size: dataBytes + 64 * MiB, mode: 0o644, mtimeSec: 1_700_000_000, spans: SpanList.from([{ offset: 0, length: dataBytes }]) });
    assert.equal(sink.preparingAhead, false, 'with a helper to come, nothing is prepared at first');
    const want = createHash('sha256');
    let at = 0;
    const piece = (): Buffer => {
      const b = Buffer.alloc(PIECE);
      for (let i = 0; i < PIECE; i += 4096) b.writeUInt32LE((at + i) >>> 12, i);
      return b;
    };
    const write = async (): Promise<void> => {
      const b = piece();
      want.update(b);
      await sink.data(at, b);
      at += PIECE;
    };
    // past the first background flush: its drop starts the helper, whose dd fails
    while (at <= FLUSH_EVERY) await write();
    await waitFor('the failing dd to run', () => existsSync(ran), 30_000);
    await waitFor('the writer to prepare the pages ahead instead', () => sink.preparingAhead, 30_000);
    while (at < dataBytes) await write();
    await sink.end();

    const report = stats.report();
    const count = (stage: string): number => report.stages.find((s) => s.stage === stage)?.count ?? 0;
    assert.ok(count(STAGE.restoreImagePrefault) > 0, `pages prepared ahead after the failure: ${count(STAGE.restoreImagePrefault)} reads`);
    assert.equal(count(STAGE.restoreImageDrop), 0, 'no drops');
    const img = join(out, 'vm3/private.img');
    assert.equal(statSync(img).size, dataBytes + 64 * MiB, 'the apparent size');
    const got = createHash('sha256').update(readFileSync(img).subarray(0, dataBytes)).digest('hex');
    assert.equal(got, want.digest('hex'), 'the data the same');
  } finally {
    process.env['PATH'] = oldPath;
    t.cleanup();
  }
});
