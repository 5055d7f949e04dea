// The installed qvm-backup-restore's first module: bin/qvm-backup-restore runs its bundle (qvm-backup-restore.start.mjs, made by
// scripts/bundle.mjs), which prepares the process (start.ts) and then loads the command's bundle.
import { start } from './start.js';

await start('qvm-backup-restore', new URL('./qvm-backup-restore.bundle.mjs', import.meta.url));
