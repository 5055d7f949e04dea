// The small inner archives of a VM (formats 3/4: firewall.xml, the menu lists, notes.txt, …),
// written in-process when they hold what they should, by GNU tar otherwise.
//
// Each was a `tar -x` process of its own: ~10 ms of the main thread to start and reap, serial at
// the end of a VM, for a few hundred bytes (in a batch restore of many small VMs, most of the run).
// An inner archive whose name says neither image nor whole directory may still be anything (a
// directory `vm3/apps`, a link): which one is only known from its headers. So its verified bytes
// are held (up to SMALL_FILE_MAX_INPUT) and, at its end, read twice by the image extractor's parser
// (SingleMemberReader in its strict mode: exactly one plain regular file named exactly as expected,
// no pax/global/long-name headers, no zero block before it, well-formed mode, mtime, uid and gid:
// the shape GNU tar reads the same way, and the one `tar -c` writes for such a file): first only
// checked, nothing written; if that fails for any reason, the held bytes go to GNU tar as before,
// whose verdict is then the file's; if it passes, read again and written (O_EXCL|O_NOFOLLOW in the
// file's own fresh directory, as an image). A larger inner archive goes to tar as soon as it grows
// past the limit. The checks after extraction (checkExtraction, the merge) are unchanged.
import { QvmBackupError } from '../../errors.js';
import { basenameOfBase, isWholeDirBase, subdirOfBase } from '../../format/archive-names.js';
import type { ExtractorOptions, InnerExtractor } from './file-extractor.js';
import type { InnerFilter } from './filters.js';
import { isImageBase, openImageExtractor } from './image-extractor.js';
import { TrialCount } from './size-limit.js';

/** Encoded (decrypted, still compressed) bytes held to try an inner archive in-process. */
export const SMALL_FILE_MAX_INPUT = 1024 * 1024;

/** True for a VM's inner archive that may be one small regular file: neither an image nor a whole
 *  directory, and in a VM's own subdir (not qubes.xml, not the dom0 home: the caller excludes it). */
export function isSmallFileBase(base: string): boolean {
  return subdirOfBase(base) !== '' && basenameOfBase(base) !== '' && !isWholeDirBase(base) && !isImageBase(base);
}

/**
 * `byTar` opens the GNU tar extractor of the same inner archive (only called when needed). The
 * filter must be one decoded in-process (none, gunzip, zstd): a program filter goes to tar directly.
 */
export function openSmallFileExtractor(o: ExtractorOptions, filter: InnerFilter, byTar: () => InnerExtractor): InnerExtractor {
  if (filter.kind === 'program') throw new QvmBackupError('ERR_INTERNAL', `${o.member}: a program filter is not read in-process`);
  const held: Buffer[] = [];
  let heldBytes = 0;
  let tar: InnerExtractor | null = null;
  /** the in-process pass running (aborted with this extractor) */
  let pass: InnerExtractor | null = null;
  let aborted = false;
  const cancelled = (): QvmBackupError => new QvmBackupError('ERR_CANCELLED', `${o.member}: aborted`, { file: o.member });
  const check = (): void => {
    if (aborted || o.signal?.aborted) throw cancelled();
  };

  /** Hand everything held to GNU tar; later calls go to it. */
  const toTar = async (): Promise<InnerExtractor> => {
    const t = (tar = byTar());
    const parts = held.splice(0);
    heldBytes = 0;
    for (const p of parts) await t.write(p);
    return t;
  };
  /** One pass of the image extractor over the held bytes: checking only, or writing the file. The
   *  check counts the decoded bytes against the VM's limit (it runs in every case), the write not
   *  again. */
  const inProcess = async (listOnly: boolean, count?: TrialCount): Promise<void> => {
    const { sizeLimit: _all, ...rest } = o;
    // (the check makes no file, not even a verification's placeholder)
    const x = (pass = openImageExtractor({ ...rest, listOnly, ...(listOnly ? { placeholder: false } : {}), prefault: false, ...(count ? { sizeLimit: count } : {}) }, filter, undefined, true));
    try {
      for (const p of held) await x.write(p);
      await x.finish();
    } catch (e) {
      await x.abort();
      throw e;
    } finally {
      pass = null;
    }
  };

  return {
    async write(data) {
      if (tar !== null) return tar.write(data);
      check();
      // past the limit (a chunk can be 100 MiB): to tar, this write uncopied
      if (heldBytes + data.length > SMALL_FILE_MAX_INPUT) return (await toTar()).write(data);
      // a copy: the caller reuses the chunk slot behind `data` once this resolves
      held.push(Buffer.from(data));
      heldBytes += data.length;
    },
    async finish() {
      if (tar !== null) return tar.finish();
      check();
      const count = o.sizeLimit ? new TrialCount(o.sizeLimit) : undefined;
      const fits = await inProcess(true, count).then(
        () => true,
        (e: unknown) => {
          // a stream that unpacks past the VM's limit goes nowhere; one that goes to tar is
          // counted there instead
          if (o.sizeLimit?.exceeded === true) throw e;
          count?.giveBackOwn();
          return false;
        },
      );
      check();
      // anything the parser does not accept (a directory, a link, another member, a stream it
      // refuses) is GNU tar's to extract or to refuse, as before
      if (!fits) return (await toTar()).finish();
      if (!o.listOnly) await inProcess(false);
      held.length = 0;
    },
    async abort() {
      aborted = true;
      held.length = 0;
      await pass?.abort();
      await tar?.abort();
    },
  };
}
