// Stopping a shell command together with what it started: `sh -c 'a | b'` or `sh -c 'sleep 9'`
// (dash does not exec the last command) leaves its children running when only the shell is
// signalled. The command shares our process group (so it keeps the terminal to ask on), so the
// tree is found in /proc instead.
import { readFileSync, readdirSync } from 'node:fs';

function parentOf(pid: number): number | undefined {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(s.slice(s.lastIndexOf(')') + 2).split(' ')[1]); // the name may hold spaces and ')'
  } catch {
    return undefined;
  }
}

/** Every process below `pid` now (children, grandchildren, …). */
function descendantsOf(pid: number): number[] {
  const kids = new Map<number, number[]>();
  let names: string[] = [];
  try {
    names = readdirSync('/proc');
  } catch {
    return [];
  }
  for (const name of names) {
    if (!/^\d+$/.test(name)) continue;
    const ppid = parentOf(Number(name));
    if (ppid !== undefined) kids.set(ppid, [...(kids.get(ppid) ?? []), Number(name)]);
  }
  const out: number[] = [];
  const todo = [pid];
  while (todo.length > 0) {
    for (const k of kids.get(todo.pop()!) ?? []) {
      out.push(k);
      todo.push(k);
    }
  }
  return out;
}

/** Stop the shell `pid` and every process below it (found before any is signalled): the shell
 *  with SIGKILL, so it cannot report its children's end ("Terminated") on the user's stderr, the
 *  others with SIGTERM, so they can restore the terminal they may be prompting on. */
export function stopShellTree(pid: number): void {
  const below = descendantsOf(pid);
  for (const [p, sig] of [[pid, 'SIGKILL'] as const, ...below.map((b) => [b, 'SIGTERM'] as const)]) {
    try {
      process.kill(p, sig);
    } catch {
      // already gone
    }
  }
}
