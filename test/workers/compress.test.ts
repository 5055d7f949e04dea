// Compression codecs against the real gzip/xz/bzip2/zstd programs, and the filter allow-list.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as zlib from 'node:zlib';
import { CodecError } from '../../src/workers/codec-error.js';
import { ALLOWED_FILTERS, allowedFilter, gunzipInto, gzipBlockInto, gzipBound, inflateInto } from '../../src/workers/compress.js';
import { filterAvailable, runFilterSync } from '../../src/main/io/filter-program.js';
import { zlibDirectAvailable, zlibInto } from '../../src/workers/zlib-into.js';
import { assertSameBytes, hasTool, run, sampleData } from './tools.js';

test('gzip members concatenated form one stream that gzip -dc decodes', () => {
  const data = sampleData(1_500_000, 3);
  const block = 400_000;
  const sab = new SharedArrayBuffer(data.length + 4 * gzipBound(block));
  const input = new Uint8Array(sab, 0, data.length);
  input.set(data);
  const members: Uint8Array[] = [];
  let at = data.length;
  for (let off = 0; off < data.length; off += block) {
    const src = input.subarray(off, Math.min(off + block, data.length));
    const out = new Uint8Array(sab, at, gzipBound(src.length));
    const n = gzipBlockInto(src, out, 6);
    assert.equal(typeof n, 'number');
    members.push(out.subarray(0, n as number));
    at += n as number;
  }
  const stream = Buffer.concat(members);
  assert.ok(stream.length < data.length * 0.8, 'the sample compresses');
  assertSameBytes(run('gzip', ['-dc'], stream), data, 'gzip -dc');
  const back = new Uint8Array(data.length);
  assert.equal(gunzipInto(stream, back), data.length, 'gunzipInto reads multi-member streams');
  assertSameBytes(back, data);
});

test('gunzipInto decodes gzip -6 output; too small output and corrupt input are reported', () => {
  const data = sampleData(800_000, 5);
  const gz = run('gzip', ['-6', '-c'], data);
  const out = new Uint8Array(data.length);
  assert.equal(gunzipInto(gz, out), data.length);
  assertSameBytes(out, data);
  assert.equal(gunzipInto(gz, new Uint8Array(data.length - 1)), 'too-large');
  assert.equal(gunzipInto(gz, new Uint8Array(1000)), 'too-large');
  assert.throws(() => gunzipInto(gz.subarray(0, gz.length - 100), out), (e: unknown) => e instanceof CodecError && e.reason === 'bad-data');
  const bad = Buffer.from(gz);
  bad[200] = (bad[200] ?? 0) ^ 0xff;
  assert.throws(() => gunzipInto(bad, new Uint8Array(2 * data.length)), (e: unknown) => e instanceof CodecError && e.reason === 'bad-data');
  assert.equal(gzipBlockInto(data, new Uint8Array(100), 6), 'too-large');
  assert.equal(gunzipInto(Buffer.concat([gz, Buffer.alloc(10)]), out), data.length, 'trailing zeros are ignored');
  assert.throws(() => gunzipInto(Buffer.concat([gz, Buffer.from('junk')]), out), CodecError);
});

test('inflateInto decodes zlib streams (openssl enc -z framing)', () => {
  const data = sampleData(300_000, 2);
  const z = zlib.deflateSync(data, { level: 6 });
  const out = new Uint8Array(data.length);
  assert.equal(inflateInto(z, out), data.length);
  assertSameBytes(out, data);
  assert.throws(() => inflateInto(run('gzip', ['-c'], data), out), CodecError, 'gzip framing is not zlib framing');
});

test('allow-list: only the listed names, returned from the list itself', () => {
  assert.deepEqual([...ALLOWED_FILTERS], ['gzip', 'pigz', 'bzip2', 'pbzip2', 'xz', 'lzma', 'zstd', 'zstdmt']);
  assert.equal(allowedFilter('xz'), 'xz');
  for (const bad of ['rm', 'sh', 'gzip ', '/usr/bin/gzip', 'gzip;id', 'GZIP', '../gzip', '']) {
    assert.equal(allowedFilter(bad), null);
    assert.equal(filterAvailable(bad), false);
    assert.throws(() => runFilterSync(bad, 'compress', Buffer.from('x')), (e: unknown) => e instanceof CodecError && e.reason === 'bad-params' && /not allowed/.test(e.message));
  }
  assert.equal(filterAvailable('gzip'), true);
});

for (const filter of ['xz', 'bzip2', 'gzip', 'zstd', 'lzma', 'pigz', 'zstdmt']) {
  test(`runFilterSync ${filter}: ours → ${filter} -d and ${filter} → ours`, (t) => {
    if (!hasTool(filter)) return t.skip(`${filter} not installed`);
    const data = sampleData(200_000, 7);
    const packed = runFilterSync(filter, 'compress', data);
    assert.ok(packed.length < data.length);
    assertSameBytes(run(filter, ['-d'], packed), data, `${filter} -d of ours`);
    const theirs = run(filter, [], data);
    assertSameBytes(runFilterSync(filter, 'decompress', theirs), data, `ours of ${filter}`);
    assert.throws(() => runFilterSync(filter, 'decompress', Buffer.from('not compressed at all')), (e: unknown) => e instanceof CodecError && e.reason === 'bad-data');
  });
}

test('runFilterSync decompress: data bzip2 ignored after its stream, and an xz dictionary over the bound, fail as bad data', (t) => {
  if (!hasTool('bzip2') || !hasTool('xz')) return t.skip('bzip2 or xz not installed');
  const data = sampleData(200_000, 8);
  const bz = run('bzip2', [], data);
  assertSameBytes(runFilterSync('bzip2', 'decompress', bz), data, 'bzip2 control');
  // a few bytes after the stream: bzip2 -d exits 0 and says it ignored them
  assert.throws(() => runFilterSync('bzip2', 'decompress', Buffer.concat([bz, Buffer.alloc(700)])), (e: unknown) => e instanceof CodecError && e.reason === 'bad-data' && /after the end of its stream: .*trailing garbage/.test(e.message));
  // a header asking for a 192 MiB dictionary: xz -d alone would take it
  const greedy = run('xz', ['--lzma2=dict=192MiB'], data);
  assert.throws(() => runFilterSync('xz', 'decompress', greedy), (e: unknown) => e instanceof CodecError && e.reason === 'bad-data' && /memory/i.test(e.message));
});

test('zlibInto: the direct path and the public-API fallback agree', () => {
  assert.equal(zlibDirectAvailable(), true, 'Node 20 zlib internals as expected (else the slow fallback runs)');
  const data = sampleData(500_000, 11);
  const a = new Uint8Array(gzipBound(data.length));
  const b = new Uint8Array(gzipBound(data.length));
  const na = zlibInto('gzip', data, a, 6);
  const nb = zlibInto('gzip', data, b, 6, { publicApi: true });
  assert.equal(typeof na, 'number');
  assert.equal(na, nb);
  const back = new Uint8Array(data.length);
  assert.equal(zlibInto('gunzip', b.subarray(0, nb as number), back, 6, { publicApi: true }), data.length);
  assertSameBytes(back, data);
  assert.equal(zlibInto('gunzip', b.subarray(0, nb as number), new Uint8Array(10), 6, { publicApi: true }), 'too-large');
  assert.throws(() => zlibInto('gunzip', b.subarray(0, 100), back, 6, { publicApi: true }), CodecError);
});

test('edge cases: empty input makes a valid empty member; empty gzip input is corrupt; level 0 works', () => {
  const out = new Uint8Array(gzipBound(0));
  const n = gzipBlockInto(new Uint8Array(0), out, 6);
  assert.equal(typeof n, 'number');
  assert.equal(run('gzip', ['-dc'], out.subarray(0, n as number)).length, 0);
  assert.throws(() => gunzipInto(new Uint8Array(0), new Uint8Array(10)), CodecError);
  const data = sampleData(70_000, 1);
  const stored = new Uint8Array(gzipBound(data.length));
  const m = gzipBlockInto(data, stored, 0) as number;
  assertSameBytes(run('gzip', ['-dc'], stored.subarray(0, m)), data, 'level 0');
  assert.throws(() => gzipBlockInto(data, stored, 10), RangeError);
});
