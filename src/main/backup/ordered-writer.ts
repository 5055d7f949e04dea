// Writes finished chunks into the outer archive strictly in the order they were queued, then
// releases their memory. A chunk's slot is released only after its bytes were written.
import { AsyncQueue } from '../pipeline/async-queue.js';
import type { OuterTarWriter } from '../tar/outer-tar-writer.js';
import { RunStats } from '../stats/run-stats.js';
import { STAGE } from '../stats/bound.js';

export interface OuterMember {
  name: string;
  parts: Uint8Array[];
}

/** A member whose data is still being made when its job resolves: `pieces` yields it as it is
 *  (`size` bytes in all), and fails when its making does. */
export interface StreamedMember {
  name: string;
  size: number;
  pieces: AsyncIterable<Uint8Array>;
}

/** What a queued job resolves to: members to write, and what to release afterwards. */
export interface WriteJobResult {
  members: (OuterMember | StreamedMember)[];
  release(): void;
  /** called after the members were written */
  written?(): void;
}

/** How far the input is done: `mark()` is asked when a job is queued (how much input its data
 *  stands for), `done(mark)` told once that job was written. */
export interface InputMarks {
  mark(): number;
  done(mark: number): void;
}

/** Ordered writer loop: `enqueue` jobs (promises) in archive order, `run()` writes them. */
export class OrderedWriter {
  #queue = new AsyncQueue<Promise<WriteJobResult>>();
  #outer: OuterTarWriter;
  #onWritten: (bytes: number) => void;
  #stats: RunStats;
  #marks: InputMarks | undefined;
  /** the input marks of the queued jobs, in their order */
  #pendingMarks: number[] = [];
  /** the mark of the last job written (where a job's share of the input starts) */
  #lastMark = 0;

  constructor(outer: OuterTarWriter, onWritten: (bytesWritten: number) => void, stats: RunStats = RunStats.off(), marks?: InputMarks) {
    this.#outer = outer;
    this.#onWritten = onWritten;
    this.#stats = stats;
    this.#marks = marks;
  }

  /** Queue a job; its members are written after every job queued before it. */
  enqueue(job: Promise<WriteJobResult>): void {
    job.catch(() => {}); // observed by run(); avoid an unhandled rejection meanwhile
    if (this.#marks !== undefined) this.#pendingMarks.push(this.#marks.mark());
    this.#queue.push(job);
  }

  /** No more jobs. */
  close(): void {
    this.#queue.close();
  }

  /** Stop early: release whatever is still queued. */
  abort(err: unknown): void {
    for (const job of this.#queue.drain()) job.then((r) => r.release(), () => {});
    this.#queue.fail(err);
  }

  /** Write every job in order until close(); rejects on the first failed job or write. */
  async run(): Promise<void> {
    for await (const job of this.#queue) {
      const r = await this.#stats.time(STAGE.backupWaitChunk, () => job);
      // while a member is written in pieces, the input it stands for is done in proportion (a
      // 100 MiB chunk to a 1 MB/s destination must not hold the percent for 100 s)
      const from = this.#outer.bytesWritten;
      const bytes = r.members.reduce((a, m) => a + ('pieces' in m ? m.size : m.parts.reduce((b, p) => b + p.length, 0)), 0);
      const mark = this.#pendingMarks[0];
      const interim = (): void => {
        if (mark === undefined || bytes === 0) return;
        this.#marks?.done(this.#lastMark + (mark - this.#lastMark) * Math.min(1, (this.#outer.bytesWritten - from) / bytes));
      };
      try {
        for (const m of r.members) {
          if ('pieces' in m) {
            // its waits for pieces are the pieces' own (they count them as waits for the chunk);
            // the progress hears of each write, not only of the whole chunk
            await this.#outer.addMemberStream(m.name, m.size, m.pieces, () => {
              const end = this.#stats.begin(STAGE.backupWrite);
              return () => {
                end();
                interim();
                this.#onWritten(this.#outer.bytesWritten);
              };
            });
          } else {
            const size = m.parts.reduce((a, p) => a + p.length, 0);
            await this.#stats.time(STAGE.backupWrite, () => this.#outer.addMember(m.name, m.parts, size));
          }
        }
      } finally {
        r.release();
      }
      r.written?.();
      this.#pendingMarks.shift();
      if (mark !== undefined) {
        this.#marks?.done(mark);
        this.#lastMark = mark;
      }
      this.#onWritten(this.#outer.bytesWritten);
    }
  }
}
