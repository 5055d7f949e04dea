// "Did you mean …?" for mistyped VM names: the candidates closest by edit distance (insert, delete,
// substitute, swap two neighbours), compared case-insensitively, within a distance that grows with
// the name's length so that short names only match near-identical ones.

/** Optimal string alignment distance between `a` and `b` (Damerau–Levenshtein without re-edits). */
export function editDistance(a: string, b: string): number {
  const m = a.length;
  const n = b.length;
  let prev2: number[] = [];
  let prev = Array.from({ length: n + 1 }, (_, j) => j);
  for (let i = 1; i <= m; i++) {
    const cur = [i];
    for (let j = 1; j <= n; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let d = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d = Math.min(d, prev2[j - 2]! + 1);
      cur.push(d);
    }
    prev2 = prev;
    prev = cur;
  }
  return prev[n]!;
}

/** Up to `max` names of `candidates` close to `name`, closest first (ties in candidate order). */
export function similarNames(name: string, candidates: Iterable<string>, max = 3): string[] {
  const wanted = name.toLowerCase();
  // one edit for names up to 5 characters, then one more per 4 characters, at most 3
  const limit = Math.min(3, 1 + Math.floor(Math.max(0, wanted.length - 2) / 4));
  const scored: { c: string; d: number; i: number }[] = [];
  let i = 0;
  for (const c of new Set(candidates)) {
    if (c === name) continue;
    const d = editDistance(wanted, c.toLowerCase());
    if (d <= limit) scored.push({ c, d, i });
    i++;
  }
  scored.sort((x, y) => x.d - y.d || x.i - y.i);
  return scored.slice(0, max).map((s) => s.c);
}

/** ` (did you mean work?)`, ` (did you mean work or vault?)`, or '' when nothing is close. */
export function didYouMean(name: string, candidates: Iterable<string>): string {
  const s = similarNames(name, candidates);
  if (s.length === 0) return '';
  const last = s.pop()!;
  return ` (did you mean ${s.length > 0 ? `${s.join(', ')} or ${last}` : last}?)`;
}
