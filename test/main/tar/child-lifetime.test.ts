// A tar we started dies with us, even after `kill -9` of this process: here a tar blocked opening
// a FIFO for a volume that will never come (what a killed format 2 restore leaves behind).
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { waitFor } from '../../helpers/processes.js';

const TAR_PROCESS = new URL('../../../src/main/tar/tar-process.js', import.meta.url).pathname;
const SPAWN = new URL('../../../src/main/io/spawn.js', import.meta.url).pathname;

function alive(pid: number): boolean {
  try {
    return !fs.readFileSync(`/proc/${pid}/stat`, 'utf8').includes(') Z ');
  } catch {
    return false;
  }
}

test('kill -9 of the process that started tar kills tar (setpriv --pdeathsig)', { skip: process.platform !== 'linux' && 'linux only', timeout: 30_000 }, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qvmb-pdeath-'));
  try {
    const fifo = path.join(dir, 'volume');
    execFileSync('mkfifo', [fifo]);
    const script = `const { spawnTar } = await import(${JSON.stringify(TAR_PROCESS)});
      await (await import(${JSON.stringify(SPAWN)})).loadSpawner();
      const t = spawnTar(['-x', '-f', ${JSON.stringify(fifo)}, '-C', ${JSON.stringify(dir)}], { stdin: 'ignore', stdout: 'ignore' });
      t.done.catch(() => {});
      setInterval(() => {}, 1000);`;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: 'ignore' });
    let tarPid = 0;
    await waitFor('tar to block opening the FIFO', () => {
      for (const p of fs.readdirSync('/proc').filter((n) => /^\d+$/.test(n))) {
        try {
          const cmd = fs.readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0');
          if (cmd.includes(fifo) && fs.readFileSync(`/proc/${p}/status`, 'utf8').match(/^PPid:\s+(\d+)/m)?.[1] === String(child.pid)) {
            tarPid = Number(p);
            return fs.readFileSync(`/proc/${p}/comm`, 'utf8').trim() === 'tar';
          }
        } catch {
          // gone meanwhile
        }
      }
      return false;
    });
    child.kill('SIGKILL');
    await waitFor('tar to die with its parent', () => !alive(tarPid), 10_000);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
