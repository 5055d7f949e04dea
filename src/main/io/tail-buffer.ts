// Keeps the last N bytes of a child process's stderr for error messages, without buffering the rest.

/** A bounded byte buffer that remembers only the most recent `limit` bytes pushed into it, and
 *  (with `headLimit`) the first `headLimit` bytes too: a program that keeps talking after its
 *  first error (GNU tar's multi-volume prompts, one per volume) must not push that error out. */
export class TailBuffer {
  readonly #limit: number;
  readonly #headLimit: number;
  #head: Buffer = Buffer.alloc(0);
  #chunks: Buffer[] = [];
  #bytes = 0;
  #total = 0;

  constructor(limit = 4096, headLimit = 0) {
    this.#limit = limit;
    this.#headLimit = headLimit;
  }

  /** Append bytes, dropping the oldest beyond the limit (the first `headLimit` are kept apart). */
  push(data: Buffer | string): void {
    const b = typeof data === 'string' ? Buffer.from(data) : data;
    if (this.#head.length < this.#headLimit) this.#head = Buffer.concat([this.#head, b.subarray(0, this.#headLimit - this.#head.length)]);
    this.#total += b.length;
    this.#chunks.push(b);
    this.#bytes += b.length;
    while (this.#bytes - (this.#chunks[0]?.length ?? 0) >= this.#limit && this.#chunks.length > 1) {
      this.#bytes -= this.#chunks.shift()?.length ?? 0;
    }
  }

  /** The kept text, trimmed UTF-8 (the head, then the last `limit` bytes; when bytes between them
   *  were dropped, each part is filtered on its own — `part` says which: the head's end and the
   *  tail's start may be cut anywhere — and they are joined on a new line), after `filter` removed
   *  noise. */
  text(filter?: (s: string, part?: 'head' | 'tail') => string): string {
    const f = (s: string, part?: 'head' | 'tail'): string => (filter ? filter(s, part) : s).trim();
    let b = Buffer.concat(this.#chunks);
    if (b.length > this.#limit) b = b.subarray(b.length - this.#limit);
    const tailStart = this.#total - b.length;
    if (tailStart <= this.#head.length) return f(Buffer.concat([this.#head.subarray(0, tailStart), b]).toString('utf8'));
    return [f(this.#head.toString('utf8'), 'head'), f(b.toString('utf8'), 'tail')].filter((x) => x !== '').join('\n');
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
