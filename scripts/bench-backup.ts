// Whole-backup and whole-restore benchmark: qvm-backup / qvm-backup-restore (format 4, defaults:
// gzip-6, scrypt logN 19, 100 MiB chunks) against a reference pipeline built from the stock tools the
// way Qubes R4 runs them (tar --sparse | gzip | 100 MiB chunk files in a temp dir, one `scrypt enc`
// per chunk, one after the other; restore: `scrypt dec` per chunk | gzip -d | tar -x), on the same
// sample image in the same run. Writes the "## Whole backup and restore" section of BENCHMARKS.md.
// Usage: node dist/scripts/bench-backup.js [--data-mib N] [--quick]
import { spawnSync } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync, readFileSync, existsSync, statSync } from 'node:fs';
import { tmpdir, availableParallelism, cpus, loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { makeSampleCollection } from './make-sample.js';

const MiB = 1024 * 1024;
const args = process.argv.slice(2);
const QUICK = args.includes('--quick');
const dataArg = args.indexOf('--data-mib');
const DATA_MIB = dataArg >= 0 ? Number(args[dataArg + 1]) : QUICK ? 64 : 1024;
const LOGN = QUICK ? 14 : 19;
const SECTION = '## Whole backup and restore (npm run bench)';
const root = fileURLToPath(new URL('../../', import.meta.url));
// the installed commands (launchers that exec node with huge pages on), with this node on PATH
const backupBin = join(root, 'bin/qvm-backup');
const restoreBin = join(root, 'bin/qvm-backup-restore');
const nodeOnPath = { PATH: `${dirname(process.execPath)}:${process.env['PATH'] ?? ''}` };

let lastRss = 0;
function time(cmd: string, argv: string[], env: NodeJS.ProcessEnv = {}): number {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env }, maxBuffer: 64 * MiB });
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  if (r.status !== 0) throw new Error(`${cmd} ${argv.join(' ')} failed (${r.status}): ${r.stderr?.toString().slice(-2000)}`);
  const summary = r.stdout.toString().split('\n').filter((l) => l.includes('"summary"')).pop();
  lastRss = summary ? (JSON.parse(summary) as { max_rss_bytes?: number }).max_rss_bytes ?? 0 : 0;
  return s;
}

/** The reference: Qubes R4's writer and reader steps with stock tools, sequential, chunk files on disk. */
const REF_BACKUP = `
set -euo pipefail
dir=$1; name=$2; sub=$3; out=$4; pass=$5; logn=$6; work=$7; xml=$8
mkdir -p "$work/$sub"
# the header, its scrypt copy and qubes.xml cost one key derivation each, as in a real backup
printf 'version=4\\nencrypted=True\\ncompressed=True\\ncompression-filter=gzip\\nhmac-algorithm=scrypt\\nbackup-id=20260101T000000-1\\n' > "$work/backup-header"
echo "backup-header!$pass" | scrypt enc -P --logN "$logn" -r 8 -p 1 "$work/backup-header" "$work/backup-header.hmac"
tar -Pc -C "$(dirname "$xml")" qubes.xml | gzip | split --numeric-suffixes --suffix-length=3 --bytes=104857600 - "$work/qubes.xml."
echo "x!qubes.xml.000!$pass" | scrypt enc -P --logN "$logn" -r 8 -p 1 "$work/qubes.xml.000" "$work/qubes.xml.000.enc"
(cd "$work" && tar -cO --posix backup-header && tar -cO --posix backup-header.hmac && tar -cO --posix qubes.xml.000.enc) > "$out"
tar -Pc --sparse -C "$dir" --xform "s:^$name:$sub$name:" "$name" | gzip | split --numeric-suffixes --suffix-length=3 --bytes=104857600 - "$work/$sub$name."
for c in "$work/$sub$name".[0-9][0-9][0-9]; do
  echo "$pass" | scrypt enc -P --logN "$logn" -r 8 -p 1 "$c" "$c.enc"
  rm "$c"
done
(cd "$work" && for c in $(ls "$sub$name".*.enc | sort -V); do tar -cO --posix "$c"; rm "$c"; done) >> "$out"
`;
const REF_RESTORE = `
set -euo pipefail
archive=$1; pass=$2; out=$3; work=$4
mkdir -p "$work" "$out"
tar -i -xf "$archive" -C "$work"
echo "backup-header!$pass" | scrypt dec -P "$work/backup-header.hmac" > /dev/null
echo "x!qubes.xml.000!$pass" | scrypt dec -P "$work/qubes.xml.000.enc" | gzip -d | tar -x -C "$out"
find "$work" -name 'private.img.*.enc' | sort -V | while read -r f; do echo "$pass" | scrypt dec -P "$f"; done | gzip -d | tar -x -C "$out"
`;

function row(name: string, ours: number, ref: number, mb: number): string {
  return `| ${name} | ${ours.toFixed(1)} s (${(mb / ours).toFixed(0)} MB/s) | ${ref.toFixed(1)} s (${(mb / ref).toFixed(0)} MB/s) | **${(ref / ours).toFixed(2)}×** |`;
}

function main(): void {
  if (spawnSync('sh', ['-c', 'command -v scrypt']).status !== 0) {
    console.error('bench-backup: the scrypt CLI is needed for the reference pipeline (apt-get install scrypt)');
    process.exit(2);
  }
  const work = join(tmpdir(), `qvmb-bench-${process.pid}`);
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });
  try {
    const q = join(work, 'qubes');
    const home = join(work, 'home', 'user');
    makeSampleCollection({ root: q, home, bigImageBytes: 4 * DATA_MIB * MiB, bigDataBytes: DATA_MIB * MiB, smallImageBytes: 8 * MiB, smallDataBytes: 64 * 1024 });
    const img = join(q, 'appvms/work/private.img');
    // the VM holds just its private image, so both sides process the same files
    rmSync(join(q, 'appvms/work/firewall.xml'));
    rmSync(join(q, 'appvms/work/notes.txt'));
    const dataBytes = statSync(img).blocks * 512;
    const mb = dataBytes / 1e6;
    const pass = join(work, 'pass');
    writeFileSync(pass, 'bench passphrase\n');
    spawnSync('cat', [img], { stdio: ['ignore', 'ignore', 'ignore'] }); // warm the page cache for both
    const loadBefore = loadavg()[0]!;
    // ours: only the big VM, format 4 defaults (except logN in --quick)
    const oursArchive = join(work, 'ours.bin');
    const tOurs = time(backupBin, ['--json', '-y', '-p', pass, '--qubes-root', q, '--dom0-home', home, '--scrypt-logn', String(LOGN), oursArchive, 'work'], nodeOnPath);
    const rssBackup = lastRss;
    // reference: the same image, same gzip level and logN, Qubes' sequential steps
    const refArchive = join(work, 'ref.bin');
    const tRef = time('bash', ['-c', REF_BACKUP, 'ref', join(q, 'appvms/work'), 'private.img', 'vm3/', refArchive, 'bench passphrase', String(LOGN), join(work, 'ref-tmp'), join(q, 'qubes.xml')]);
    // restores: ours into an empty host; reference by hand
    const host = join(work, 'host');
    const tOursR = time(restoreBin, ['--json', '-y', '-p', pass, '--qubes-root', host, '--dom0-home', join(work, 'hh', 'user'), '--ignore-missing', oursArchive], nodeOnPath);
    const rssRestore = lastRss;
    const tRefR = time('bash', ['-c', REF_RESTORE, 'ref', refArchive, 'bench passphrase', join(work, 'ref-out'), join(work, 'ref-rtmp')]);
    const same = spawnSync('cmp', [img, join(host, 'appvms/work/private.img')]).status === 0;
    const loadAfter = loadavg()[0]!;
    const sizes = `ours ${(statSync(oursArchive).size / 1e6).toFixed(0)} MB, reference ${(statSync(refArchive).size / 1e6).toFixed(0)} MB`;
    const lines = [
      SECTION,
      '',
      `Measured ${new Date().toISOString().slice(0, 10)} on ${cpus()[0]?.model ?? 'unknown CPU'} (${availableParallelism()} cores), Node ${process.version}. One VM image of ${(4 * DATA_MIB)} MiB apparent size holding ${DATA_MIB} MiB of VM-like data (text, zero runs, random; sparse), page cache warm. Format 4, gzip -6, scrypt logN ${LOGN} (r=8, p=1), 100 MiB chunks, both sides. Reference = the Qubes R4 steps with stock tools: \`tar --sparse | gzip | split\` into chunk files, \`scrypt enc\` per chunk one after the other, outer \`tar --posix\`; restore = \`tar -i -x\`, \`scrypt dec\` per chunk \`| gzip -d | tar -x\`. MB/s are MB of image data (${mb.toFixed(0)} MB) per second. Archives: ${sizes}. Restored image identical: ${same ? 'yes' : 'NO'}. Peak RSS of ours: backup ${Math.round(rssBackup / MiB)} MiB, restore ${Math.round(rssRestore / MiB)} MiB (default --max-memory). 1-minute load average ${loadBefore.toFixed(1)} before, ${loadAfter.toFixed(1)} after (it includes the codec benchmark when that ran just before).`,
      '',
      '| run | qvm-backup (this) | reference pipeline | speedup |',
      '|---|---:|---:|---:|',
      row('backup', tOurs, tRef, mb),
      row('restore', tOursR, tRefR, mb),
      '',
    ];
    const text = lines.join('\n');
    console.log(text);
    if (!same) process.exitCode = 1;
    if (!QUICK) {
      const target = join(root, 'BENCHMARKS.md');
      const old = existsSync(target) ? readFileSync(target, 'utf8') : '# Benchmarks\n';
      const start = old.indexOf(SECTION);
      let next = old;
      if (start >= 0) {
        const end = old.indexOf('\n## ', start + SECTION.length);
        next = old.slice(0, start) + text + (end >= 0 ? old.slice(end + 1) : '');
      } else next = old.trimEnd() + '\n\n' + text;
      writeFileSync(target, next);
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

main();
