// Child process for drop-behind.test.ts: opens argv[2] for writing, asks its DropBehind for one drop
// (the dd in PATH: the test's fake one, which hangs) and waits to be killed.
import { promises as fsp } from 'node:fs';
import { DropBehind } from '../../../src/main/io/drop-behind.js';

const fh = await fsp.open(process.argv[2] ?? '', 'w');
const d = new DropBehind(fh.fd);
d.flushed();
setInterval(() => undefined, 60_000); // until killed
