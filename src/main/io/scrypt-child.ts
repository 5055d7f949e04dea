// One scrypt key derivation in a child process of our own node, which can be stopped at any moment.
//
// A derivation in a worker thread or on libuv's threads cannot be stopped: node:crypto's scrypt is
// one native call, a terminated worker ends only after it, and node's exit waits for both (at logN
// 20 a declined restore took 5 s to exit). A child process ends at SIGKILL, and its memory with it.
// It is used where a derivation is started on speculation and may have to be abandoned: the first
// chunk's key while the user reads the restore plan (restore/stream/first-chunk-key.ts).
//
// The child is this process's own node binary (process.execPath) running the fixed script below;
// nothing of the archive names a program or an argument. The passphrase, salt and parameters go in
// on its stdin, the 64-byte key comes back on its stdout, both pipes to us only. It dies with us
// (setpriv --pdeathsig) and runs in a process group of its own, killed whole (its exit follows at
// once). Every wait for it is bounded (`boundMs`).
import { spawn, type ChildProcess } from 'node:child_process';
import { diesWithUs, killGroup, timedSpawn } from './child-lifetime.js';
import { ownNodeChildEnv } from '../launch-state.js';
import { scryptMaxmem, type ScryptParams } from '../../workers/scrypt-file.js';

/** The key length a format 4 chunk derives (AES-256 key and HMAC key). */
const KEY_BYTES = 64;

/** The child: reads one JSON request on stdin, writes the key as hex on stdout. `import()` works
 *  whether `-e` code runs as CommonJS or as a module. */
const CHILD_CODE = [
  "import('node:crypto').then((c) => {",
  '  const parts = [];',
  "  process.stdin.on('data', (d) => parts.push(d)).on('end', () => {",
  '    const q = JSON.parse(Buffer.concat(parts).toString());',
  "    const pass = Buffer.from(q.pass, 'hex');",
  `    const key = c.scryptSync(pass, Buffer.from(q.salt, 'hex'), ${KEY_BYTES}, { N: 2 ** q.logN, r: q.r, p: q.p, maxmem: q.maxmem });`,
  '    pass.fill(0);',
  "    process.stdout.end(key.toString('hex'));",
  '    key.fill(0);',
  '  });',
  '});',
].join('\n');

export interface ChildDerivation {
  /** the key, or null when the child failed, was killed or took longer than the bound */
  readonly key: Promise<Uint8Array | null>;
  /** settles once the child is gone (its memory given back) */
  readonly exited: Promise<void>;
  /** the child's process id (tests) */
  readonly pid: number | undefined;
  /** stop the derivation now (SIGKILL to its process group); `key` becomes null unless it was there */
  kill(): void;
}

/**
 * Derive the 64-byte scrypt key of `passphrase` with `salt` and `q` in a child process. Never
 * throws or rejects: a child that cannot start, fails, or runs longer than `boundMs` gives null
 * (and is killed). The caller checks the parameters against its limits first.
 */
export function deriveInChild(passphrase: Uint8Array, salt: Uint8Array, q: ScryptParams, boundMs: number): ChildDerivation {
  let child: ChildProcess;
  try {
    const [file, argv] = diesWithUs(process.execPath, ['-e', CHILD_CODE]);
    // node's own environment: the launcher's malloc tunables (huge pages for the derivation), no NODE_EXTRA_CA_CERTS
    child = timedSpawn(() => spawn(file, argv, { stdio: ['pipe', 'pipe', 'ignore'], detached: true, env: ownNodeChildEnv() }));
  } catch {
    return { key: Promise.resolve(null), exited: Promise.resolve(), pid: undefined, kill: () => {} };
  }
  const kill = (): void => killGroup(child);
  const exited = new Promise<void>((resolve) => {
    child.once('error', () => resolve()); // no process (EAGAIN, EMFILE: node gives a child without pipes)
    child.once('exit', () => resolve());
  });
  const parts: Buffer[] = [];
  let length = 0;
  child.stdout?.on('data', (d: Buffer) => {
    length += d.length;
    if (length <= 2 * KEY_BYTES) parts.push(d);
  });
  child.stdout?.on('error', () => {});
  child.stdin?.on('error', () => {}); // a child gone before it read its request
  const timer = setTimeout(kill, boundMs);
  timer.unref();
  const key = new Promise<Uint8Array | null>((resolve) => {
    child.once('error', () => resolve(null));
    child.once('close', (code) => {
      const hex = Buffer.concat(parts).toString('latin1');
      for (const p of parts) p.fill(0);
      resolve(code === 0 && /^[0-9a-f]+$/.test(hex) && hex.length === 2 * KEY_BYTES ? new Uint8Array(Buffer.from(hex, 'hex')) : null);
    });
  }).finally(() => clearTimeout(timer));
  void exited.finally(() => clearTimeout(timer));
  if (child.stdin == null || child.stdout == null) {
    kill();
  } else {
    const request = JSON.stringify({ pass: Buffer.from(passphrase).toString('hex'), salt: Buffer.from(salt).toString('hex'), logN: q.logN, r: q.r, p: q.p, maxmem: scryptMaxmem(q) });
    child.stdin.end(request);
  }
  return { key, exited, pid: child.pid, kill };
}
