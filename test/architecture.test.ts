// The layering rules, checked on the sources: worker code never imports the main thread's code;
// the pure layers (format library, qubes.xml model, restore planner) do no I/O and spawn nothing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';

const ROOT = new URL('../../', import.meta.url).pathname;

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...sources(p));
    else if (name.endsWith('.ts')) out.push(p);
  }
  return out;
}

function imports(file: string): string[] {
  return [...readFileSync(file, 'utf8').matchAll(/^\s*(?:import|export)[^'"]*from\s+'([^']+)'/gm)].map((m) => m[1]!);
}

test('src/workers never imports src/main', () => {
  for (const f of sources(join(ROOT, 'src/workers'))) {
    for (const i of imports(f)) assert.ok(!i.includes('/main/'), `${relative(ROOT, f)} imports ${i}`);
  }
});

test('worker code spawns nothing and touches no files (programs run from src/main)', () => {
  const forbidden = /^(node:)?(fs|fs\/promises|child_process|net)$|^(execa|write-file-atomic)$/;
  for (const f of sources(join(ROOT, 'src/workers'))) {
    for (const i of imports(f)) assert.ok(!forbidden.test(i), `${relative(ROOT, f)} imports ${i}`);
  }
});

test('pure layers do no I/O and spawn nothing', () => {
  const forbidden = /^(node:)?(fs|fs\/promises|child_process|net|worker_threads)$|^(piscina|execa|write-file-atomic)$/;
  for (const dir of ['src/main/format', 'src/main/qubes-xml', 'src/main/restore/plan']) {
    for (const f of sources(join(ROOT, dir))) {
      for (const i of imports(f)) assert.ok(!forbidden.test(i), `${relative(ROOT, f)} imports ${i}`);
    }
  }
});
