// One line from the controlling terminal (/dev/tty), echoed (a y/N answer) or not (a passphrase).
// The read is asynchronous and gives up when the run is interrupted: a prompt never keeps a
// signalled command alive (a synchronous read would hold SIGINT/SIGTERM until Enter).
import { openSync } from 'node:fs';
import { ReadStream } from 'node:tty';
import { QvmBackupError } from '../errors.js';
import { messages } from '../io/message-out.js';

/** The terminal opened for reading and writing, or undefined when there is none. */
export function openTty(): number | undefined {
  try {
    return openSync('/dev/tty', 'r+');
  } catch {
    return undefined;
  }
}

/**
 * Print `prompt` on stderr and read one line from the terminal `fd` (which is closed afterwards).
 * Resolves to null at end of input (Ctrl-D); rejects with the abort reason when `signal` fires, and
 * with ERR_CANCELLED on Ctrl-C typed while the echo is off (raw mode turns it into a character).
 */
export async function readTtyLine(fd: number, o: { prompt: string; echo: boolean; signal: AbortSignal }): Promise<string | null> {
  const input = new ReadStream(fd);
  let onAbort = (): void => {};
  if (!o.echo) input.setRawMode(true);
  messages().write(o.prompt);
  try {
    return await new Promise<string | null>((resolve, reject) => {
      onAbort = () => reject(o.signal.reason);
      if (o.signal.aborted) return onAbort();
      o.signal.addEventListener('abort', onAbort, { once: true });
      let buf = '';
      input.on('error', reject);
      input.on('end', () => resolve(buf.length > 0 ? buf : null));
      input.on('data', (d: Buffer) => {
        for (const ch of d.toString('utf8')) {
          if (ch === '\r' || ch === '\n') return resolve(buf);
          if (o.echo) buf += ch;
          else if (ch === '\u0003') return reject(new QvmBackupError('ERR_CANCELLED', 'interrupted while reading the passphrase'));
          else if (ch === '\u0004') return resolve(buf.length > 0 ? buf : null);
          else if (ch === '\u007f' || ch === '\b') buf = buf.slice(0, -1);
          else if (ch === '\u0015') buf = '';
          else buf += ch;
        }
      });
    });
  } finally {
    o.signal.removeEventListener('abort', onAbort);
    if (!o.echo) {
      input.setRawMode(false);
      messages().write('\n');
    }
    input.destroy(); // closes fd
  }
}
