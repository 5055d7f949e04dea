// Child process for sink.test.ts: writes argv[3] to a numbered file sink for argv[2], says
// "ready", commits when a line arrives on stdin (so several children commit at the same moment),
// and prints the name its archive got.
import { openFileSink } from '../../../src/main/io/sink.js';

const sink = await openFileSink(process.argv[2] ?? '', { numbered: true });
await sink.write(Buffer.from(process.argv[3] ?? ''));
process.stdout.write('ready\n');
process.stdin.once('data', () => {
  process.stdin.pause();
  sink.commit().then(
    () => process.stdout.write(`path ${sink.path}\n`),
    (e: unknown) => {
      process.stderr.write(`${(e as Error).message}\n`);
      process.exitCode = 1;
    },
  );
});
