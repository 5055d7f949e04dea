// Keeps the last N bytes of a child process's stderr for error messages, without buffering the rest.

/** A bounded byte buffer that remembers only the most recent `limit` bytes pushed into it. */
export class TailBuffer {
  readonly #limit: number;
  #chunks: Buffer[] = [];
  #bytes = 0;

  constructor(limit = 4096) {
    this.#limit = limit;
  }

  /** Append bytes, dropping the oldest beyond the limit. */
  push(data: Buffer | string): void {
    const b = typeof data === 'string' ? Buffer.from(data) : data;
    this.#chunks.push(b);
    this.#bytes += b.length;
    while (this.#bytes - (this.#chunks[0]?.length ?? 0) >= this.#limit && this.#chunks.length > 1) {
      this.#bytes -= this.#chunks.shift()?.length ?? 0;
    }
  }

  /** The kept tail as trimmed UTF-8 text (at most `limit` bytes), after `filter` removed noise. */
  text(filter?: (s: string) => string): string {
    let b = Buffer.concat(this.#chunks);
    if (b.length > this.#limit) b = b.subarray(b.length - this.#limit);
    const s = b.toString('utf8');
    return (filter ? filter(s) : s).trim();
  }
}

/**
 * A child's stderr (or any text) as one line for a message: its lines (split at LF, CR or both)
 * trimmed, the empty ones dropped, joined with "; ", and every other control character shown as
 * \xNN: what a program (or a VM, through qvm-run) writes there must not move the cursor, clear
 * the terminal or set its title. The whole text stays in the error's context (stderrTail).
 */
export function oneLine(text: string): string {
  return text
    .split(/\r\n|\r|\n/)
    .map((l) => l.trim())
    .filter((l) => l !== '')
    .join('; ')
    .replace(/[\x00-\x1f\x7f-\x9f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}
