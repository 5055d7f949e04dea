// The dom0 home a run uses by default, found as Qubes finds it: the home directory of the first
// member of the group `qubes` (Qubes' backup and restore both take `gr_mem[0]` of that group), not
// $HOME, which for root's cron job is /root. Read from /etc/group and /etc/passwd (dom0's users are
// local); without such a group or user (a machine that is not dom0), $HOME as before.
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';

/** Field `i` of the first line of `file` (colon-separated) whose first field is `name`. */
function fieldOf(text: string, name: string, i: number): string | undefined {
  for (const line of text.split('\n')) {
    const f = line.split(':');
    if (f[0] === name) return f[i];
  }
  return undefined;
}

/** The home of the first member of group `qubes`, from the group and passwd texts given. */
export function qubesUserHome(groupText: string, passwdText: string): string | undefined {
  const user = fieldOf(groupText, 'qubes', 3)?.split(',')[0]?.trim();
  if (!user) return undefined;
  const home = fieldOf(passwdText, user, 5)?.trim();
  return home?.startsWith('/') ? home : undefined;
}

/** The default dom0 home: Qubes' (the `qubes` group's first member), else $HOME. */
export function defaultDom0Home(files = { group: '/etc/group', passwd: '/etc/passwd' }): string {
  try {
    return qubesUserHome(readFileSync(files.group, 'utf8'), readFileSync(files.passwd, 'utf8')) ?? homedir();
  } catch {
    return homedir();
  }
}
