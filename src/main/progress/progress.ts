// Progress reporting for backup and restore: state (bytes in/out, current VM, rate, ETA) plus
// renderers — a live line on a TTY (stderr), a plain line at most every 10 s otherwise, JSON lines
// with --json (stdout), nothing with --quiet. Domain code calls the methods; only this file prints.
import { lastMoved } from './activity.js';
import { formatBytes } from '../size-text.js';

export type ProgressMode = 'tty' | 'plain' | 'json' | 'quiet';

/** Where the lines go (io/message-out.ts in the commands). `ready` false: earlier output still
 *  waits for its reader, and a status line (which the next one replaces) is skipped. */
export interface MessageSink {
  write(text: string): unknown;
  ready?(): boolean;
  /** the final line: never dropped (write() where the sink has no such thing) */
  writeKept?(text: string): unknown;
}

const kept = (sink: MessageSink, text: string): unknown => (sink.writeKept ? sink.writeKept(text) : sink.write(text));

/** What a run does: the `operation` of every JSON message (docs/json.md). */
export type Operation = 'backup' | 'restore' | 'verify';

export interface ProgressReporter {
  /** total = expected input bytes (the denominator of percent and ETA; 0 = unknown: no percent) */
  start(what: 'backup' | 'restore' | 'verify', totalBytes: number): void;
  /**
   * absolute counters: bytes consumed from the source, bytes really written to the destination;
   * `bytesDone` (default bytesIn): the part of the input whose work is finished, for percent and
   * ETA (a restore reads chunks well before their keys are derived and their data written)
   */
  update(bytesIn: number, bytesOut: number, currentVm?: string, bytesDone?: number): void;
  /** what is happening while no bytes move (e.g. "deriving keys"); null ends it */
  phase(text: string | null): void;
  /** the run waits for the user (passphrase, confirmation): that time is not part of the elapsed time */
  waitingForUser(waiting: boolean): void;
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
  phase() {},
  waitingForUser() {},
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
  #done = 0;
  #vm: string | undefined;
  #phase: string | undefined;
  /** the run stops (stopping()): its phase stays until the end */
  #stopping = false;
  #now: () => number;
  /** the run's start (the elapsed time includes the work before the data: header, keys, plan) */
  #t0: number;
  /** start of the data phase (the rate and ETA are of the data phase) */
  #tData: number | undefined;
  #userWait = 0;
  #userWaitSince: number | undefined;
  #finished = false;
  /** when the run last moved (bytes, a new phase, the end of a wait for the user): for stall checks */
  #moved: number;
  #lastDraw = 0;
  #drawn = false;
  #timer: NodeJS.Timeout | undefined;
  #err: MessageSink;
  #out$: MessageSink;
  #verbose: boolean;

  constructor(mode: ProgressMode, streams: { stderr?: MessageSink; stdout?: MessageSink; clock?: () => number; operation?: Operation; verbose?: boolean } = {}) {
    this.#mode = mode;
    this.#what = streams.operation ?? 'backup';
    this.#err = streams.stderr ?? process.stderr;
    this.#out$ = streams.stdout ?? process.stderr;
    this.#verbose = streams.verbose === true;
    this.#now = streams.clock ?? Date.now;
    this.#t0 = this.#now();
    this.#moved = this.#t0;
  }

  /** How long the run has not moved (no byte counted, no new phase); 0 while it waits for the user. */
  get stillMs(): number {
    return this.#userWaitSince !== undefined || this.#finished ? 0 : this.#now() - Math.max(this.#moved, lastMoved());
  }

  /** the operation the JSON messages name (set at construction, so that a run failing early says it too) */
  get operation(): string {
    return this.#what;
  }

  /** every JSON message: its type, then the operation, then its own fields (docs/json.md) */
  #json(obj: Record<string, unknown>, keep = false): void {
    const { message_type, ...rest } = obj;
    const line = JSON.stringify({ message_type, operation: this.#what, ...rest }) + '\n';
    if (keep) kept(this.#out$, line);
    else this.#out$.write(line);
  }

  #status(): { percent: number; rate: number; eta: number; elapsed: number } {
    const now = this.#now();
    const waited = this.#userWait + (this.#userWaitSince !== undefined ? now - this.#userWaitSince : 0);
    const elapsed = Math.max(0, now - this.#t0 - waited) / 1000;
    const dataSec = this.#tData === undefined ? 0 : (now - this.#tData) / 1000;
    const rate = dataSec > 0 ? this.#done / dataSec : 0;
    // 100 % is the end of the run, not the end of reading: until then at most 99.9 %
    const raw = this.#total > 0 ? (100 * this.#done) / this.#total : 0;
    const percent = this.#finished ? Math.min(100, raw) : Math.min(99.9, raw);
    // rounded up: a run that is not done never claims 0:00 left
    const eta = this.#finished ? 0 : rate > 0 && this.#total > this.#done ? Math.ceil((this.#total - this.#done) / rate) : NaN;
    return { percent, rate, eta, elapsed };
  }

  #labels(): [string, string] {
    return this.#what === 'backup' ? ['read', 'written'] : ['of the archive read', 'verified'];
  }

  /** The live line (also the periodic log line). */
  line(): string {
    const s = this.#status();
    if (this.#phase !== undefined) return `${this.#what}: ${this.#phase}… ${fmtDuration(s.elapsed)}`;
    const vm = this.#vm ? ` ${this.#vm}` : '';
    const [a, b] = this.#labels();
    const dataSec = this.#tData === undefined ? 0 : (this.#now() - this.#tData) / 1000;
    const eta = this.#total > 0 && this.#done >= this.#total ? 'finishing' : `ETA ${dataSec < 3 ? '--:--' : fmtDuration(s.eta)}`;
    const done = this.#what === 'backup' ? '' : ` (${formatBytes(this.#done)} processed)`;
    if (this.#total <= 0) return `${this.#what}: ${formatBytes(this.#in)} ${a}, ${formatBytes(this.#out)} ${b}, ${formatBytes(Math.round(s.rate))}/s${vm}`;
    return `${this.#what}: ${s.percent.toFixed(1)}% ${formatBytes(this.#in)}/${formatBytes(this.#total)} ${a}${done}, ${formatBytes(this.#out)} ${b}, ${formatBytes(Math.round(s.rate))}/s, ${eta}${vm}`;
  }

  #draw(force = false): void {
    const now = this.#now();
    if (this.#userWaitSince !== undefined) return; // a prompt owns the terminal
    if (this.#mode === 'tty') {
      if ((!force && now - this.#lastDraw < 200) || this.#err.ready?.() === false) return;
      this.#err.write(`\r\x1b[K${this.line()}`);
      this.#drawn = true;
    } else if (this.#mode === 'plain') {
      // a log gets no line before the data phase: an error there stays the only line
      if (this.#tData === undefined || (!force && now - this.#lastDraw < 10_000) || this.#err.ready?.() === false) return;
      this.#err.write(this.line() + '\n');
    } else if (this.#mode === 'json') {
      if ((!force && now - this.#lastDraw < 1000) || this.#out$.ready?.() === false) return;
      const s = this.#status();
      this.#json({ message_type: 'status', operation: this.#what, phase: this.#phase ?? null, percent_done: s.percent / 100, bytes_done: this.#done, total_bytes: this.#total, bytes_read: this.#in, bytes_written: this.#out, rate_bytes_per_second: Math.round(s.rate), seconds_elapsed: Math.round(s.elapsed), seconds_remaining: Number.isFinite(s.eta) ? Math.round(s.eta) : null, current_vm: this.#vm ?? null });
    } else return;
    this.#lastDraw = now;
  }

  #clearLine(): void {
    if (this.#mode === 'tty' && this.#drawn) {
      this.#err.write('\r\x1b[K');
      this.#drawn = false;
    }
  }

  #tick(): void {
    if (this.#timer !== undefined || this.#mode === 'quiet') return;
    this.#timer = setInterval(() => this.#draw(), this.#mode === 'tty' ? 500 : 1000);
    this.#timer.unref();
  }

  start(what: 'backup' | 'restore' | 'verify', totalBytes: number): void {
    this.#moved = this.#now();
    this.#what = what;
    this.#total = totalBytes;
    this.#tData = this.#now();
    this.#lastDraw = 0; // the first line of the data phase comes at the next tick
    this.#tick();
  }

  update(bytesIn: number, bytesOut: number, currentVm?: string, bytesDone?: number): void {
    if (bytesIn !== this.#in || bytesOut !== this.#out || (bytesDone ?? bytesIn) !== this.#done) this.#moved = this.#now();
    this.#in = bytesIn;
    this.#out = bytesOut;
    this.#done = bytesDone ?? bytesIn;
    if (currentVm !== undefined) this.#vm = currentVm;
    this.#draw();
  }

  phase(text: string | null): void {
    if (this.#stopping || (text ?? undefined) === this.#phase) return;
    this.#phase = text ?? undefined;
    this.#moved = this.#now();
    if (text === null) {
      this.#clearLine();
      return;
    }
    this.#tick();
    if (this.#mode !== 'plain') this.#draw(true);
  }

  /** A signal stops the run: the phase says "stopping" from now to the end, whatever the run's
   *  parts set or clear meanwhile (the header's derivation ending, the data starting to move). */
  stopping(): void {
    this.phase('stopping');
    this.#stopping = true;
  }

  waitingForUser(waiting: boolean): void {
    const now = this.#now();
    if (waiting && this.#userWaitSince === undefined) {
      this.#clearLine();
      this.#userWaitSince = now;
    } else if (!waiting && this.#userWaitSince !== undefined) {
      this.#userWait += now - this.#userWaitSince;
      this.#userWaitSince = undefined;
      this.#moved = now;
    }
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
    const started = this.#tData !== undefined;
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    this.#phase = undefined;
    this.#finished = ok;
    if (ok) this.#done = Math.max(this.#done, this.#in);
    const s = this.#status();
    if (this.#mode === 'json') {
      this.#json({ message_type: 'summary', operation: this.#what, ok, message: text, bytes_done: this.#in, bytes_written: this.#out, seconds_elapsed: Math.round(s.elapsed * 10) / 10, ...fields }, true);
      return;
    }
    this.#clearLine();
    const [a, b] = this.#labels();
    // failed before any data moved, or quiet: the error line says it all
    if (this.#mode === 'quiet' || (!ok && !started)) return;
    kept(this.#err, `${text} (${formatBytes(this.#in)} ${a}, ${formatBytes(this.#out)} ${b} in ${fmtDuration(s.elapsed)}, ${formatBytes(Math.round(s.rate))}/s)\n`);
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
