// An image whose stated size the file system cannot hold (ext4: 16 TiB less 4 KiB; the reader
// accepts up to 16 TiB) is the archive's problem, not an I/O error of the host: ERR_TOO_LARGE.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, statfsSync } from 'node:fs';
import { join } from 'node:path';
import { isQvmBackupError } from '../../../../src/main/errors.js';
import { MAX_IMAGE_BYTES } from '../../../../src/main/restore/install/vm-files.js';
import { openImageExtractor } from '../../../../src/main/restore/stream/image-extractor.js';
import { tempDir } from '../../../helpers/cli.js';
import { paxSparse } from '../../../helpers/tar-craft.js';

const EXT4_MAGIC = 0xef53;

test('an image of a size the file system cannot hold fails as ERR_TOO_LARGE (EFBIG), not as a host I/O error', async (t) => {
  const dir = tempDir();
  try {
    if (statfsSync(dir.dir).type !== EXT4_MAGIC) return t.skip('the temp directory is not on ext2/3/4, whose largest file is 16 TiB less 4 KiB');
    const out = join(dir.dir, 'x');
    mkdirSync(out);
    const tar = paxSparse([{ offset: MAX_IMAGE_BYTES - 512, length: 512 }], MAX_IMAGE_BYTES, () => Buffer.alloc(512, 1));
    const x = openImageExtractor({ dir: out, member: 'vm3/private.img', listOnly: false }, { kind: 'none' });
    await assert.rejects(
      (async () => {
        await x.write(tar);
        await x.finish();
      })(),
      (e: unknown) => isQvmBackupError(e) && e.code === 'ERR_TOO_LARGE' && /cannot hold a file of the size the archive states/.test(e.message),
    );
    await x.abort();
  } finally {
    dir.cleanup();
  }
});
