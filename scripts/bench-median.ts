// The median run of a bench's rounds, importable without running a bench. An odd number of rounds
// has a middle run; an even number has two: the wall time is then the mean of the two (taking the
// faster one flattered every even --repeat), and the other figures (CPU, RSS, the serial stage) stay
// those of one real run, the slower of the two (both are equally near that mean; never the
// flattering pick). min and max are the range of the wall times.

/** The median of `runs` (at least one) by wall time, with the range of their wall times. */
export function medianRun<T extends { wall: number }>(runs: readonly T[]): T & { min: number; max: number } {
  if (runs.length === 0) throw new Error('no runs to take the median of');
  const rs = [...runs].sort((a, b) => a.wall - b.wall);
  const range = { min: rs[0]!.wall, max: rs[rs.length - 1]!.wall };
  const upper = rs[Math.floor(rs.length / 2)]!;
  if (rs.length % 2 === 1) return { ...upper, ...range };
  const lower = rs[rs.length / 2 - 1]!;
  return { ...upper, wall: (lower.wall + upper.wall) / 2, ...range };
}
