// The default --max-memory of both commands, one rule: 1 GiB for chunks plus one scrypt derivation
// (128·8·2^logN bytes) per thread, at most a quarter of the RAM. Pure: the caller passes the RAM.

const GiB = 1024 ** 3;

/** Default --max-memory for `threads` workers each deriving keys of `logN` (null: no derivations). */
export function defaultMaxMemory(threads: number, logN: number | null, ramBytes: number): number {
  const kdf = logN === null ? 0 : threads * 128 * 8 * 2 ** logN;
  return Math.min(GiB + kdf, Math.floor(ramBytes / 4));
}
