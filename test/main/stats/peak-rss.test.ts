import { test } from 'node:test';
import assert from 'node:assert/strict';
import { peakRssBytes } from '../../../src/main/stats/peak-rss.js';

test('peakRssBytes reads VmHWM of /proc/self/status', () => {
  const status = 'Name:\tnode\nVmPeak:\t 1234567 kB\nVmHWM:\t   51200 kB\nVmRSS:\t   40000 kB\n';
  assert.equal(peakRssBytes(status), 51200 * 1024);
});

test('peakRssBytes falls back to getrusage where /proc has no VmHWM', () => {
  // the peak may rise between two reads: bracketed
  const before = process.resourceUsage().maxRSS * 1024;
  const got = peakRssBytes('Name:\tnode\n');
  const after = process.resourceUsage().maxRSS * 1024;
  assert.ok(got >= before && got <= after, `${got} outside [${before}, ${after}]`);
});

test('peakRssBytes of this process: at least its current RSS, and grows with touched memory', () => {
  const before = peakRssBytes();
  const rssNow = process.memoryUsage.rss();
  assert.ok(before >= rssNow - 8 * 1024 * 1024, `peak ${before} below the current RSS ${rssNow}`);
  const held = Buffer.alloc(96 * 1024 * 1024, 1);
  const after = peakRssBytes();
  assert.ok(after - before >= 64 * 1024 * 1024, `peak grew by ${after - before} bytes only`);
  assert.equal(held[1], 1);
});
