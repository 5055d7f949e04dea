// resolveDestination with --dest-command: the command learns the location as $QVM_BACKUP_LOCATION
// in its own environment; the backup's own environment stays as it was.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { resolveDestination } from '../../../src/main/backup/destination.js';
import { tempDir } from '../../helpers/cli.js';

test('--dest-command: $QVM_BACKUP_LOCATION is set for the command only', async () => {
  const d = tempDir();
  try {
    const before = process.env['QVM_BACKUP_LOCATION'];
    const out = join(d.dir, 'got');
    const dest = await resolveDestination('backups/today', `printf %s "$QVM_BACKUP_LOCATION" > '${out}'; cat > /dev/null`, new Date());
    assert.equal(process.env['QVM_BACKUP_LOCATION'], before, 'our environment is not changed');
    const sink = await dest.sink();
    await sink.write(Buffer.from('archive bytes'));
    await sink.commit();
    assert.equal(readFileSync(out, 'utf8'), 'backups/today');
    assert.equal(process.env['QVM_BACKUP_LOCATION'], before);
  } finally {
    d.cleanup();
  }
});
