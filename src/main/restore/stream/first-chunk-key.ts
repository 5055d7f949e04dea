// Format 4: the first data chunk's key, derived while the user is asked to confirm the plan.
//
// Every format 4 chunk has a key of its own, derived by scrypt from its 128-byte header; Qubes'
// writer picks parameters that take up to ~5 s. Without this, nothing was derived while the plan
// was shown, and the data pass started with that wait. Here, once the plan can proceed, the next
// outer member's tar header and its first 128 bytes are read and, when it is the first chunk of a
// file the plan selected, its key is derived in the worker pool while the answer is awaited. A plan
// that cannot proceed starts nothing, so an error never waits for a derivation; a declined plan
// waits for the one running, as a Ctrl-C during the data pass does. Nothing is written or trusted
// because of it: the key is only a key (the chunk is authenticated with it later, as any other),
// the parameters are checked against --max-memory before anything is derived, and a failure here is
// no failure at all: the data pass then derives the key itself and reports what is wrong, where it
// did before. A key the data pass does not take is zeroed.
import type { BackupHeader } from '../../format/backup-header.js';
import type { WorkerPool } from '../../pipeline/worker-pool.js';
import { SCRYPT_OVERHEAD_BYTES } from '../../../workers/scrypt-file.js';
import { ChunkDecoder, type EarlyKey } from './chunk-decoder.js';
import { KdfBudget } from './kdf-budget.js';
import { MemberSequencer } from './member-sequencer.js';
import { subdirOfBase } from '../../format/archive-names.js';
import type { OuterMember, OuterSource } from './outer-source.js';
import { defaultSlotBytes, slotLayout } from './slot-layout.js';

export interface FirstChunkKeyOptions {
  header: BackupHeader;
  passphrase: string;
  pool: WorkerPool;
  /** --max-memory in bytes: the derivation is checked and gated against it as the data pass's are */
  maxMemory: number;
  /** whether the plan restores (or verifies) the subdir (`vm3/`) of a member: only then is its key derived */
  selected(subdir: string): boolean;
  signal?: AbortSignal;
}

/** What was read and is being derived for the first member. */
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
  /** null once taken or released (or when the first member is not a first chunk) */
  #early: Early | null = null;
  /** the first member's scrypt header being read (settles, never rejects) */
  #headRead: Promise<unknown> = Promise.resolve();
  #released = false;

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
   * The key derived ahead for `member` under the chunk name `name` (the data pass's), once. Its
   * scrypt header was read here: the caller must not read it again. Undefined for any other member
   * or name and after release(): the caller reads and derives as it always did.
   */
  take(member: OuterMember, name: string): EarlyKey | undefined {
    const e = this.#early;
    if (e === null || e.member !== member || e.name !== name) return undefined;
    this.#early = null;
    return e.key;
  }

  /** No member will take the key any more (the data pass moved on, or the run ended): it is not
   *  derived if it has not started, and zeroed once it is there. */
  release(): void {
    this.#released = true;
    const e = this.#early;
    this.#early = null;
    void e?.key.then((k) => k?.key.fill(0));
  }

  #start(m: OuterMember, o: FirstChunkKeyOptions): void {
    if (this.#released || (m.typeflag !== undefined && m.typeflag !== '0') || m.size <= SCRYPT_OVERHEAD_BYTES) return;
    // the chunk name the data pass will give it (its passphrase is made of it), from a sequencer of
    // its own: only a first chunk of a file is looked at
    const d = new MemberSequencer(4).next(m.untrustedName, m.size).find((x) => x.kind === 'chunk');
    if (d?.kind !== 'chunk' || d.index !== 0 || !o.selected(subdirOfBase(d.base))) return;
    const head = m.readHead(SCRYPT_OVERHEAD_BYTES);
    this.#headRead = head.catch(() => undefined);
    const kdf = new KdfBudget(o.maxMemory, undefined, o.pool);
    const decoder = new ChunkDecoder({ header: o.header, passphrase: o.passphrase, pool: o.pool, layout: slotLayout(o.header, defaultSlotBytes(o.header)), kdf, ...(o.signal ? { signal: o.signal } : {}) });
    const ref = { vm: '', base: d.base, index: 0, name: d.name };
    // a failed read is the data pass's to report (its next read of the stream fails the same way)
    const key: EarlyKey = head.then((h) => (this.#released ? null : decoder.deriveV4Early(h, ref)), () => null);
    this.#early = { member: m, name: d.name, key };
  }
}
