// `npm run demo`: the main job on a built-in sample collection. Builds a sample Qubes root (a
// template, a NetVM, AppVMs with sparse images, a dom0 home) in a temp dir, backs it up with
// qvm-backup (format 4, the default), verifies the archive with qvm-backup-restore --verify-only,
// restores it into an empty host and checks every restored image byte for byte.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { makeSampleCollection } from './make-sample.js';

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

async function sha256(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const c of createReadStream(path)) h.update(c as Buffer);
  return h.digest('hex');
}

const keep = process.argv.includes('--keep');
const work = mkdtempSync(join(tmpdir(), 'qvm-backup-demo-'));
try {
  const qubes = join(work, 'qubes');
  const home = join(work, 'home', 'user');
  console.log(`sample collection in ${work}`);
  const vms = makeSampleCollection({ root: qubes, home });
  console.log(`VMs: ${vms.join(', ')} (sparse images: 512 MiB and 256 MiB apparent size)`);
  const pass = join(work, 'passphrase');
  writeFileSync(pass, 'demo passphrase, use a better one\n');
  const out = join(work, 'backups');
  spawnSync('mkdir', ['-p', out]);
  step(`qvm-backup --qubes-root ${qubes} --dom0-home ${home} -p ${pass} -y ${out}`, [backupBin, '--qubes-root', qubes, '--dom0-home', home, '-p', pass, '-y', out]);
  const archive = join(out, readdirSync(out).find((n) => n.startsWith('qubes-backup-'))!);
  step(`qvm-backup-restore --verify-only -p ${pass} ${archive}`, [restoreBin, '--verify-only', '-p', pass, '-y', '--qubes-root', join(work, 'empty-host'), archive]);
  const host = join(work, 'host');
  const hostHome = join(work, 'host-home', 'user');
  spawnSync('mkdir', ['-p', host, hostHome]);
  step(`qvm-backup-restore --qubes-root ${host} --dom0-home ${hostHome} -p ${pass} -y ${archive}`, [restoreBin, '--qubes-root', host, '--dom0-home', hostHome, '-p', pass, '-y', archive]);
  let ok = true;
  for (const rel of ['appvms/work/private.img', 'appvms/personal/private.img', 'vm-templates/fedora-40/root.img', 'appvms/work/firewall.xml']) {
    const [a, b] = await Promise.all([sha256(join(qubes, rel)), sha256(join(host, rel))]);
    console.log(`${a === b ? 'identical' : 'DIFFERENT'}  ${rel}`);
    ok &&= a === b;
  }
  console.log(ok ? '\ndemo: backup, verification and restore all succeeded' : '\ndemo: restored data differs!');
  process.exitCode = ok ? 0 : 1;
} finally {
  if (keep) console.log(`kept ${work}`);
  else rmSync(work, { recursive: true, force: true });
}
