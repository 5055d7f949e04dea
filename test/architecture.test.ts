// The layering rules, checked on the sources: worker code never imports the main thread's code and
// does no I/O; the pure layers (format library, qubes.xml model, restore planner) do no I/O and spawn
// nothing; no module imports itself through others (type-only imports included: a cycle of types
// still ties the files together). Imports are read by TypeScript's own scanner, so multi-line,
// type-only, side-effect and dynamic imports all count.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import ts from 'typescript';

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

/** Every module specifier `file` imports or re-exports (static, type-only or dynamic). */
function imports(file: string): string[] {
  return ts.preProcessFile(readFileSync(file, 'utf8'), true, true).importedFiles.map((f) => f.fileName);
}

/** The source file a relative specifier names (`./x.js` -> `./x.ts`), or null for a package. */
function target(from: string, spec: string): string | null {
  if (!spec.startsWith('.')) return null;
  return resolve(dirname(from), spec.replace(/\.js$/, '.ts'));
}

const rel = (f: string): string => relative(ROOT, f);

test('the import scanner sees type-only, multi-line and dynamic imports (the checks below rely on it)', () => {
  const f = join(ROOT, 'src/main/restore/stream/types.ts');
  assert.ok(imports(f).length > 0);
  const probe = "import type {\n  A,\n} from './a.js';\nexport { b } from './b.js';\nconst c = await import('./c.js');\n";
  assert.deepEqual(ts.preProcessFile(probe, true, true).importedFiles.map((i) => i.fileName), ['./a.js', './b.js', './c.js']);
});

test('src/workers never imports src/main', () => {
  const main = join(ROOT, 'src/main') + '/';
  for (const f of sources(join(ROOT, 'src/workers'))) {
    for (const i of imports(f)) {
      const t = target(f, i);
      assert.ok(t === null ? !i.includes('/main/') : !t.startsWith(main), `${rel(f)} imports ${i}`);
    }
  }
});

test('worker code spawns nothing, touches no files or sockets and searches no PATH (programs run from src/main)', () => {
  const forbidden = /^(node:)?(fs|fs\/promises|child_process|net|dgram|http|https|http2|tls|readline)$|^(execa|write-file-atomic|piscina)$/;
  for (const f of sources(join(ROOT, 'src/workers'))) {
    for (const i of imports(f)) {
      // pool-entry is piscina's entry point: it reads workerData, and nothing else of the runtime
      if (f.endsWith('/pool-entry.ts') && i === 'node:worker_threads') continue;
      assert.ok(!forbidden.test(i) && i !== 'node:worker_threads', `${rel(f)} imports ${i}`);
    }
    assert.doesNotMatch(readFileSync(f, 'utf8'), /process\.env|\bPATH\b/, `${rel(f)} reads the environment`);
  }
});

test('pure layers do no I/O and spawn nothing', () => {
  const forbidden = /^(node:)?(fs|fs\/promises|child_process|net|worker_threads)$|^(piscina|execa|write-file-atomic)$/;
  for (const dir of ['src/main/format', 'src/main/qubes-xml', 'src/main/restore/plan']) {
    for (const f of sources(join(ROOT, dir))) {
      for (const i of imports(f)) assert.ok(!forbidden.test(i), `${rel(f)} imports ${i}`);
    }
  }
});

test('the runs (backup, restore, pipeline, …) import nothing of the CLI: it parses and calls them (the library, src/main/index.ts, is a front end beside it)', () => {
  const cli = join(ROOT, 'src/main/cli') + '/';
  const library = join(ROOT, 'src/main/index.ts');
  for (const f of sources(join(ROOT, 'src/main'))) {
    if (f.startsWith(cli) || f === library) continue;
    for (const i of imports(f)) {
      const t = target(f, i);
      assert.ok(t === null || !t.startsWith(cli), `${rel(f)} imports ${i}`);
    }
  }
});

test('the library imports no command-line parser and nothing that prints: cli/ gives it only tables and checks', () => {
  const allowed = new Set(['exit-codes.ts', 'dom0-user.ts', 'passphrase.ts']);
  const f = join(ROOT, 'src/main/index.ts');
  for (const i of imports(f)) {
    assert.ok(i !== 'commander', 'src/main/index.ts imports commander');
    const t = target(f, i);
    if (t !== null && t.startsWith(join(ROOT, 'src/main/cli') + '/')) assert.ok(allowed.has(t.slice(t.lastIndexOf('/') + 1)), `src/main/index.ts imports ${i}`);
  }
});

test('only src/main/io/spawn.ts imports execa: every process is started the same way', () => {
  const spawn = join(ROOT, 'src/main/io/spawn.ts');
  const importers = sources(join(ROOT, 'src')).filter((f) => imports(f).some((i) => i === 'execa' || i.startsWith('execa/')));
  assert.deepEqual(importers.map(rel), [rel(spawn)]);
});

/** The first import cycle among `files`, as a path `a -> b -> ... -> a`, or null. */
function findCycle(graph: ReadonlyMap<string, readonly string[]>): string[] | null {
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const visit = (n: string): string[] | null => {
    state.set(n, 'open');
    stack.push(n);
    for (const m of graph.get(n) ?? []) {
      if (state.get(m) === 'open') return [...stack.slice(stack.indexOf(m)), m];
      if (state.get(m) === undefined) {
        const c = visit(m);
        if (c) return c;
      }
    }
    stack.pop();
    state.set(n, 'done');
    return null;
  };
  for (const n of [...graph.keys()].sort()) {
    if (state.get(n) === undefined) {
      const c = visit(n);
      if (c) return c;
    }
  }
  return null;
}

test('findCycle finds a type-only style cycle and accepts a tree', () => {
  assert.deepEqual(findCycle(new Map([['a', ['b']], ['b', ['c']], ['c', ['a']]])), ['a', 'b', 'c', 'a']);
  assert.equal(findCycle(new Map([['a', ['b', 'c']], ['b', ['c']], ['c', []]])), null);
});

test('no import cycles in src and scripts, type-only imports included', () => {
  const graph = new Map<string, string[]>();
  for (const f of [...sources(join(ROOT, 'src')), ...sources(join(ROOT, 'scripts'))]) {
    const deps = imports(f).map((i) => target(f, i)).filter((t): t is string => t !== null);
    for (const t of deps) assert.ok(statSync(t, { throwIfNoEntry: false })?.isFile(), `${rel(f)} imports a missing ${rel(t)}`);
    graph.set(f, deps);
  }
  const cycle = findCycle(graph);
  assert.equal(cycle, null, `import cycle: ${cycle?.map(rel).join(' -> ')}`);
});
