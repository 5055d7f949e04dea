// Progress reporting for backup and restore: state (bytes in/out, current VM, rate, ETA) plus
// renderers — a live line on a TTY (stderr), a plain line at most every 10 s otherwise, JSON lines
// with --json (stdout), nothing with --quiet. Domain code calls the methods; only this file prints.
import { formatBytes } from '../cli/size.js';

export type ProgressMode = 'tty' | 'plain' | 'json' | 'quiet';

/** What a run does: the `operation` of every JSON message (docs/json.md). */
export type Operation = 'backup' | 'restore' | 'verify';

export interface ProgressReporter {
  /** total = expected input bytes (the denominator of percent and ETA; 0 = unknown: no percent) */
  start(what: 'backup' | 'restore' | 'verify', totalBytes: number): void;
  /** absolute counters: bytes consumed from the source, bytes really written to the destination */
  update(bytesIn: number, bytesOut: number, currentVm?: string): void;
  vmDone(name: string, ok: boolean, detail?: string): void;
  info(text: string): void;
  warn(text: string): void;
  /** final summary; `fields` also goes into the JSON summary */
  finish(ok: boolean, text: string, fields?: Record<string, unknown>): void;
  /** the plan before any data moves: `text` for people, `fields` (structured) for --json */
  plan?(text: string, fields: Record<string, unknown>): void;
  /** -v: the effective settings, once at the start */
  settings?(fields: Record<string, string | number | boolean | null>): void;
  /** -v: one file (inner archive) of a VM is complete (written, restored or verified) */
  fileDone?(vm: string, file: string, bytes: number): void;
}

export const noopProgress: ProgressReporter = {
  start() {},
  update() {},
  vmDone() {},
  info() {},
  warn() {},
  finish() {},
};

function fmtDuration(sec: number): string {
  if (!Number.isFinite(sec) || sec < 0) return '--:--';
  const s = Math.round(sec);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const r = s % 60;
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${String(r).padStart(2, '0')}` : `${m}:${String(r).padStart(2, '0')}`;
}

/** Progress renderer for the terminal, logs and JSON consumers. */
export class Progress implements ProgressReporter {
  #mode: ProgressMode;
  #what = 'backup';
  #total = 0;
  #in = 0;
  #out = 0;
  #vm: string | undefined;
  #t0 = Date.now();
  #lastDraw = 0;
  #drawn = false;
  #timer: NodeJS.Timeout | undefined;
  #err: NodeJS.WritableStream;
  #out$: NodeJS.WritableStream;
  #verbose: boolean;

  constructor(mode: ProgressMode, streams: { stderr?: NodeJS.WritableStream; stdout?: NodeJS.WritableStream; operation?: Operation; verbose?: boolean } = {}) {
    this.#mode = mode;
    this.#err = streams.stderr ?? process.stderr;
    this.#out$ = streams.stdout ?? process.stderr;
    this.#what = streams.operation ?? 'backup';
    this.#verbose = streams.verbose === true;
  }

  /** the operation the JSON messages name (set at construction, so that a run failing early says it too) */
  get operation(): string {
    return this.#what;
  }

  /** every JSON message: its type, then the operation, then its own fields (docs/json.md) */
  #json(obj: Record<string, unknown>): void {
    const { message_type, ...rest } = obj;
    this.#out$.write(JSON.stringify({ message_type, operation: this.#what, ...rest }) + '\n');
  }

  #status(): { percent: number; rate: number; eta: number; elapsed: number } {
    const elapsed = (Date.now() - this.#t0) / 1000;
    const rate = elapsed > 0 ? this.#in / elapsed : 0;
    const percent = this.#total > 0 ? Math.min(100, (100 * this.#in) / this.#total) : 0;
    const eta = rate > 0 && this.#total > this.#in ? (this.#total - this.#in) / rate : this.#total > 0 && this.#in >= this.#total ? 0 : NaN;
    return { percent, rate, eta, elapsed };
  }

  #labels(): [string, string] {
    return this.#what === 'backup' ? ['read', 'written'] : ['of the archive read', 'verified'];
  }

  #line(): string {
    const s = this.#status();
    const vm = this.#vm ? ` ${this.#vm}` : '';
    const [a, b] = this.#labels();
    const eta = s.elapsed < 3 ? '--:--' : fmtDuration(s.eta);
    if (this.#total <= 0) return `${this.#what}: ${formatBytes(this.#in)} ${a}, ${formatBytes(this.#out)} ${b}, ${formatBytes(s.rate)}/s${vm}`;
    return `${this.#what}: ${s.percent.toFixed(1)}% ${formatBytes(this.#in)}/${formatBytes(this.#total)} ${a}, ${formatBytes(this.#out)} ${b}, ${formatBytes(s.rate)}/s, ETA ${eta}${vm}`;
  }

  #draw(force = false): void {
    const now = Date.now();
    if (this.#mode === 'tty') {
      if (!force && now - this.#lastDraw < 200) return;
      this.#err.write(`\r\x1b[K${this.#line()}`);
      this.#drawn = true;
    } else if (this.#mode === 'plain') {
      if (!force && now - this.#lastDraw < 10_000) return;
      this.#err.write(this.#line() + '\n');
    } else if (this.#mode === 'json') {
      if (!force && now - this.#lastDraw < 1000) return;
      const s = this.#status();
      this.#json({ message_type: 'status', operation: this.#what, percent_done: s.percent / 100, bytes_done: this.#in, total_bytes: this.#total, bytes_written: this.#out, rate_bytes_per_second: Math.round(s.rate), seconds_elapsed: Math.round(s.elapsed), seconds_remaining: Number.isFinite(s.eta) ? Math.round(s.eta) : null, current_vm: this.#vm ?? null });
    }
    this.#lastDraw = now;
  }

  #clearLine(): void {
    if (this.#mode === 'tty' && this.#drawn) {
      this.#err.write('\r\x1b[K');
      this.#drawn = false;
    }
  }

  start(what: 'backup' | 'restore' | 'verify', totalBytes: number): void {
    this.#what = what;
    this.#total = totalBytes;
    this.#t0 = Date.now();
    if (this.#mode === 'tty' || this.#mode === 'json' || this.#mode === 'plain') {
      this.#timer = setInterval(() => this.#draw(), this.#mode === 'tty' ? 500 : 1000);
      this.#timer.unref();
    }
  }

  update(bytesIn: number, bytesOut: number, currentVm?: string): void {
    this.#in = bytesIn;
    this.#out = bytesOut;
    if (currentVm !== undefined) this.#vm = currentVm;
    this.#draw();
  }

  vmDone(name: string, ok: boolean, detail?: string): void {
    if (this.#mode === 'json') this.#json({ message_type: 'vm_done', vm: name, ok, detail: detail ?? null });
    else if (this.#mode !== 'quiet' || !ok) {
      this.#clearLine();
      this.#err.write(`${ok ? 'done' : 'FAILED'}: ${name}${detail ? ` (${detail})` : ''}\n`);
      if (this.#mode === 'tty') this.#draw(true);
    }
  }

  info(text: string): void {
    if (this.#mode === 'json') this.#json({ message_type: 'info', message: text });
    else if (this.#mode !== 'quiet') {
      this.#clearLine();
      this.#err.write(text + '\n');
    }
  }

  warn(text: string): void {
    if (this.#mode === 'json') this.#json({ message_type: 'warning', message: text });
    this.#clearLine();
    if (this.#mode !== 'json') this.#err.write(`warning: ${text}\n`);
  }

  finish(ok: boolean, text: string, fields: Record<string, unknown> = {}): void {
    if (this.#timer) clearInterval(this.#timer);
    const s = this.#status();
    if (this.#mode === 'json') {
      this.#json({ message_type: 'summary', operation: this.#what, ok, message: text, bytes_done: this.#in, bytes_written: this.#out, seconds_elapsed: Math.round(s.elapsed * 10) / 10, ...fields });
      return;
    }
    this.#clearLine();
    const [a, b] = this.#labels();
    if (!ok && this.#timer === undefined) return; // failed before any data moved: the error line says it all
    if (this.#mode !== 'quiet' || !ok) this.#err.write(`${text} (${formatBytes(this.#in)} ${a}, ${formatBytes(this.#out)} ${b} in ${fmtDuration(s.elapsed)}, ${formatBytes(s.rate)}/s)\n`);
  }

  plan(text: string, fields: Record<string, unknown>): void {
    if (this.#mode === 'json') this.#json({ message_type: 'plan', ...fields });
    else if (this.#mode !== 'quiet') {
      this.#clearLine();
      this.#err.write(text.endsWith('\n') ? text : `${text}\n`);
    }
  }

  settings(fields: Record<string, string | number | boolean | null>): void {
    if (!this.#verbose) return;
    if (this.#mode === 'json') this.#json({ message_type: 'settings', settings: fields });
    else if (this.#mode !== 'quiet') {
      this.#clearLine();
      const shownValue = (k: string, v: string | number | boolean | null): string => (v === null ? '-' : typeof v === 'number' && /(memory|size)$/.test(k) ? formatBytes(v) : String(v));
      this.#err.write(`settings: ${Object.entries(fields).map(([k, v]) => `${k}=${shownValue(k, v)}`).join(', ')}\n`);
    }
  }

  fileDone(vm: string, file: string, bytes: number): void {
    if (!this.#verbose) return;
    if (this.#mode === 'json') this.#json({ message_type: 'file_done', vm, file, bytes });
    else if (this.#mode !== 'quiet') {
      this.#clearLine();
      this.#err.write(`  ${file} (${vm}, ${formatBytes(bytes)})\n`);
      if (this.#mode === 'tty') this.#draw(true);
    }
  }
}
