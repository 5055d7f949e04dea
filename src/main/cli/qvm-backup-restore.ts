#!/usr/bin/env node
// Node entry of qvm-backup-restore. The installed command is bin/qvm-backup-restore, a shell launcher
// that sets glibc's huge-page tunable and exec()s node on this file: one process, no re-exec.
import { main } from './restore-main.js';
import { exitOnCrash, exitAfterOutput } from './common.js';

main().then(exitAfterOutput, exitOnCrash('qvm-backup-restore'));
