// --json of both commands against docs/json.md (issue 10): every line of a backup, a restore, a
// verification, a listing and of failed runs parses and matches the documented field tables, names
// the right operation, and every documented example matches its own table.
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { BACKUP_BIN, RESTORE_BIN, ROOT, node, passFile, sampleIn, tempDir } from '../helpers/cli.js';
import { JsonSchema } from '../helpers/json-schema.js';

const MiB = 1024 * 1024;
const schema = JsonSchema.fromDocs(ROOT);

/** Every stdout line as a checked message; all of them name `operation`. */
function messages(stdout: string, operation: string): Record<string, unknown>[] {
  const lines = stdout.split('\n').filter((l) => l !== '');
  assert.ok(lines.length > 0, 'no JSON on stdout');
  return lines.map((l) => {
    const m = JSON.parse(l) as Record<string, unknown>;
    assert.deepEqual(schema.check(m), [], l);
    assert.equal(m['operation'], operation, l);
    return m;
  });
}

test('docs/json.md: every section has a table and an example that matches it', () => {
  assert.ok(schema.sections.length >= 12);
  for (const s of schema.sections) {
    assert.ok(s.top.has('message_type') && s.top.has('operation'), s.types.join());
    assert.ok(s.examples.length > 0, `no example for ${s.types.join()} (${s.operations.join()})`);
    for (const e of s.examples) assert.deepEqual(schema.check(JSON.parse(e)), [], e);
  }
  // the checker really checks: an undocumented field, a wrong type and a missing field are caught
  const ok = JSON.parse(schema.sections.find((s) => s.types.includes('exit_error'))!.examples[0]!) as Record<string, unknown>;
  assert.equal(schema.check({ ...ok, extra: 1 }).length, 1);
  assert.equal(schema.check({ ...ok, code: '4' }).length, 1);
  const { message: _m, ...missing } = ok;
  assert.equal(schema.check(missing).length, 1);
  assert.equal(schema.check({ ...ok, operation: 'restored' }).length, 1);
});

test('--json of backup, restore, verify, list and failures matches docs/json.md', { timeout: 300_000 }, () => {
  const t = tempDir('qvmb-json-');
  try {
    const { root, home } = sampleIn(t.dir, { bigImageBytes: 16 * MiB, bigDataBytes: 2 * MiB, smallImageBytes: 2 * MiB, smallDataBytes: 64 * 1024 });
    const pw = passFile(t.dir);
    const archive = join(t.dir, 'b.bin');
    const seen = new Set<string>();
    const note = (ms: Record<string, unknown>[]) => ms.forEach((m) => seen.add(String(m['message_type'])));

    // backup: plan, settings, status, file_done, vm_done, warning, summary
    const b = node(BACKUP_BIN, ['--json', '-v', '-y', '--qubes-root', root, '--dom0-home', home, '-p', pw, '--scrypt-logn', '10', '-x', 'nosuchvm', '-x', 'personal', archive]);
    assert.equal(b.status, 0, b.stderr);
    const bm = messages(b.stdout, 'backup');
    note(bm);
    const plan = bm.find((m) => m['message_type'] === 'plan')!;
    assert.deepEqual((plan['vms'] as { name: string }[]).map((v) => v.name).sort(), ['fedora-40', 'sys-net', 'vault', 'work']);
    assert.ok((plan['not_selected'] as string[]).includes('personal'));
    assert.deepEqual(plan['dom0_home'], { user: 'user', path: home, size_bytes: (plan['dom0_home'] as { size_bytes: number }).size_bytes });
    assert.equal(bm.at(-1)!['message_type'], 'summary');
    assert.ok(bm.some((m) => m['message_type'] === 'file_done' && m['file'] === 'vm3/private.img'));

    // verify: results under verified, not restored
    const v = node(RESTORE_BIN, ['--json', '-v', '-y', '--verify-only', '-p', pw, '--qubes-root', join(t.dir, 'none'), archive]);
    assert.equal(v.status, 0, v.stderr);
    const vm = messages(v.stdout, 'verify');
    note(vm);
    const vs = vm.at(-1)!;
    assert.equal(vs['message_type'], 'summary');
    assert.equal(vs['restored'], undefined);
    assert.equal((vs['verified'] as unknown[]).length, 4);
    assert.deepEqual(vs['dom0_home'], { user: 'user' });
    const setting = (ms: Record<string, unknown>[], key: string): unknown => (ms.find((m) => m['message_type'] === 'settings')?.['settings'] as Record<string, unknown> | undefined)?.[key];
    assert.equal(setting(vm, 'prefault_images'), false, 'a verification writes no image');
    assert.equal(setting(vm, 'drop_behind'), false, 'a verification writes no image');

    // restore
    const host = join(t.dir, 'host');
    const hh = join(t.dir, 'hh', 'user');
    mkdirSync(hh, { recursive: true });
    const r = node(RESTORE_BIN, ['--json', '-v', '-y', '-p', pw, '--qubes-root', host, '--dom0-home', hh, archive]);
    assert.equal(r.status, 0, r.stderr);
    const rm = messages(r.stdout, 'restore');
    note(rm);
    const rplan = rm.find((m) => m['message_type'] === 'plan')!;
    assert.ok((rplan['vms'] as { label: string | null }[]).every((x) => typeof x.label === 'string'));
    assert.equal((rm.at(-1)!['restored'] as unknown[]).length, 4);
    assert.equal(setting(rm, 'prefault_images'), true);
    assert.equal(setting(rm, 'drop_behind'), true);

    // list
    const l = node(RESTORE_BIN, ['--json', '--list', '-p', pw, archive]);
    assert.equal(l.status, 0, l.stderr);
    note(messages(l.stdout, 'list'));

    // failures name their operation: a wrong passphrase (restore, verify, list), an unknown VM (backup)
    const bad = passFile(join(t.dir, 'hh'), 'wrong');
    for (const [args, op] of [[[], 'restore'], [['--verify-only'], 'verify'], [['--list'], 'list']] as const) {
      const f = node(RESTORE_BIN, ['--json', '-y', ...args, '-p', bad, '--qubes-root', host, '--dom0-home', hh, archive]);
      assert.equal(f.status, 4, f.stderr);
      const fm = messages(f.stdout, op);
      note(fm);
      assert.equal(fm.at(-1)!['message_type'], 'exit_error');
      assert.equal(fm.at(-1)!['error_code'], 'ERR_HEADER_AUTH');
    }
    const bf = node(BACKUP_BIN, ['--json', '-y', '--qubes-root', root, '--dom0-home', home, '-p', pw, join(t.dir, 'c.bin'), 'nosuchvm']);
    assert.equal(bf.status, 2, bf.stderr);
    note(messages(bf.stdout, 'backup'));

    for (const type of ['status', 'plan', 'settings', 'file_done', 'vm_done', 'warning', 'summary', 'listing', 'exit_error']) assert.ok(seen.has(type), `no ${type} message was checked`);
    // the documentation and these runs agree on the same key for the dom0 home
    assert.ok(readFileSync(join(ROOT, 'docs/json.md'), 'utf8').includes('| dom0_home |'));
  } finally {
    t.cleanup();
  }
});
