// The progress model, fed events under a fake clock: percent and ETA of the work finished (not of
// the bytes read), never 100 % before the end, phases ("deriving keys") while no bytes move, and
// an elapsed time that covers the whole run except the time spent waiting for the user.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Writable } from 'node:stream';
import { Progress, type ProgressMode } from '../../../src/main/progress/progress.js';

function harness(mode: ProgressMode, operation: 'backup' | 'restore' | 'verify' = 'restore') {
  let t = 1_000_000;
  const err: string[] = [];
  const out: string[] = [];
  const sink = (into: string[]) => new Writable({ write(c, _e, cb) { into.push(String(c)); cb(); } });
  const p = new Progress(mode, { stderr: sink(err), stdout: sink(out), clock: () => t, operation });
  return { p, err, out, advance: (sec: number) => (t += sec * 1000), json: () => out.join('').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>) };
}

describe('Progress', () => {
  it('counts the work finished, not the bytes read: a restore that read everything is not at 100 %', () => {
    const h = harness('plain', 'verify');
    h.p.start('verify', 1000);
    h.advance(10);
    h.p.update(1000, 300, 'work', 400); // all read, 400 bytes of it authenticated and written
    assert.match(h.p.line(), /^verify: 40\.0% 1000 B\/1000 B of the archive read \(400 B processed\), 300 B verified, 40 B\/s, ETA 0:15 work$/);
    h.advance(5);
    h.p.update(1000, 990, 'dom0', 1000);
    assert.match(h.p.line(), /^verify: 99\.9% .*, finishing dom0$/, 'all processed but not finished: 99.9 %, no ETA 0:00');
    h.p.finish(true, 'Verification succeeded');
    assert.match(h.err.join(''), /Verification succeeded \(1000 B of the archive read, 990 B verified in 0:15, 67 B\/s\)\n$/);
  });

  it('an ETA is rounded up: an unfinished run never says 0:00', () => {
    const h = harness('plain', 'backup');
    h.p.start('backup', 1000);
    h.advance(10);
    h.p.update(995, 100, 'work');
    assert.match(h.p.line(), /^backup: 99\.5% 995 B\/1000 B read, 100 B written, 100 B\/s, ETA 0:01 work$/);
  });

  it('shows the phase while no bytes move, and ends it', () => {
    const h = harness('plain');
    h.p.phase('reading the backup header and qubes.xml, deriving their keys');
    assert.deepEqual(h.err, [], 'a log gets no line before the data phase');
    h.advance(4);
    assert.equal(h.p.line(), 'restore: reading the backup header and qubes.xml, deriving their keys… 0:04');
    h.p.phase(null);
    h.p.start('restore', 2000);
    h.p.phase('deriving keys for the first chunks');
    h.advance(3);
    assert.equal(h.p.line(), 'restore: deriving keys for the first chunks… 0:07');
    h.p.phase(null);
    h.p.update(1000, 500, 'work', 1000);
    assert.match(h.p.line(), /^restore: 50\.0% /);
  });

  it('after stopping() the phase says "stopping" to the end: the run\'s parts neither clear nor replace it', () => {
    const h = harness('plain', 'backup');
    h.p.start('backup', 1000);
    h.p.phase('deriving the key of the backup header');
    h.p.stopping();
    assert.match(h.p.line(), /^backup: stopping… /);
    h.p.phase(null); // the header's derivation ended
    h.p.phase('deriving keys for the first chunks');
    assert.match(h.p.line(), /^backup: stopping… /);
  });

  it('a phase on a terminal is drawn at once and cleared before other output', () => {
    const h = harness('tty');
    h.p.phase('deriving keys for the first chunks');
    assert.equal(h.err.join(''), '\r\x1b[Krestore: deriving keys for the first chunks… 0:00');
    h.p.phase(null);
    assert.equal(h.err.at(-1), '\r\x1b[K');
  });

  it('the elapsed time covers the work before the data phase but not the wait for the user', () => {
    const h = harness('plain', 'backup');
    h.advance(2); // plan, disk usage
    h.p.waitingForUser(true);
    h.advance(60); // the user reads the summary and types the passphrase
    h.p.waitingForUser(false);
    h.advance(3); // the header's key
    h.p.start('backup', 100);
    h.advance(5);
    h.p.update(100, 50);
    h.p.finish(true, 'Backup finished');
    assert.match(h.err.join(''), /Backup finished \(100 B read, 50 B written in 0:10, 20 B\/s\)\n$/);
  });

  it('JSON status lines carry the phase and the operation from the start; the summary is 100 %', () => {
    const h = harness('json', 'verify');
    h.p.phase('reading the backup header and qubes.xml, deriving their keys');
    h.advance(2);
    h.p.phase(null);
    h.p.start('verify', 1000);
    h.advance(2);
    h.p.update(1000, 10, 'work', 100);
    h.p.finish(true, 'ok');
    const lines = h.json();
    assert.deepEqual(lines[0], { message_type: 'status', operation: 'verify', phase: 'reading the backup header and qubes.xml, deriving their keys', percent_done: 0, bytes_done: 0, total_bytes: 0, bytes_read: 0, bytes_written: 0, rate_bytes_per_second: 0, seconds_elapsed: 0, seconds_remaining: null, current_vm: null });
    const status = lines.filter((l) => l['message_type'] === 'status');
    assert.ok(status.every((l) => (l['percent_done'] as number) < 1), JSON.stringify(status));
    const last = status.at(-1)!;
    assert.equal(last['bytes_done'], 100);
    assert.equal(last['bytes_read'], 1000);
    assert.equal(last['seconds_elapsed'], 4);
    assert.deepEqual({ ...lines.at(-1), seconds_elapsed: 0 }, { message_type: 'summary', operation: 'verify', ok: true, message: 'ok', bytes_done: 1000, bytes_written: 10, seconds_elapsed: 0 });
  });

  it('quiet prints nothing, not even phases', () => {
    const h = harness('quiet');
    h.p.phase('deriving keys');
    h.p.start('restore', 10);
    h.p.update(10, 10, 'x', 10);
    h.p.finish(true, 'done');
    assert.deepEqual(h.err, []);
    assert.deepEqual(h.out, []);
  });
});
