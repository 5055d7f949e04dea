// Reads the backup passphrase: from a file (-p FILE), from stdin (-p -), or from the terminal
// without echo. Never logs or echoes it.
import { readFile } from 'node:fs/promises';
import { openSync, closeSync } from 'node:fs';
import { ReadStream } from 'node:tty';
import { fail, QvmBackupError } from '../errors.js';

/** Take the first line of `text` as the passphrase (trailing CR/LF removed) and validate it. */
export function passphraseFromText(text: string, source: string): string {
  const nl = text.indexOf('\n');
  const line = (nl >= 0 ? text.slice(0, nl) : text).replace(/\r$/, '');
  validatePassphrase(line, source);
  return line;
}

/** Refuse passphrases the formats cannot carry: empty, or holding CR/LF/NUL (scrypt cuts at CR/LF). */
export function validatePassphrase(pw: string, source: string): void {
  if (pw.length === 0) fail('ERR_USAGE', `empty passphrase (${source}): refusing to continue`);
  if (/[\r\n\0]/.test(pw)) fail('ERR_USAGE', `passphrase from ${source} contains CR, LF or NUL: not allowed`);
  if (Buffer.byteLength(pw, 'utf8') > 1900) fail('ERR_USAGE', `passphrase from ${source} is longer than 1900 bytes`);
}

async function readAllStdin(): Promise<string> {
  const parts: Buffer[] = [];
  for await (const c of process.stdin) parts.push(c as Buffer);
  return Buffer.concat(parts).toString('utf8');
}

/** Read one line from the controlling terminal with echo off. */
async function promptNoEcho(prompt: string): Promise<string> {
  let fd: number;
  try {
    fd = openSync('/dev/tty', 'r+');
  } catch {
    fail('ERR_USAGE', 'no terminal to ask for the passphrase: use -p/--passphrase-file FILE or -p - (stdin)');
  }
  const input = new ReadStream(fd);
  process.stderr.write(prompt);
  input.setRawMode(true);
  try {
    return await new Promise<string>((resolve, reject) => {
      let buf = '';
      input.on('data', (d: Buffer) => {
        for (const ch of d.toString('utf8')) {
          if (ch === '\r' || ch === '\n') {
            resolve(buf);
            return;
          } else if (ch === '\u0003') {
            reject(Object.assign(new Error('interrupted'), { code: 'ERR_CANCELLED' }));
            return;
          } else if (ch === '\u007f' || ch === '\b') buf = buf.slice(0, -1);
          else if (ch === '\u0015') buf = '';
          else buf += ch;
        }
      });
    });
  } catch (e) {
    throw new QvmBackupError('ERR_CANCELLED', 'interrupted while reading the passphrase', {}, e);
  } finally {
    input.setRawMode(false);
    input.destroy();
    try {
      closeSync(fd);
    } catch {
      /* already closed by destroy */
    }
    process.stderr.write('\n');
  }
}

/** Get the passphrase from -p FILE|- or the terminal (asked twice when `confirm`). */
export async function readPassphrase(opts: { file?: string | undefined; confirm: boolean }): Promise<string> {
  if (opts.file === '-') return passphraseFromText(await readAllStdin(), 'stdin');
  if (opts.file !== undefined) {
    let text: string;
    try {
      text = await readFile(opts.file, 'utf8');
    } catch (e) {
      fail('ERR_USAGE', `cannot read passphrase file ${opts.file}: ${(e as Error).message}`, {}, e);
    }
    return passphraseFromText(text, opts.file);
  }
  const pw = await promptNoEcho('Please enter the passphrase: ');
  validatePassphrase(pw, 'terminal');
  if (opts.confirm) {
    const again = await promptNoEcho('Enter again for verification: ');
    if (again !== pw) fail('ERR_USAGE', 'the passphrases do not match');
  }
  return pw;
}
