// How much a VM's inner archives may hold, against the size the backup's qubes.xml states for it
// (`backup-size`; R2/R3: `backup_size`). The restore plan shows that size, and the free-space check
// before the data pass is made against it; an archive whose VM then unpacks to far more — a
// decompression bomb, a sparse map of data runs the VM never had — would fill the disk that check
// cleared. Qubes' restore refuses a backup stream larger than its VMs' stated sizes for the same
// reason (`--ignore-size-limit` lifts it); it counts the chunk files it stores in a temporary
// directory, which this restore does not have. What fills the disk here is the decompressed inner
// archive (the tar stream tar or the image writer turns into files), so that is what is counted, as
// it is handed to them, before it is written.
//
// The stated size is the files' disk usage when they were backed up; their tar stream adds headers,
// sparse maps and padding (a small file: up to 10 KiB of records), and test archives state sizes
// smaller than their data (Qubes' own test fixtures: a dom0 home of "20 KiB" holding 47 KB). So the
// limit leaves room: the stated size, a quarter of it, and 64 MiB (a header per entry: ~130 000 empty
// files or links of a dom0 home, which take no disk blocks). A VM whose qubes.xml states no
// size has no limit.
import { QvmBackupError } from '../../errors.js';
import { sizeLimitFor } from '../../format/limits.js';

export { SIZE_LIMIT_SLACK, sizeLimitFor } from '../../format/limits.js';

/** What an extractor counts its decoded bytes into: a VM's limit, or a trial pass over it. */
export interface SizeCounter {
  /** Count `n` more bytes of `file` before they are handed on; throws ERR_TOO_LARGE past the limit. */
  take(n: number, file: string): void;
  /** Uncount `n` bytes taken by a pass whose bytes are handed over again (and counted) by another. */
  giveBack(n: number): void;
  /** The limit was passed (every later take throws). */
  readonly exceeded: boolean;
}

/** A pass whose bytes may be handed over again by another (the small-file check before tar):
 *  counted into its VM's limit like any other, and uncounted, its own bytes only, by `giveBackOwn`
 *  (other inner archives of the VM may have counted meanwhile). */
export class TrialCount implements SizeCounter {
  #taken = 0;
  readonly #into: SizeCounter;
  constructor(into: SizeCounter) {
    this.#into = into;
  }

  get exceeded(): boolean {
    return this.#into.exceeded;
  }

  take(n: number, file: string): void {
    this.#taken += n;
    this.#into.take(n, file);
  }

  giveBack(n: number): void {
    this.#taken -= n;
    this.#into.giveBack(n);
  }

  /** Uncount everything this pass took. */
  giveBackOwn(): void {
    this.giveBack(this.#taken);
  }
}

/** One VM's allowance, shared by all its inner archives (counted as they are decoded). */
export class SizeLimit implements SizeCounter {
  readonly limit: number;
  #used = 0;
  constructor(
    readonly vm: string,
    readonly declared: number,
  ) {
    this.limit = sizeLimitFor(declared);
  }

  /** Decoded inner-archive bytes handed over so far. */
  get used(): number {
    return this.#used;
  }

  get exceeded(): boolean {
    return this.#used > this.limit;
  }

  giveBack(n: number): void {
    this.#used -= n;
  }

  /** Throws from the call that passes the limit on, at every call. */
  take(n: number, file: string): void {
    this.#used += n;
    if (this.#used <= this.limit) return;
    const who = this.vm === 'dom0' ? 'the dom0 home' : `VM ${this.vm}`;
    throw new QvmBackupError(
      'ERR_TOO_LARGE',
      `${file}: the archive holds more data for ${who} than its qubes.xml states (${this.declared} bytes; stopped at ${this.#used}, over the limit of ${this.limit}: that size, a quarter more and 64 MiB). Nothing of it is installed. If you trust this archive, --ignore-size-limit restores it anyway`,
      { vm: this.vm, file },
    );
  }
}
