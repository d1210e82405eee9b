export function humanBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${Math.round(v)} B` : `${v.toFixed(1)} ${units[u]}`;
}

/** Visible width, ignoring nothing fancy: our cells are plain text. */
const MAX_WIDTH = 100;

/**
 * Aligned rows that fit 100 columns: columns are padded to the widest cell, and a cell that would
 * push a row past the width is cut with "…" (print the long text below the table instead).
 */
export function table(rows: string[][], maxWidth = MAX_WIDTH): string {
  if (rows.length === 0) return "";
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  const total = () => widths.reduce((a, b) => a + b, 0) + 2 * (widths.length - 1);
  // shrink the widest column until the table fits (never below 8 characters)
  while (total() > maxWidth) {
    const i = widths.indexOf(Math.max(...widths));
    if (widths[i]! <= 8) break;
    widths[i] = Math.max(8, widths[i]! - (total() - maxWidth));
  }
  const fit = (cell: string, w: number) => (cell.length > w ? `${cell.slice(0, w - 1)}…` : cell);
  return `${rows
    .map((row) =>
      row
        .map((cell, i) =>
          i === row.length - 1 ? fit(cell, widths[i]!) : fit(cell, widths[i]!).padEnd(widths[i]!),
        )
        .join("  ")
        .trimEnd(),
    )
    .join("\n")}\n`;
}

export function keyValues(pairs: [string, string | number | null | undefined][]): string {
  const rows = pairs
    .filter(([, v]) => v !== undefined && v !== null && v !== "")
    .map(([k, v]) => [`${k}:`, String(v)]);
  const w = Math.max(0, ...rows.map((r) => r[0]!.length));
  return rows.map(([k, v]) => `${k!.padEnd(w)}  ${v}\n`).join("");
}
