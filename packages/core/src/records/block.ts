import type { FileSystem } from "../fs/types.js";
import { isNotFound } from "../errors.js";
import { contextDir, join } from "../util/paths.js";
import { writeFileAtomic } from "../util/atomic.js";

/**
 * Policy §8.2: when post-restore validation fails, deploy and secret-mutating commands are
 * blocked. The marker lives in the context itself, so any si tool that opens the context sees it:
 *   <state_root>/contexts/<context>/paas-backup.blocked.json
 * si tooling calls readBlock() and refuses while it returns a record.
 */
export const BLOCK_FILE = "paas-backup.blocked.json";

export interface BlockRecord {
  schema: "paas-backup/block@1";
  context: string;
  ticket: string;
  blockedAt: string;
  reason: string;
  snapshot: { id: string; sha256: string } | null;
  failingChecks: { name: string; ok: boolean; detail: string }[];
  blocks: string[];
  /** the external doctor that blocked (or must pass before unblock), e.g. "si paas doctor --json" */
  externalDoctor?: { command: string } | null;
  /** true while a restore has swapped this context in and its validation has not finished */
  pendingValidation?: boolean;
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);
const isString = (v: unknown): v is string => typeof v === "string";

/**
 * A parsed marker as a block@1 record, or null where it is not one. Hand-written rather than a
 * zod schema: every command that touches a context reads the marker (recovery first), and zod
 * was 95 of the 170 modules a snapshot loaded, about 50 ms of its start. Unknown keys are dropped,
 * as the zod schema did; packages/core/test/block-record.test.ts holds the two to the same verdict.
 */
export function checkBlockRecord(raw: unknown): BlockRecord | null {
  if (!isObject(raw) || raw.schema !== "paas-backup/block@1") return null;
  const { context, ticket, blockedAt, reason, snapshot, failingChecks, blocks } = raw;
  if (!isString(context) || !isString(ticket) || !isString(blockedAt) || !isString(reason)) return null;
  if (snapshot !== null && !(isObject(snapshot) && isString(snapshot.id) && isString(snapshot.sha256)))
    return null;
  if (!Array.isArray(failingChecks)) return null;
  const checks: BlockRecord["failingChecks"] = [];
  for (const c of failingChecks) {
    if (!isObject(c) || !isString(c.name) || typeof c.ok !== "boolean" || !isString(c.detail)) return null;
    checks.push({ name: c.name, ok: c.ok, detail: c.detail });
  }
  if (!Array.isArray(blocks) || !blocks.every(isString)) return null;
  const record: BlockRecord = {
    schema: "paas-backup/block@1",
    context,
    ticket,
    blockedAt,
    reason,
    snapshot: snapshot === null ? null : { id: snapshot.id as string, sha256: snapshot.sha256 as string },
    failingChecks: checks,
    blocks: [...blocks],
  };
  if ("externalDoctor" in raw && raw.externalDoctor !== undefined) {
    const d = raw.externalDoctor;
    if (d !== null && !(isObject(d) && isString(d.command))) return null;
    record.externalDoctor = d === null ? null : { command: d.command as string };
  }
  if ("pendingValidation" in raw && raw.pendingValidation !== undefined) {
    if (typeof raw.pendingValidation !== "boolean") return null;
    record.pendingValidation = raw.pendingValidation;
  }
  return record;
}

export async function readBlock(
  fs: FileSystem,
  stateRoot: string,
  context: string,
): Promise<BlockRecord | null> {
  const path = join(contextDir(stateRoot, context), BLOCK_FILE);
  // A marker we cannot read still blocks: fail closed (torn by a crash, not JSON, wrong shape,
  // or not a regular file: a symbolic link there is not followed).
  const unreadable = (why: string): BlockRecord => ({
    schema: "paas-backup/block@1",
    context,
    ticket: "unknown",
    blockedAt: "",
    reason: `unreadable block marker ${path} (${why})`,
    snapshot: null,
    failingChecks: [],
    blocks: ["deploy", "secret-mutation"],
  });
  let text: string;
  try {
    const st = await fs.lstat(path);
    if (st.kind !== "file") return unreadable(`a ${st.kind}, not a file`);
    text = Buffer.from(await fs.readFile(path)).toString("utf8");
  } catch (err) {
    if (isNotFound(err)) return null;
    throw err;
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return unreadable(text.trim() === "" ? "empty" : "not JSON");
  }
  return checkBlockRecord(raw) ?? unreadable("not a block@1 record");
}

export async function writeBlock(
  fs: FileSystem,
  stateRoot: string,
  record: Omit<BlockRecord, "schema" | "blocks">,
): Promise<string> {
  return writeBlockIn(fs, contextDir(stateRoot, record.context), record);
}

/** The marker written into any context folder: restore writes it into the staged context before the swap. */
export async function writeBlockIn(
  fs: FileSystem,
  dir: string,
  record: Omit<BlockRecord, "schema" | "blocks">,
): Promise<string> {
  const path = join(dir, BLOCK_FILE);
  const full: BlockRecord = {
    schema: "paas-backup/block@1",
    ...record,
    blocks: ["deploy", "secret-mutation"],
  };
  await writeFileAtomic(fs, path, `${JSON.stringify(full, null, 2)}\n`);
  return path;
}

export async function clearBlock(fs: FileSystem, stateRoot: string, context: string): Promise<void> {
  await fs.rm(join(contextDir(stateRoot, context), BLOCK_FILE), { force: true });
}
