#!/usr/bin/env node
// Node entry of qvm-backup-restore. The installed command is bin/qvm-backup-restore, a shell launcher
// that sets glibc's huge-page tunable and exec()s node on this file: one process, no re-exec.
import { main } from './restore-main.js';
import { jsonOfArgv, reportError } from './common.js';

const crashed = (e: unknown): never => {
  const { json, operation } = jsonOfArgv('qvm-backup-restore');
  return process.exit(reportError('qvm-backup-restore', e, json, undefined, operation));
};
main().then((code) => process.exit(code), crashed);
