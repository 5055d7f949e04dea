// The order rules of the members after the archive head, apart from what is done with them: each
// file's chunks `.000`, `.001`, … in a row; in formats 2/3 each chunk followed by its `.hmac`; a
// chunk is its file's last when the next member is not the file's next chunk (format 3: or that
// chunk is empty). Pure: it is fed the members' names and sizes in archive order and answers what
// each means; the data pass (restore-data.ts) reads, skips, decodes and fails VMs accordingly.
import { QvmBackupError, isQvmBackupError } from '../../errors.js';
import type { FormatVersion } from '../../format/backup-header.js';
import { parseMemberName, subdirOfBase } from '../../format/archive-names.js';
import { shownName } from './outer-source.js';

/** What one member (or the end of the archive) means, in the order the data pass acts on it. */
export type Decision =
  /** the chunk `name` was not followed by its `.hmac`: the file fails */
  | { kind: 'missing-hmac'; base: string; name: string }
  /** the chunk held back until its finality was known (formats 2/3) can go now */
  | { kind: 'held-final'; final: boolean }
  /** the current file's chunks are out of order or repeated: it fails */
  | { kind: 'fail-current'; message: string }
  /** the current file has no more chunks */
  | { kind: 'end-file' }
  /** a chunk that belongs to no file (no `.000` before it, or a second `.000`): its base fails and
   *  the member is skipped (its `.hmac` is still expected, and skipped) */
  | { kind: 'orphan'; base: string; name: string; message: string }
  /** a new file starts with this chunk (`.000`) */
  | { kind: 'start-file'; base: string }
  /** the next chunk of the current file (after start-file for `.000`): read it, or skip it */
  | { kind: 'chunk'; base: string; index: number; name: string }
  /** the `.hmac` the last chunk waits for */
  | { kind: 'hmac'; base: string; index: number; name: string }
  /** a `.hmac` that follows no chunk of that name: its base fails and the member is skipped */
  | { kind: 'stray-hmac'; base: string; name: string; message: string }
  /** the archive is broken here: the pass stops (ERR_CORRUPT, ERR_UNSAFE_NAME) */
  | { kind: 'error'; error: QvmBackupError };

const pad3 = (n: number): string => String(n).padStart(3, '0');

export class MemberSequencer {
  readonly #version: FormatVersion;
  #current: { base: string; nextIndex: number } | null = null;
  #expectHmac: { base: string; index: number } | null = null;
  readonly #seenBases = new Set<string>();
  #lastSubdir: string | null = null;
  readonly #closed = new Set<string>();

  constructor(version: FormatVersion) {
    this.#version = version;
  }

  /** The member named `untrustedName` of `size` bytes comes next. */
  next(untrustedName: string, size: number): Decision[] {
    let p;
    try {
      p = parseMemberName(untrustedName, this.#version);
    } catch (e) {
      return [{ kind: 'error', error: isQvmBackupError(e) ? e : new QvmBackupError('ERR_CORRUPT', `archive member ${shownName(untrustedName)}: ${String(e)}`) }];
    }
    if (p.kind !== 'chunk') return [{ kind: 'error', error: new QvmBackupError('ERR_CORRUPT', `unexpected ${shownName(untrustedName)} after the archive head`) }];
    const name = `${p.base}.${pad3(p.index)}`;
    this.#enter(subdirOfBase(p.base));
    const out: Decision[] = [];
    if (p.hmac) {
      if (this.#expectHmac?.base === p.base && this.#expectHmac.index === p.index) {
        this.#expectHmac = null;
        out.push({ kind: 'hmac', base: p.base, index: p.index, name });
      } else {
        this.#missingHmac(out);
        out.push({ kind: 'stray-hmac', base: p.base, name: `${name}.hmac`, message: `${name}.hmac without its data chunk ${name}` });
      }
      return out;
    }
    this.#missingHmac(out);
    const cur = this.#current;
    const cont = cur !== null && cur.base === p.base && p.index === cur.nextIndex;
    // a format 3 file may end in an empty chunk: a continuation of size 0 is the end
    out.push({ kind: 'held-final', final: !(cont && (size > 0 || this.#version === 2)) });
    if (!cont) {
      if (cur !== null && cur.base === p.base) {
        const want = `${cur.base}.${pad3(cur.nextIndex)}`;
        out.push({ kind: 'fail-current', message: p.index < cur.nextIndex ? `duplicate chunk ${name} (expected ${want})` : `chunk ${name} out of order: ${want} is missing` });
      }
      this.#endCurrent(out);
      if (p.index !== 0 || this.#seenBases.has(p.base)) {
        out.push({ kind: 'orphan', base: p.base, name, message: p.index === 0 ? `duplicate chunk ${name}` : `chunk ${name} without the preceding chunks of ${p.base}` });
        if (this.#version !== 4) this.#expectHmac = { base: p.base, index: p.index };
        return out;
      }
      this.#seenBases.add(p.base);
      this.#current = { base: p.base, nextIndex: 0 };
      out.push({ kind: 'start-file', base: p.base });
    }
    this.#current!.nextIndex = p.index + 1;
    if (this.#version !== 4) this.#expectHmac = { base: p.base, index: p.index };
    out.push({ kind: 'chunk', base: p.base, index: p.index, name });
    return out;
  }

  /** The archive ended (cleanly: its end-of-archive blocks were read). */
  end(): Decision[] {
    this.#enter(null);
    const out: Decision[] = [];
    this.#missingHmac(out);
    out.push({ kind: 'held-final', final: true });
    this.#endCurrent(out);
    return out;
  }

  /** Whether a member of another subdir (or the archive's end) followed `subdir`'s members: only
   *  then is it known that none of them was cut off by a broken archive. */
  closed(subdir: string): boolean {
    return this.#closed.has(subdir);
  }

  #enter(subdir: string | null): void {
    if (this.#lastSubdir !== null && subdir !== this.#lastSubdir) this.#closed.add(this.#lastSubdir);
    // a subdir entered again (A, B, A) is open again: a break now may have cut it
    if (subdir !== null) this.#closed.delete(subdir);
    this.#lastSubdir = subdir;
  }

  #missingHmac(out: Decision[]): void {
    const e = this.#expectHmac;
    if (e === null) return;
    out.push({ kind: 'missing-hmac', base: e.base, name: `${e.base}.${pad3(e.index)}` });
    this.#expectHmac = null;
  }

  #endCurrent(out: Decision[]): void {
    if (this.#current !== null) out.push({ kind: 'end-file' });
    this.#current = null;
  }
}
