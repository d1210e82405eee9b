import { randomBytes } from "node:crypto";
import { Readable } from "node:stream";
import type { FileSystem } from "../fs/types.js";
import { IntegrityError, isNotFound } from "../errors.js";
import { contextBackupDir, join } from "../util/paths.js";
import { redactText } from "../policy/secrets.js";
import { sha256Hex } from "../util/hash.js";
import { backupRootStorage, readSmallObject } from "./repository.js";
import type { ObjectStorage } from "./storage.js";

/**
 * The evidence no other record keeps (issue 24 §1): every tick's outcome, not only the last one
 * (tick.json), and every prune deletion with its reason. Written and read through the
 * repository's storage (issue 19 §2), in one of two layouts by what the driver can do:
 *   - a driver that appends (a folder: the backup root) keeps JSON Lines,
 *     `<context>/history/<stream>.jsonl`, one write per line as si appends its events: a crash
 *     leaves at most a torn last line, which readers count and skip;
 *   - a driver that cannot (an object store: S3, memory) gets one small object per line,
 *     `history/<context>/<stream>/<time>-<writer>-<nonce>.json`, put whole, so lines of several
 *     hosts never collide and are read back in time order by listing.
 * Readers read both, so either layout (and a folder copied into a bucket) reads the same way.
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

/** The appended stream's key (a driver that appends): `<context>/history/<stream>.jsonl`. */
export function historyLinesKey(context: string, stream: HistoryStream): string {
  return `${context}/history/${stream}.jsonl`;
}

/** Where a driver without append keeps a stream, one object per line: `history/<context>/<stream>/`. */
export function historyObjectsPrefix(context: string, stream: HistoryStream): string {
  return `history/${context}/${stream}/`;
}

/**
 * Append one line to a context's history in the repository: appended to the stream's JSON Lines
 * where the driver appends, else put as an object of its own named by its time, the writer (a
 * host, recorded in the line as `host`) and a nonce.
 */
export async function appendHistoryLine<L extends { at: string }>(
  storage: ObjectStorage,
  context: string,
  stream: HistoryStream,
  line: L,
  options: { host?: string } = {},
): Promise<void> {
  const value = options.host === undefined ? line : { ...line, host: options.host };
  // An error message can quote state: no secret value goes into the history.
  const text = redactText(`${JSON.stringify(value)}\n`);
  if (storage.append) {
    await storage.append(historyLinesKey(context, stream), text);
    return;
  }
  const stamp = line.at.replace(/[-:.]/g, "");
  const key = `${historyObjectsPrefix(context, stream)}${stamp}-${options.host ?? "local"}-${randomBytes(3).toString("hex")}.json`;
  const body = Buffer.from(text, "utf8");
  await storage.put(key, Readable.from([body]), { sha256: sha256Hex(body), size: body.length });
}

/** @deprecated use appendHistoryLine(backupRootStorage(fs, backupRoot), context, stream, line) */
export async function appendHistory(
  fs: FileSystem,
  backupRoot: string,
  context: string,
  stream: HistoryStream,
  line: HistoryLine,
): Promise<void> {
  await appendHistoryLine(backupRootStorage(fs, backupRoot), context, stream, line);
}

/** A history can grow for years (a line an hour): read whole, but not without bound. */
const HISTORY_LIMIT = 1024 * 1024 * 1024;

function parseLine<T>(raw: string): T | null {
  try {
    const parsed = JSON.parse(raw) as T & { at?: unknown };
    return parsed && typeof parsed === "object" && typeof parsed.at === "string" ? parsed : null;
  } catch {
    return null;
  }
}

/**
 * Every whole line of a stream in the repository, oldest first: the appended JSON Lines, then the
 * objects of one line each in key (time) order. `torn` counts lines that do not parse (a crash
 * mid-append) and line objects gone or torn.
 */
export async function readHistoryLines<T extends HistoryLine>(
  storage: ObjectStorage,
  context: string,
  stream: HistoryStream,
): Promise<{ lines: T[]; torn: number }> {
  const lines: T[] = [];
  let torn = 0;
  let text = "";
  try {
    text = await readSmallObject(storage, historyLinesKey(context, stream), HISTORY_LIMIT);
  } catch (err) {
    if (!isNotFound(err)) throw err;
  }
  for (const raw of text.split("\n")) {
    if (raw.trim() === "") continue;
    const parsed = parseLine<T>(raw);
    if (parsed) lines.push(parsed);
    else torn++;
  }
  const keys: string[] = [];
  for await (const o of storage.list(historyObjectsPrefix(context, stream), {
    shallow: true,
    keysOnly: true,
  }))
    keys.push(o.key);
  for (const key of keys.sort()) {
    let parsed: T | null = null;
    try {
      parsed = parseLine<T>((await readSmallObject(storage, key, 1024 * 1024)).trim());
    } catch (err) {
      // gone between the listing and the read (or absurdly large): counted, as a torn line is
      if (!(err instanceof IntegrityError)) throw err;
    }
    if (parsed) lines.push(parsed);
    else torn++;
  }
  return { lines, torn };
}

/** @deprecated use readHistoryLines(backupRootStorage(fs, backupRoot), context, stream) */
export async function readHistory<T extends HistoryLine>(
  fs: FileSystem,
  backupRoot: string,
  context: string,
  stream: HistoryStream,
): Promise<{ lines: T[]; torn: number }> {
  return readHistoryLines<T>(backupRootStorage(fs, backupRoot), context, stream);
}
