import { z } from "zod";
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

export const BlockRecord = z.object({
  schema: z.literal("paas-backup/block@1"),
  context: z.string(),
  ticket: z.string(),
  blockedAt: z.string(),
  reason: z.string(),
  snapshot: z.object({ id: z.string(), sha256: z.string() }).nullable(),
  failingChecks: z.array(z.object({ name: z.string(), ok: z.boolean(), detail: z.string() })),
  blocks: z.array(z.string()),
  /** the external doctor that blocked (or must pass before unblock), e.g. "si paas doctor --json" */
  externalDoctor: z.object({ command: z.string() }).nullable().optional(),
  /** true while a restore has swapped this context in and its validation has not finished */
  pendingValidation: z.boolean().optional(),
});
export type BlockRecord = z.infer<typeof BlockRecord>;

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
  const parsed = BlockRecord.safeParse(raw);
  if (!parsed.success) return unreadable("not a block@1 record");
  return parsed.data;
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
