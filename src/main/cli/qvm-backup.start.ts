// The installed qvm-backup's first module: bin/qvm-backup runs its bundle (qvm-backup.start.mjs, made by
// scripts/bundle.mjs), which prepares the process (start.ts) and then loads the command's bundle.
import { start } from './start.js';

await start('qvm-backup', new URL('./qvm-backup.bundle.mjs', import.meta.url));
