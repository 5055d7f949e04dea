// The sink interface, apart from the sinks: command-sink.ts implements it without importing sink.ts
// (which re-exports commandSink), so the two never import each other.

/** A destination for the backup stream. After commit() or abort() no more writes are allowed. */
export interface Sink {
  /** Write bytes; resolves when the sink can take more (backpressure) and no longer references
   *  `data`, so the caller may overwrite it. Rejects with ERR_CANCELLED after abort(). */
  write(data: Uint8Array): Promise<void>;
  /** Make the written bytes durable/visible as the finished backup. `signal` ends a wait on
   *  someone else (a reader of stdout, a command's exit) with its reason; abort() then follows. */
  commit(signal?: AbortSignal): Promise<void>;
  /** Throw away what was written, as far as possible; never throws. */
  abort(): Promise<void>;
  readonly description: string;
  /** A destination program's: what it wrote on its stderr (the tail, as one line; '' for nothing),
   *  shown once the backup succeeded (a failure's message carries it already). */
  said?(): string;
}
