// The one writer of BENCHMARKS.md for the bench scripts: each owns a section (a "## " heading) and
// replaces it with its new text, or appends it when the file has none yet.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const BENCHMARKS_MD = fileURLToPath(new URL('../../BENCHMARKS.md', import.meta.url));

/** Replace the section starting with `heading` (up to the next "## ") by `text`, or append it. */
export function writeSection(heading: string, text: string, file = BENCHMARKS_MD): void {
  const old = existsSync(file) ? readFileSync(file, 'utf8') : '# Benchmarks\n';
  const body = text.endsWith('\n') ? text : `${text}\n`;
  const start = old.indexOf(heading);
  let updated: string;
  if (start < 0) updated = `${old.trimEnd()}\n\n${body}`;
  else {
    const end = old.indexOf('\n## ', start + heading.length);
    updated = old.slice(0, start) + body + (end < 0 ? '' : `\n${old.slice(end + 1)}`);
  }
  writeFileSync(file, updated);
  console.log(`written to ${file}`);
}

/** What an option's value must be: a positive integer, or a comma list of them. */
export type BenchValue = 'count' | 'counts';

/**
 * Check a bench script's options before anything runs: `--help` prints `usage` and exits 0; an
 * option the script does not know, one given twice, or a value that is missing or not what the
 * option takes stops it with status 2 (an option silently ignored, or a NaN, would run — and
 * record — a different bench than asked).
 */
export function checkBenchArgs(args: readonly string[], usage: string, flags: readonly string[], valued: Readonly<Record<string, BenchValue>> = {}): void {
  if (args.includes('--help') || args.includes('-h')) {
    console.log(usage);
    process.exit(0);
  }
  const seen = new Set<string>();
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    let problem: string | undefined;
    const kind = Object.hasOwn(valued, a) ? valued[a] : undefined;
    if (seen.has(a)) problem = `${a} is given twice`;
    else if (kind !== undefined) {
      const v = args[++i];
      const ok = v !== undefined && (kind === 'count' ? /^[1-9]\d{0,6}$/ : /^[1-9]\d{0,6}(,[1-9]\d{0,6})*$/).test(v);
      if (!ok) problem = `${a} needs ${kind === 'count' ? 'a positive integer' : 'a comma list of positive integers'}${v === undefined ? '' : `, got '${v}'`}`;
    } else if (!flags.includes(a)) problem = `unknown option ${a}`;
    seen.add(a);
    if (problem !== undefined) {
      console.error(`${problem}\n${usage}`);
      process.exit(2);
    }
  }
}
