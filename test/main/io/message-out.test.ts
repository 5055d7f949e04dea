// The command's message outputs (io/message-out.ts) behind a reader that does not read: a write
// never blocks, what does not fit waits in order up to MAX_WAITING bytes (the rest dropped, counted
// and said once the reader catches up), the descriptor given (shared with other processes) keeps
// its own flags, and a reader that went away is one 'error' (EPIPE).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { closeSync, constants, mkdtempSync, openSync, readFileSync, readSync, rmSync, writeSync } from 'node:fs';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { droppedNotice, MAX_WAITING, MessageOut } from '../../../src/main/io/message-out.js';

/** A FIFO with a reader that reads only when asked (`readAll`) and a blocking write end. */
function fifo(dir: string): { w: number; nonBlockingWriter: number; readAll: () => Buffer; closeReader: () => void } {
  const path = join(dir, 'out.fifo');
  execFileSync('mkfifo', [path]);
  const r = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  const w = openSync(path, constants.O_WRONLY);
  const nonBlockingWriter = openSync(path, constants.O_WRONLY | constants.O_NONBLOCK);
  const readAll = (): Buffer => {
    const parts: Buffer[] = [];
    const b = Buffer.alloc(1 << 16);
    for (;;) {
      let n = 0;
      try {
        n = readSync(r, b);
      } catch {
        break; // EAGAIN: empty for now
      }
      if (n === 0) break;
      parts.push(Buffer.from(b.subarray(0, n)));
    }
    return Buffer.concat(parts);
  };
  let open = true;
  const closeReader = (): void => {
    if (open) {
      closeSync(r);
      closeSync(nonBlockingWriter);
    }
    open = false;
  };
  return { w, nonBlockingWriter, readAll, closeReader };
}

/** Run `fn` with a FIFO of its own (closed and removed after). */
async function withFifo(fn: (f: ReturnType<typeof fifo>) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'qvmb-msgout-'));
  const f = fifo(dir);
  try {
    await fn(f);
  } finally {
    f.closeReader();
    closeSync(f.w);
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Read until `out` has nothing waiting (its retries run meanwhile). */
async function readUntilDrained(out: MessageOut, readAll: () => Buffer): Promise<Buffer> {
  const got: Buffer[] = [];
  const reading = setInterval(() => got.push(readAll()), 5);
  await out.drained();
  clearInterval(reading);
  got.push(readAll());
  return Buffer.concat(got);
}

const isNonBlocking = (fd: number): boolean => {
  // F_GETFL through /proc: the flags of the description behind fd, as octal
  const info = readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8');
  return (parseInt(/^flags:\s+([0-7]+)/m.exec(info)![1]!, 8) & constants.O_NONBLOCK) !== 0;
};

test('behind a reader that stops: writes never block, wait in order, and go out once read; the shared descriptor stays blocking', () =>
  withFifo(async (f) => {
    const out = new MessageOut(f.w);
    assert.equal(out.nonBlocking, true);
    const lines = Array.from({ length: 4000 }, (_, i) => `line ${i} ${'x'.repeat(60)}\n`); // ~280 KB, past a pipe's 64 KiB
    let refused = 0;
    for (const l of lines) if (!out.write(l)) refused++;
    assert.ok(refused > 0 && !out.ready(), 'the pipe filled: the rest waits');
    assert.equal(isNonBlocking(f.w), false, 'the descriptor given (shared with others) is left blocking');
    const got = await readUntilDrained(out, f.readAll);
    assert.equal(got.toString(), lines.join(''), 'every byte, in order');
    assert.ok(out.ready());
  }));

test('past the bytes it may keep waiting (MAX_WAITING), messages are dropped, counted, and said once the reader catches up', () =>
  withFifo(async (f) => {
    const max = 1 << 20;
    assert.ok(MAX_WAITING >= max);
    const out = new MessageOut(f.w, { maxWaiting: max });
    const line = `${'y'.repeat(1023)}\n`;
    const n = Math.ceil((max + (256 << 10)) / line.length);
    for (let i = 0; i < n; i++) out.write(line);
    assert.ok(out.dropped > 0, 'some dropped');
    const dropped = out.dropped;
    out.write('after\n'); // dropped too: nothing jumps the queue or splits a line
    const text = (await readUntilDrained(out, f.readAll)).toString();
    const notice = `\n${droppedNotice(dropped + 6)}`;
    assert.ok(text.endsWith(notice), text.slice(-200));
    const kept = text.slice(0, -notice.length);
    assert.equal(kept.length + dropped, n * line.length, 'kept + dropped = written');
    assert.ok(/^(y{1023}\n)+$/.test(kept), 'whole lines kept');
    assert.equal(out.dropped, 0, 'said once');
  }));

test('the lines a reader must get are kept past the bound, in order; the rest of a line begun is never cut; the count goes where asked', () =>
  withFifo(async (f) => {
    const notices: string[] = [];
    const out = new MessageOut(f.w, { maxWaiting: 64 << 10, onDropped: (n) => notices.push(n) });
    // one write larger than the pipe and the bound together: its start goes out, the rest waits whole
    const big = `${'b'.repeat(300 << 10)}\n`;
    assert.equal(out.write(big), false);
    const flood = Array.from({ length: 200 }, (_, i) => `status ${i} ${'s'.repeat(1000)}\n`);
    for (const l of flood) out.write(l); // dropped: the bound is taken
    assert.ok(out.dropped > 0 && !out.ready());
    out.writeKept('{"message_type":"summary"}\n');
    const text = (await readUntilDrained(out, f.readAll)).toString();
    assert.equal(text, big + '{"message_type":"summary"}\n', 'the big line whole, then the kept line; nothing of the flood');
    assert.deepEqual(notices, [droppedNotice(flood.join('').length)]);
  }));

test('a write dropped whole (nothing of it went out) still gets its count said once the reader catches up', () =>
  withFifo(async (f) => {
    const out = new MessageOut(f.w, { maxWaiting: 1024 });
    // the pipe filled by another writer: nothing of the next write goes out
    let filled = 0;
    for (const chunk = Buffer.alloc(4096, 0x2e); ; filled += chunk.length) {
      try {
        writeSync(f.nonBlockingWriter, chunk);
      } catch {
        break;
      }
    }
    assert.equal(out.write('x'.repeat(4096)), false); // past the bound: dropped
    assert.equal(out.ready(), false, 'not ready while a count is to be said');
    const text = (await readUntilDrained(out, f.readAll)).toString();
    assert.equal(text, '.'.repeat(filled) + `\n${droppedNotice(4096)}`);
    assert.ok(out.ready());
  }));

test('a reader that went away: one EPIPE error, nothing waits, later writes refused', () =>
  withFifo(async (f) => {
    const out = new MessageOut(f.w);
    f.closeReader();
    const errors: NodeJS.ErrnoException[] = [];
    out.on('error', (e: NodeJS.ErrnoException) => errors.push(e));
    assert.equal(out.write('one\n'), false);
    assert.equal(out.write('two\n'), false);
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(errors.map((e) => e.code), ['EPIPE']);
    assert.equal(out.ready(), false);
    await out.drained(); // resolves: nothing more will go out
  }));

test('a regular file is written to directly, at once', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'qvmb-msgout-'));
  try {
    const path = join(dir, 'log');
    const fd = openSync(path, 'a');
    const out = new MessageOut(fd);
    assert.equal(out.nonBlocking, false);
    assert.equal(out.write('hello\n'), true);
    assert.equal(readFileSync(path, 'utf8'), 'hello\n');
    closeSync(fd);
    await Promise.race([out.drained(), once(out, 'error')]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
