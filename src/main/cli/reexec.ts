// Runs the command in a child process with glibc's transparent-huge-page tunable switched on
// (GLIBC_TUNABLES=glibc.malloc.hugetlb=1) when the current process was started without it.
// The tunable is read by the dynamic loader at start-up, so it cannot be set from inside.
// Why: every scrypt derivation (format 4, one per chunk) allocates 128·r·N bytes (512 MiB at
// logN 19) and faults them in; with huge pages a derivation here takes ~1.6 s instead of ~2.7 s.
// QVMB_HUGEPAGES=0 turns this off. Signals are forwarded; the child's exit status is ours.
import { spawn } from 'node:child_process';

const TUNABLE = 'glibc.malloc.hugetlb=1';

/** Re-run this process with the tunable set; returns false when the caller should just continue. */
export function reexecWithHugePages(): boolean {
  const current = process.env['GLIBC_TUNABLES'] ?? '';
  if (process.platform !== 'linux' || process.env['QVMB_HUGEPAGES'] === '0' || current.includes('glibc.malloc.hugetlb')) return false;
  const env = { ...process.env, GLIBC_TUNABLES: current ? `${current}:${TUNABLE}` : TUNABLE };
  let child;
  try {
    child = spawn(process.execPath, [...process.execArgv, ...process.argv.slice(1)], { stdio: 'inherit', env });
  } catch {
    return false;
  }
  const forward = (sig: NodeJS.Signals) => () => {
    // a terminal's Ctrl-C reaches the child too; it ignores a duplicate arriving at the same time
    child.kill(sig);
  };
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(sig, forward(sig));
  child.on('error', (e) => {
    process.stderr.write(`cannot start ${process.argv[1]}: ${e.message}\n`);
    process.exit(1);
  });
  child.on('exit', (code, signal) => {
    process.exit(code ?? (signal === 'SIGINT' ? 130 : signal === 'SIGTERM' ? 143 : 1));
  });
  return true;
}
