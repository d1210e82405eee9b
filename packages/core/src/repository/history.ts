import type { FileSystem } from "../fs/types.js";
import { isNotFound } from "../errors.js";
import { contextBackupDir, join } from "../util/paths.js";
import { redactText } from "../policy/secrets.js";

/**
 * The evidence no other record keeps (issue 24 §1): every tick's outcome, not only the last one
 * (tick.json), and every prune deletion with its reason. Append-only JSON Lines in the backup
 * root, `<backup_root>/<context>/history/<stream>.jsonl`, one write per line as si appends its
 * events: a crash leaves at most a torn last line, which readers count and skip.
 */
export type HistoryStream = "ticks" | "prune";

export interface TickHistoryLine {
  schema: "paas-backup/history-tick@1";
  at: string;
  context: string;
  ok: boolean;
  action: "full" | "incremental" | "none";
  reason: string;
  snapshot: { id: string; kind: "full" | "incremental" } | null;
  error: { code: string; message: string } | null;
}

export interface PruneHistoryLine {
  schema: "paas-backup/history-prune@1";
  at: string;
  context: string;
  /** written before the deletion: a report checks the snapshot is really gone */
  id: string;
  kind: "full" | "incremental";
  reason: string;
  /** "local" for the backup root, or the offsite target's URL */
  where: string;
}

export type HistoryLine = TickHistoryLine | PruneHistoryLine;

export function historyPath(backupRoot: string, context: string, stream: HistoryStream): string {
  return join(contextBackupDir(backupRoot, context), "history", `${stream}.jsonl`);
}

export async function appendHistory(
  fs: FileSystem,
  backupRoot: string,
  context: string,
  stream: HistoryStream,
  line: HistoryLine,
): Promise<void> {
  const dir = join(contextBackupDir(backupRoot, context), "history");
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  // An error message can quote state: no secret value goes into the history.
  await fs.appendFile(historyPath(backupRoot, context, stream), redactText(`${JSON.stringify(line)}\n`), {
    mode: 0o600,
  });
}

/** Every whole line of a stream, oldest first; `torn` counts lines that do not parse (a crash mid-append). */
export async function readHistory<T extends HistoryLine>(
  fs: FileSystem,
  backupRoot: string,
  context: string,
  stream: HistoryStream,
): Promise<{ lines: T[]; torn: number }> {
  let text: string;
  try {
    text = Buffer.from(await fs.readFile(historyPath(backupRoot, context, stream))).toString("utf8");
  } catch (err) {
    if (isNotFound(err)) return { lines: [], torn: 0 };
    throw err;
  }
  const lines: T[] = [];
  let torn = 0;
  for (const raw of text.split("\n")) {
    if (raw.trim() === "") continue;
    try {
      const parsed = JSON.parse(raw) as T;
      if (parsed && typeof parsed === "object" && typeof parsed.at === "string") lines.push(parsed);
      else torn++;
    } catch {
      torn++;
    }
  }
  return { lines, torn };
}
