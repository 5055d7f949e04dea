// Format 4: the first data chunk's key, derived while the user reads the restore plan.
//
// Every format 4 chunk has a key of its own, derived by scrypt from the chunk's 128-byte header;
// Qubes' writer picks parameters that take up to ~5 s, ~1.5 s at ours. Without this, nothing was
// derived while the plan waited for an answer, and the data pass began with that wait. Here, once
// the plan can proceed and before the question is asked, the next outer member's tar header and
// its first 128 bytes are read; when it is the first chunk of a file the plan selected, its key is
// derived while the answer is awaited, and the data pass takes it instead of deriving it.
//
// - It can be given up at any moment. A derivation in a worker or on libuv's threads runs to its
//   end (node waits for it even to exit), so this one runs in a child process of our own node
//   (io/scrypt-child.ts), killed at once when the answer is no, at Ctrl-C, or when the run fails.
// - It is counted in the data pass's memory. It runs under the data pass's own key-derivation
//   budget (restore-data.ts' dataPassMemory, made before the plan for this), so the derivations the
//   data pass starts while it still runs wait for their share as they would for any other.
// - It is a key, nothing more. The parameters are checked against --max-memory first, and the chunk
//   is authenticated with the key later, as any other; a key the data pass does not take is zeroed.
//   A broken, unreadable or over-limit first member starts nothing and is reported by the data pass,
//   where it was reported before.
import type { BackupHeader } from '../../format/backup-header.js';
import { subdirOfBase } from '../../format/archive-names.js';
import { deriveInChild, type ChildDerivation } from '../../io/scrypt-child.js';
import type { RunStats } from '../../stats/run-stats.js';
import { SCRYPT_OVERHEAD_BYTES, readScryptHeader } from '../../../workers/scrypt-file.js';
import { v4ChunkPassphrase, wipeEarly, type EarlyKey } from './chunk-decoder.js';
import type { KdfBudget } from './kdf-budget.js';
import { MemberSequencer } from './member-sequencer.js';
import type { OuterMember, OuterSource } from './outer-source.js';

/** What a child node process holds beside the derivation's own memory (counted with it). */
export const CHILD_OVERHEAD_BYTES = 64 * 1024 * 1024;
/** Longest the derivation may run (the slowest one --max-memory allows takes ~100 s here). */
const BOUND_MS = 10 * 60_000;
/** The profile's name for it. */
export const FIRST_KEY_STAGE = 'first chunk key (a child process, while the plan is confirmed)';

export interface FirstChunkKeyOptions {
  header: BackupHeader;
  passphrase: string;
  /** the data pass's key-derivation budget: its limits are checked, its memory holds this one */
  kdf: KdfBudget;
  /** whether the plan restores (or verifies) the subdir (`vm3/`) of a member: only then is its key derived */
  selected(subdir: string): boolean;
  signal?: AbortSignal;
  stats?: RunStats;
  /** bound of the derivation (tests) */
  boundMs?: number;
}

/** The first member's key, being derived. */
interface Early {
  member: OuterMember;
  name: string;
  key: EarlyKey;
}

/** The archive after its head, with the first member looked at and its key on the way. */
export class FirstChunkKey implements OuterSource {
  readonly #reader: OuterSource;
  /** the first member (or the reader's failure, kept for the data pass to meet where it did) */
  readonly #first: Promise<OuterMember | null>;
  #handedOut = false;
  /** null once taken or released, or when the first member is not a selected first chunk */
  #early: Early | null = null;
  /** the member whose scrypt header was read here (its data pass must not read it again) */
  #headOf: OuterMember | null = null;
  /** the first member's scrypt header being read (settles, never rejects) */
  #headRead: Promise<unknown> = Promise.resolve();
  #child: ChildDerivation | null = null;
  #released = false;
  #taken = false;
  #abandoned = false;

  /** Start reading the first member and deriving its key. */
  constructor(reader: OuterSource, o: FirstChunkKeyOptions) {
    this.#reader = reader;
    this.#first = reader.next();
    this.#first.catch(() => undefined); // met by the data pass (or nobody, when the run stops before)
    this.#first.then((m) => m !== null && this.#start(m, o)).catch(() => undefined);
  }

  get bytesRead(): number {
    return this.#reader.bytesRead;
  }

  get startBlock(): OuterSource['startBlock'] {
    return this.#reader.startBlock;
  }

  /** The child process deriving, while it runs (tests). */
  get childPid(): number | undefined {
    return this.#child?.pid;
  }

  /** Resolves once the derivation ahead ended (at once when none started): whether a key is there
   *  to take (tests). */
  async derived(): Promise<boolean> {
    await this.#first.catch(() => null);
    await this.#headRead;
    const e = this.#early;
    return e !== null && (await e.key) !== null;
  }

  /** The first member once its scrypt header was read here (no two reads of the stream at once),
   *  then the reader's. */
  next(): Promise<OuterMember | null> {
    if (this.#handedOut) return this.#reader.next();
    this.#handedOut = true;
    return this.#first.then(async (m) => {
      await this.#headRead;
      return m;
    });
  }

  /**
   * The key derived ahead for `member` under the chunk name `name` (the data pass's), once; null
   * from the promise when there is none after all. Undefined when this member's scrypt header was
   * not read here: the caller reads and derives as it always did.
   */
  take(member: OuterMember, name: string): EarlyKey | undefined {
    if (member !== this.#headOf) return undefined;
    this.#headOf = null;
    const e = this.#early;
    this.#early = null;
    if (e === null || e.name !== name) {
      this.#child?.kill();
      wipeEarly(e?.key);
      return Promise.resolve(null); // its header is read: decodeV4 derives from the whole chunk
    }
    this.#taken = true; // the data pass waits for it now: release() leaves it running
    return e.key;
  }

  /** No member will take the key any more (the data pass moved on, the plan was declined): a
   *  derivation not started never starts, one not taken is killed, a key there is zeroed. A key
   *  taken is the data pass's: its derivation goes on (abandon() stops it). */
  release(): void {
    this.#released = true;
    if (!this.#taken) this.#child?.kill();
    const e = this.#early;
    this.#early = null;
    wipeEarly(e?.key);
  }

  /** The run stops (it failed, was cancelled or ended): as release(), and a derivation still
   *  running is killed even when its key was taken (whoever waits for it gets null). */
  abandon(): void {
    this.#abandoned = true;
    this.release();
    this.#child?.kill();
  }

  #start(m: OuterMember, o: FirstChunkKeyOptions): void {
    if (this.#released || (m.typeflag !== undefined && m.typeflag !== '0') || m.size <= SCRYPT_OVERHEAD_BYTES) return;
    // the chunk name the data pass will give it (its passphrase is made of it), from a sequencer of
    // its own: only a first chunk of a file is looked at
    const d = new MemberSequencer(4).next(m.untrustedName, m.size).find((x) => x.kind === 'chunk');
    if (d?.kind !== 'chunk' || d.index !== 0 || !o.selected(subdirOfBase(d.base))) return;
    this.#headOf = m;
    const head = m.readHead(SCRYPT_OVERHEAD_BYTES);
    this.#headRead = head.catch(() => undefined);
    // a failed read is the data pass's to report (its next read of the stream fails the same way)
    const key: EarlyKey = head.then((h) => this.#derive(h, d.name, o), () => null);
    this.#early = { member: m, name: d.name, key };
  }

  /** Whether nobody will use the key: released before it was taken, or the run stopped. */
  #gone(): boolean {
    return this.#abandoned || (this.#released && !this.#taken);
  }

  /** Derive the key of scrypt file head `h` (chunk `name`) in a child; null when it cannot be. */
  async #derive(h: Uint8Array, name: string, o: FirstChunkKeyOptions): Promise<Awaited<EarlyKey>> {
    const parsed = readScryptHeader(h);
    if (this.#gone() || 'ok' in parsed) return null;
    let bytes: number;
    try {
      bytes = o.kdf.check(h, name, {}).bytes; // over the limits: the data pass says so, as before
    } catch {
      return null;
    }
    // the child's own memory is counted too: where both do not fit in one derivation's room, the
    // data pass derives it in a worker instead
    if (bytes + CHILD_OVERHEAD_BYTES > o.kdf.limits.maxKdfBytes) return null;
    const q = { logN: parsed.logN, r: parsed.r, p: parsed.p };
    const passphrase = Buffer.from(v4ChunkPassphrase(o.header.backupId, name, o.passphrase), 'utf8');
    try {
      // its memory is held in the data pass's budget until the child is gone
      return await o.kdf.run({ bytes: bytes + CHILD_OVERHEAD_BYTES, inModule: false }, async () => {
        if (this.#gone()) return null;
        const t0 = performance.now();
        const child = (this.#child = deriveInChild(passphrase, parsed.salt, q, o.boundMs ?? BOUND_MS));
        const key = await child.key;
        await child.exited;
        o.stats?.add(FIRST_KEY_STAGE, performance.now() - t0);
        if (key === null) return null;
        if (this.#gone()) {
          key.fill(0);
          return null;
        }
        return { key, salt: parsed.salt, ...q };
      }, o.signal);
    } catch {
      return null; // stopped while waiting for its memory
    } finally {
      passphrase.fill(0);
    }
  }
}
