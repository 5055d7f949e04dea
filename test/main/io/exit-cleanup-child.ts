// Child process for exit-cleanup.test.ts: opens a file sink for argv[2] and a FIFO directory, writes
// a little, prints both paths, and exits at once with process.exit (what a second Ctrl-C does),
// unless argv[3] is "commit": then it commits the archive first.
import { openFileSink } from '../../../src/main/io/sink.js';
import { makeFifoDir, mkfifo } from '../../../src/main/tar/fifo.js';
import { loadSpawner } from '../../../src/main/io/spawn.js';
import { readdirSync } from 'node:fs';
import path from 'node:path';

await loadSpawner();
const target = process.argv[2] ?? '';
const sink = await openFileSink(target);
await sink.write(Buffer.from('part of an archive'));
const fifoDir = await makeFifoDir();
await mkfifo(path.join(fifoDir, 'volume'));
if (process.argv[3] === 'commit') await sink.commit();
const partial = readdirSync(path.dirname(target)).filter((n) => n.includes('.partial-'));
process.stdout.write(`${JSON.stringify({ fifoDir, partial })}\n`);
process.exit(130);
