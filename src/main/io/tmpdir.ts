// TMPDIR, where a format 2 backup or restore makes its FIFO directory and a verification its
// scratch copy: a value that names no directory (a typo, a removed mount) is a usage error said at
// the start, before the passphrase is asked and before anything is written, not a raw ENOENT from
// deep in the run.
import { stat } from 'node:fs/promises';
import { fail } from '../errors.js';

/** ERR_USAGE when TMPDIR is set (not empty) and is not an existing directory; `use` says what the
 *  run needs it for. */
export async function checkTmpdir(use: string): Promise<void> {
  const dir = process.env['TMPDIR'];
  if (dir === undefined || dir === '') return;
  const st = await stat(dir).catch((e: unknown) => (e as NodeJS.ErrnoException).code ?? 'unreadable');
  if (typeof st === 'string') fail('ERR_USAGE', `TMPDIR ${dir} ${st === 'ENOENT' ? 'does not exist' : `cannot be used (${st})`}: ${use}; set TMPDIR to an existing directory, or unset it`);
  if (!st.isDirectory()) fail('ERR_USAGE', `TMPDIR ${dir} is not a directory: ${use}; set TMPDIR to an existing directory, or unset it`);
}
