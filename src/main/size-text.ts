// Byte counts as text for messages (progress, plans, settings): shared by the CLI and the runs,
// so the runs need nothing of the CLI.

/** Format bytes for humans: 1.2 GiB, 340 MiB, 12 KiB. */
export function formatBytes(n: number): string {
  const abs = Math.abs(n);
  if (abs < 1024) return `${n} B`;
  const u = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let i = 0;
  while (Math.abs(v) >= 1024 && i < u.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v >= 100 ? v.toFixed(0) : v.toFixed(1)} ${u[i]}`;
}

/** Bytes in the largest binary unit that divides them exactly: 64 KiB, 100 MiB, 100000 KiB, 1000 B. */
export function exactSize(n: number): string {
  for (const [unit, div] of [['GiB', 1024 ** 3], ['MiB', 1024 ** 2], ['KiB', 1024]] as const) if (n >= div && n % div === 0) return `${n / div} ${unit}`;
  return `${n} B`;
}
