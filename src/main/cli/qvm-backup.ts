#!/usr/bin/env node
// Node entry of qvm-backup. The installed command is bin/qvm-backup, a shell launcher that sets
// glibc's huge-page tunable and exec()s node on this file: one process, whose PID is the one started.
import { main } from './backup-main.js';
import { exitOnCrash, exitAfterOutput } from './common.js';

main().then(exitAfterOutput, exitOnCrash('qvm-backup'));
