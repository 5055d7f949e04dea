// mergeExtraction: a name that two inner archives of one VM both bring is refused, also when their
// merges run at once (the ordered feeder lets several inner archives finish concurrently).
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { createExtractionDir, mergeExtraction } from '../../../../src/main/restore/stream/extraction.js';

test('two concurrent merges bringing the same name: exactly one fails with "appears twice", nothing replaced', async () => {
  for (let round = 0; round < 20; round++) {
    const staging = mkdtempSync(path.join(tmpdir(), 'qvmb-merge-'));
    try {
      const whole = createExtractionDir(staging);
      mkdirSync(path.join(whole, 'vm9'));
      writeFileSync(path.join(whole, 'vm9', 'private.img'), 'from vm9/.');
      const file = createExtractionDir(staging);
      mkdirSync(path.join(file, 'vm9'));
      writeFileSync(path.join(file, 'vm9', 'private.img'), 'from vm9/private.img');
      const r = await Promise.allSettled([mergeExtraction(whole, 'vm9/.', staging, 'evil'), mergeExtraction(file, 'vm9/private.img', staging, 'evil')]);
      const failed = r.filter((x) => x.status === 'rejected');
      assert.equal(failed.length, 1, `round ${round}: ${JSON.stringify(r.map((x) => x.status))}`);
      assert.match(String((failed[0] as PromiseRejectedResult).reason), /appears twice/);
      // the one that won is intact; the loser's copy still sits in its own extraction directory
      const kept = readFileSync(path.join(staging, 'vm9', 'private.img'), 'utf8');
      assert.equal(kept, r[0]!.status === 'fulfilled' ? 'from vm9/.' : 'from vm9/private.img');
    } finally {
      rmSync(staging, { recursive: true, force: true });
    }
  }
});
