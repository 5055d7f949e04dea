// `npm run demo`: the main job on a built-in sample collection. Builds a sample Qubes root (a
// template, a NetVM, AppVMs with sparse images, a dom0 home) in a temp dir, backs it up with
// qvm-backup (format 4, the default), verifies the archive with qvm-backup-restore --verify-only,
// restores it into an empty host and compares every file of the collection and of the dom0 home
// with what the restore made of it (content, symlink targets, nothing missing, nothing extra).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { makeSampleCollection } from './make-sample.js';
import { compareTrees } from './compare-trees.js';

const root = new URL('../../', import.meta.url).pathname;
// the installed commands: launchers that exec node (this one, first on PATH) with huge pages on
const backupBin = join(root, 'bin/qvm-backup');
const restoreBin = join(root, 'bin/qvm-backup-restore');

function step(title: string, [bin, ...args]: string[]): void {
  console.log(`\n$ ${title}`);
  const r = spawnSync(bin!, args, { stdio: 'inherit', env: { ...process.env, PATH: `${dirname(process.execPath)}:${process.env['PATH'] ?? ''}` } });
  if (r.status !== 0) {
    console.error(`demo: step failed with exit status ${r.status}`);
    process.exit(r.status ?? 1);
  }
}

const keep = process.argv.includes('--keep');
// --quick: small images and a cheap key derivation (what the test suite runs)
const quick = process.argv.includes('--quick');
const MiB = 2 ** 20;
const sizes = quick ? { bigImageBytes: 16 * MiB, bigDataBytes: 2 * MiB, smallImageBytes: 8 * MiB, smallDataBytes: MiB / 4 } : { bigImageBytes: 512 * MiB, smallImageBytes: 256 * MiB };
const kdf = quick ? ['--scrypt-logn', '10'] : [];
const work = mkdtempSync(join(tmpdir(), 'qvm-backup-demo-'));
try {
  const qubes = join(work, 'qubes');
  const home = join(work, 'home', 'user');
  console.log(`sample collection in ${work}`);
  const vms = makeSampleCollection({ root: qubes, home, ...sizes });
  console.log(`VMs: ${vms.join(', ')} (sparse images: ${sizes.bigImageBytes / MiB} MiB and ${sizes.smallImageBytes / MiB} MiB apparent size)`);
  const pass = join(work, 'passphrase');
  writeFileSync(pass, 'demo passphrase, use a better one\n');
  const out = join(work, 'backups');
  spawnSync('mkdir', ['-p', out]);
  step(`qvm-backup --qubes-root ${qubes} --dom0-home ${home} -p ${pass} -y ${[...kdf, out].join(' ')}`, [backupBin, '--qubes-root', qubes, '--dom0-home', home, '-p', pass, '-y', ...kdf, out]);
  const archive = join(out, readdirSync(out).find((n) => /^qubes-\d{4}-/.test(n))!);
  step(`qvm-backup-restore --verify-only -p ${pass} ${archive}`, [restoreBin, '--verify-only', '-p', pass, '-y', '--qubes-root', join(work, 'empty-host'), archive]);
  const host = join(work, 'host');
  const hostHome = join(work, 'host-home', 'user');
  spawnSync('mkdir', ['-p', host, hostHome]);
  step(`qvm-backup-restore --qubes-root ${host} --dom0-home ${hostHome} -p ${pass} -y ${archive}`, [restoreBin, '--qubes-root', host, '--dom0-home', hostHome, '-p', pass, '-y', archive]);
  // every file of the collection and of the dom0 home, compared with what the restore made of it
  const restoredHome = join(hostHome, readdirSync(hostHome).find((n) => n.startsWith('home-restore-'))!, 'dom0-home', 'user');
  // R4 keeps application menus in VM features: these files are not part of a format 4 backup
  const menus = /(^|\/)(whitelisted-appmenus\.list|apps\.templates)(\/|$)/;
  let ok = true;
  let files = 0;
  let bytes = 0;
  const notBackedUp: string[] = [];
  for (const [from, to, label, notCopied] of [
    [join(qubes, 'appvms'), join(host, 'appvms'), 'appvms', menus],
    [join(qubes, 'vm-templates'), join(host, 'vm-templates'), 'vm-templates', menus],
    [home, restoredHome, 'dom0 home', undefined],
  ] as const) {
    const c = await compareTrees(from, to, notCopied);
    for (const p of c.problems) console.log(p.replace(/^(\S+\s+)/, `$1${label}/`));
    ok &&= c.problems.length === 0;
    files += c.files;
    bytes += c.bytes;
    notBackedUp.push(...c.notCopied.map((n) => `${label}/${n}`));
  }
  console.log(`\n${files} files compared (${(bytes / 2 ** 20).toFixed(0)} MiB apparent size), symlinks and directories too: ${ok ? 'all identical' : 'NOT all identical'}`);
  if (notBackedUp.length > 0) console.log(`not in a format 4 backup, as in Qubes R4: ${notBackedUp.join(', ')}`);
  console.log(ok ? '\ndemo: backup, verification and restore all succeeded' : '\ndemo: restored data differs!');
  process.exitCode = ok ? 0 : 1;
} finally {
  if (keep) console.log(`kept ${work}`);
  else rmSync(work, { recursive: true, force: true });
}
