#!/usr/bin/env node
// Bin entry of qvm-backup: re-exec with huge pages for the scrypt KDF (see reexec.ts), then run.
import { reexecWithHugePages } from './reexec.js';

if (!reexecWithHugePages()) await import('./backup-main.js');
