// Child process for sink.test.ts: writes `argv[2]` MiB to stdoutSink() and reports the outcome
// (ok or the error code and message) as JSON on stderr.
import { stdoutSink } from '../../../src/main/io/sink.js';

const mib = Number(process.argv[2] ?? '8');
const sink = stdoutSink();
const block = Buffer.alloc(1024 * 1024, 0x61);
try {
  for (let i = 0; i < mib; i++) await sink.write(block);
  await sink.commit();
  process.stderr.write(`${JSON.stringify({ ok: true })}\n`);
} catch (e) {
  const err = e as { code?: string; message?: string };
  await sink.abort();
  process.stderr.write(`${JSON.stringify({ ok: false, code: err.code, message: err.message })}\n`);
}
