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

/** A column no wider than this is never cut. */
const SHORT = 12;

/** Columns that name a thing (a snapshot id, a context): never cut, whatever the width. */
const WHOLE_COLUMNS = ["ID", "SNAPSHOT", "PARENT", "CONTEXT"];

export interface TableOptions {
  /** default: 100 columns, or the terminal's width when stdout is a wider terminal */
  maxWidth?: number;
  /** headers of further columns never cut (ids in them) */
  whole?: readonly string[];
  /** headers of columns whose cut text is not repeated below (a time the id already says) */
  cuttable?: readonly string[];
}

/** Words onto lines of at most `width` (a longer word, such as a path, keeps its own line whole). */
export function wrapWords(text: string, width: number, indent = "  "): string {
  const lines: string[] = [];
  for (const word of text.split(" ")) {
    const last = lines[lines.length - 1];
    if (last !== undefined && `${last} ${word}`.length <= width) lines[lines.length - 1] = `${last} ${word}`;
    else lines.push(lines.length ? `${indent}${word}` : word);
  }
  return lines.join("\n");
}

/**
 * Aligned rows that fit the width: columns are padded to the widest cell; when a row is too wide
 * the widest column that may shrink is cut with "…". Ids and names (WHOLE_COLUMNS, `whole`) are
 * never cut, and every cut cell (a problem, a list of ids) is printed in full below the table,
 * named by its row's first cell and its column, so nothing is only ever seen cut.
 */
export function table(rows: string[][], options: TableOptions = {}): string {
  if (rows.length === 0) return "";
  const terminal = process.stdout.isTTY ? (process.stdout.columns ?? 0) : 0;
  const maxWidth = options.maxWidth ?? Math.max(MAX_WIDTH, terminal);
  const header = rows[0]!;
  const whole = new Set([...WHOLE_COLUMNS, ...(options.whole ?? [])]);
  const cuttable = new Set(options.cuttable ?? []);
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  const total = () => widths.reduce((a, b) => a + b, 0) + 2 * (widths.length - 1);
  // shrink the widest column that may shrink until the table fits (never below 8 characters)
  while (total() > maxWidth) {
    // short columns (a kind, a state, a size) are read whole; only long texts give way
    const shrinkable = widths.map((w, i) => (whole.has(header[i] ?? "") || w <= SHORT ? -1 : w));
    const widest = Math.max(...shrinkable);
    if (widest < 0) break;
    const i = shrinkable.indexOf(widest);
    widths[i] = Math.max(SHORT, widths[i]! - (total() - maxWidth));
  }
  const below: string[] = [];
  const fit = (cell: string, w: number, r: number, i: number) => {
    if (cell.length <= w) return cell;
    if (r > 0 && !cuttable.has(header[i] ?? ""))
      below.push(wrapWords(`${rows[r]![0]} ${(header[i] ?? "").toLowerCase()}: ${cell}`, maxWidth));
    return `${cell.slice(0, w - 1)}…`;
  };
  const body = rows
    .map((row, r) =>
      row
        .map((cell, i) =>
          i === row.length - 1 ? fit(cell, widths[i]!, r, i) : fit(cell, widths[i]!, r, i).padEnd(widths[i]!),
        )
        .join("  ")
        .trimEnd(),
    )
    .join("\n");
  return `${body}\n${below.length ? `\n${below.join("\n")}\n` : ""}`;
}

export function keyValues(pairs: [string, string | number | null | undefined][]): string {
  const rows = pairs
    .filter(([, v]) => v !== undefined && v !== null && v !== "")
    .map(([k, v]) => [`${k}:`, String(v)]);
  const w = Math.max(0, ...rows.map((r) => r[0]!.length));
  return rows.map(([k, v]) => `${k!.padEnd(w)}  ${v}\n`).join("");
}
