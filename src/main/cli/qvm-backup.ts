#!/usr/bin/env node
// Node entry of qvm-backup. The installed command is bin/qvm-backup, a shell launcher that sets
// glibc's huge-page tunable and exec()s node on this file: one process, whose PID is the one started.
import { main } from './backup-main.js';
import { jsonOfArgv, reportError } from './common.js';

const crashed = (e: unknown): never => {
  const { json, operation } = jsonOfArgv('qvm-backup');
  return process.exit(reportError('qvm-backup', e, json, undefined, operation));
};
main().then((code) => process.exit(code), crashed);
