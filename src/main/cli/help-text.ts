// The prose both commands show after their options in --help, kept as data so that the man pages
// (scripts/man.ts) are made from the same text: passphrase rules, environment, exit statuses.
import { EXIT_STATUS_TABLE } from './exit-codes.js';

/** A titled block of help text: a paragraph, a list of terms with their meaning, or both. */
export interface HelpSection {
  title: string;
  text?: string;
  items?: readonly (readonly [string, string])[];
}

/** Greedy word wrap of `text` at `width` columns. */
export function wrapText(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/).filter((w) => w !== '')) {
    if (line !== '' && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else line = line === '' ? word : `${line} ${word}`;
  }
  if (line !== '') lines.push(line);
  return lines;
}

const WIDTH = 80;
const MAX_TERM = 20;

/** The sections as --help prints them after the options. */
export function renderSections(sections: readonly HelpSection[]): string {
  return sections
    .map((s) => {
      const out = ['', `${s.title}:`];
      if (s.text !== undefined) out.push(...wrapText(s.text, WIDTH - 2).map((l) => `  ${l}`));
      if (s.items !== undefined) {
        // terms longer than MAX_TERM (commands in examples) go on a line of their own
        const pad = Math.max(5, ...s.items.map(([t]) => (t.length > MAX_TERM ? 4 : t.length + 2)));
        for (const [term, text] of s.items) {
          if (term.length + 2 > pad) out.push(`  ${term}`);
          const lead = term.length + 2 > pad ? '' : `  ${term.padEnd(pad)}`;
          wrapText(text, WIDTH - 2 - pad).forEach((l, i) => out.push(`${i === 0 && lead !== '' ? lead : ' '.repeat(2 + pad)}${l}`));
        }
      }
      return out.join('\n');
    })
    .join('\n');
}

export const PASSPHRASE_SECTION: HelpSection = {
  title: 'Passphrase',
  text:
    "-p FILE and -p - (stdin) use the first line only (in a file a line ends at LF, CRLF or CR; on stdin at LF) with trailing whitespace removed, as Qubes reads them (readline().rstrip()), so one file gives the same passphrase to this tool and to Qubes' own; leading whitespace is kept and the text must be UTF-8. " +
    '--passphrase-command CMD runs sh -c CMD (stdin closed, stderr shown) and takes the first line of its standard output by the same rules; a non-zero exit or no output is an error. ' +
    'A passphrase that is empty after this, or holds a CR, is refused. Without these options the passphrase is asked on the terminal. It is never read from an environment variable.',
};

/** The environment variables both commands read. */
export function environmentSection(extra: readonly (readonly [string, string])[]): HelpSection {
  return {
    title: 'Environment',
    items: [
      ['QUBES_ROOT', 'the default of --qubes-root (else /var/lib/qubes)'],
      ['HOME', 'the default of --dom0-home'],
      ...extra,
      ['QVMB_HUGEPAGES=0', "the installed launcher leaves GLIBC_TUNABLES alone; by default it adds glibc.malloc.hugetlb=1 (transparent huge pages for large allocations), mmap_threshold=8388608 and trim_threshold=67108864 (fixed: scrypt's memory mapped with huge pages every time), each one the environment does not set (also through MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_), for node and a node child of its own: the programs a run starts get the user's GLIBC_TUNABLES (not when it falls back to the unbundled modules)"],
      ['NODE_COMPILE_CACHE', "node 22.8 and later: the installed command keeps the code node compiled for it and the workers in dist/.compile-cache, beside it (~40 ms of each start), when that directory is the running user's and no one else can read or write it, and unless the environment sets this variable or NODE_DISABLE_COMPILE_CACHE; that directory is not passed on to the programs a run starts"],
      ['NODE_EXTRA_CA_CERTS', 'not read by node here (these commands open no TLS connection; node 20 would read the file at each start): the installed launcher starts node without it, and the programs a run starts get it as it was set (a node child of our own goes without it)'],
      ['QVMB_KDF=openssl|wasm', "derive format 4 keys with node:crypto's scrypt (OpenSSL) only, or with our WebAssembly one wherever it may run (where the memory plan lets a worker keep its memory), instead of each worker's measured faster one (for comparisons; the keys are the same)"],
      ['QVMB_DEBUG=1', 'print the chain of causes of an error'],
    ],
  };
}

export const EXIT_STATUS_SECTION: HelpSection = { title: 'Exit status', items: EXIT_STATUS_TABLE.map(([code, text]) => [String(code), text] as const) };
