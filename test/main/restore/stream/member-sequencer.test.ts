// The member sequencer on its own: names (and sizes) in archive order → what each member is.
// In order, out of order, duplicates, a missing .000, unexpected names, the .hmac pairing of
// formats 2/3, finality (v2 volumes, v3's empty last chunk), and which subdirs a truncated
// stream leaves open.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MemberSequencer, type Decision } from '../../../../src/main/restore/stream/member-sequencer.js';
import type { FormatVersion } from '../../../../src/main/format/backup-header.js';

/** A decision as a short string, so a whole sequence compares in one deepEqual. */
function show(d: Decision): string {
  switch (d.kind) {
    case 'error':
      return `error ${d.error.code}`;
    case 'held-final':
      return `held-final ${d.final}`;
    case 'end-file':
      return 'end-file';
    case 'start-file':
      return `start ${d.base}`;
    case 'chunk':
    case 'hmac':
      return `${d.kind} ${d.name}`;
    case 'missing-hmac':
      return `missing-hmac ${d.name}`;
    case 'fail-current':
      return `fail-current: ${d.message}`;
    case 'orphan':
    case 'stray-hmac':
      return `${d.kind} ${d.base} (${d.name}): ${d.message}`;
  }
}

/** Feed `members` ([name, size]) and, unless `truncated`, the end; every decision in order. */
function run(version: FormatVersion, members: [string, number][], truncated = false): { out: string[]; seq: MemberSequencer } {
  const seq = new MemberSequencer(version);
  const out: string[] = [];
  for (const [name, size] of members) out.push(...seq.next(name, size).map(show));
  if (!truncated) out.push(...seq.end().map(show));
  return { out, seq };
}

test('format 4 in order: each file starts with .000, its chunks continue it, the next base ends it', () => {
  const { out } = run(4, [['vm1/private.img.000.enc', 9], ['vm1/private.img.001.enc', 9], ['vm1/firewall.xml.000.enc', 3]]);
  assert.deepEqual(out, [
    'held-final true', 'start vm1/private.img', 'chunk vm1/private.img.000',
    'held-final false', 'chunk vm1/private.img.001',
    'held-final true', 'end-file', 'start vm1/firewall.xml', 'chunk vm1/firewall.xml.000',
    'held-final true', 'end-file',
  ]);
});

test('format 3: each chunk\'s .hmac is paired; a chunk is final when the next member does not continue its file', () => {
  const { out } = run(3, [['vm1/private.img.000', 9], ['vm1/private.img.000.hmac', 1], ['vm1/private.img.001', 9], ['vm1/private.img.001.hmac', 1]]);
  assert.deepEqual(out, [
    'held-final true', 'start vm1/private.img', 'chunk vm1/private.img.000', 'hmac vm1/private.img.000',
    'held-final false', 'chunk vm1/private.img.001', 'hmac vm1/private.img.001',
    'held-final true', 'end-file',
  ]);
});

test('format 3: an empty continuation chunk makes the one before it final; format 2 volumes never end by size', () => {
  const members: [string, number][] = [['vm1/private.img.000', 9], ['vm1/private.img.000.hmac', 1], ['vm1/private.img.001', 0]];
  assert.equal(run(3, members).out[4], 'held-final true');
  assert.equal(run(2, members).out[4], 'held-final false', 'a v2 volume .000 followed by .001 is not a single volume');
  assert.deepEqual(run(2, [['vm1/private.img.000', 9], ['vm1/private.img.000.hmac', 1]]).out.slice(-2), ['held-final true', 'end-file']);
});

test('out of order: a gap fails the current file and the chunk is an orphan (skipped)', () => {
  const { out } = run(4, [['vm1/root.img.000.enc', 9], ['vm1/root.img.002.enc', 9], ['vm1/root.img.003.enc', 9]]);
  assert.deepEqual(out, [
    'held-final true', 'start vm1/root.img', 'chunk vm1/root.img.000',
    'held-final true', 'fail-current: chunk vm1/root.img.002 out of order: vm1/root.img.001 is missing', 'end-file',
    'orphan vm1/root.img (vm1/root.img.002): chunk vm1/root.img.002 without the preceding chunks of vm1/root.img',
    'held-final true', 'orphan vm1/root.img (vm1/root.img.003): chunk vm1/root.img.003 without the preceding chunks of vm1/root.img',
    'held-final true',
  ]);
});

test('duplicates: a repeated chunk inside a file, and a second .000 of a finished file', () => {
  const inFile = run(4, [['a/x.000.enc', 1], ['a/x.001.enc', 1], ['a/x.001.enc', 1]]).out;
  assert.deepEqual(inFile.slice(5, 9), ['held-final true', 'fail-current: duplicate chunk a/x.001 (expected a/x.002)', 'end-file', 'orphan a/x (a/x.001): chunk a/x.001 without the preceding chunks of a/x']);
  const again = run(4, [['a/x.000.enc', 1], ['a/y.000.enc', 1], ['a/x.000.enc', 1]]).out;
  assert.ok(again.includes('orphan a/x (a/x.000): duplicate chunk a/x.000'), again.join('\n'));
  assert.ok(!again.slice(6).includes('start a/x'));
});

test('a missing .000: the first chunk of a file is an orphan; in format 3 its .hmac is still expected (and skipped)', () => {
  const { out } = run(3, [['vm2/private.img.001', 9], ['vm2/private.img.001.hmac', 1], ['vm2/volatile.img.000', 9]]);
  assert.deepEqual(out.slice(0, 3), ['held-final true', 'orphan vm2/private.img (vm2/private.img.001): chunk vm2/private.img.001 without the preceding chunks of vm2/private.img', 'hmac vm2/private.img.001']);
  assert.ok(!out.includes('missing-hmac vm2/private.img.001'), out.join('\n'));
  // the next file starts normally; its own .hmac is missing at the end
  assert.deepEqual(out.slice(3), ['held-final true', 'start vm2/volatile.img', 'chunk vm2/volatile.img.000', 'missing-hmac vm2/volatile.img.000', 'held-final true', 'end-file']);
});

test('formats 2/3: a chunk without its .hmac, and a .hmac without its chunk', () => {
  const { out } = run(3, [['a/x.000', 1], ['a/x.001', 1], ['a/x.001.hmac', 1], ['a/y.000.hmac', 1]]);
  assert.deepEqual(out, [
    'held-final true', 'start a/x', 'chunk a/x.000',
    'missing-hmac a/x.000', 'held-final false', 'chunk a/x.001',
    'hmac a/x.001',
    'stray-hmac a/y (a/y.000.hmac): a/y.000.hmac without its data chunk a/y.000',
    'held-final true', 'end-file',
  ]);
  assert.deepEqual(run(2, [['a/x.000', 1]]).out.slice(-3), ['missing-hmac a/x.000', 'held-final true', 'end-file']);
});

test('unexpected names stop the pass with their code', () => {
  const seq = new MemberSequencer(4);
  const [d] = seq.next('backup-header', 10);
  assert.equal(d?.kind === 'error' && d.error.code, 'ERR_CORRUPT');
  assert.match(d?.kind === 'error' ? d.error.message : '', /unexpected .*backup-header.* after the archive head/);
  for (const [v, name] of [[4, 'vm1/private.img.000'], [3, 'vm1/private.img.000.enc'], [4, '../x.000.enc'], [3, 'vm1/x.0']] as const) {
    const r = new MemberSequencer(v).next(name, 1);
    assert.equal(r.length, 1);
    assert.equal(r[0]?.kind === 'error' && r[0].error.code, 'ERR_UNSAFE_NAME', `format ${v}: ${name}`);
  }
});

test('a truncated stream leaves the last subdir open; the end of the archive closes it', () => {
  const members: [string, number][] = [['vm1/private.img.000.enc', 9], ['vm2/private.img.000.enc', 9]];
  const { out, seq } = run(4, members, true);
  assert.ok(!out.includes('end-file') || out.indexOf('end-file') < out.indexOf('start vm2/private.img'), 'the open file is not ended');
  assert.equal(seq.closed('vm1/'), true);
  assert.equal(seq.closed('vm2/'), false);
  seq.end();
  assert.equal(seq.closed('vm2/'), true);
});

test('a subdir entered again (A, B, A) is open again until another follows or the archive ends', () => {
  const members: [string, number][] = [['vm1/private.img.000.enc', 9], ['vm2/private.img.000.enc', 9], ['vm1/root.img.000.enc', 9]];
  const { seq } = run(4, members, true);
  assert.equal(seq.closed('vm1/'), false, 'vm1 is being read again: a break now may have cut it');
  assert.equal(seq.closed('vm2/'), true);
  seq.end();
  assert.equal(seq.closed('vm1/'), true);
});
