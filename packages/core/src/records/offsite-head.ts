import { createHash } from "node:crypto";
import { Readable } from "node:stream";
import { isNotFound } from "../errors.js";
import { backupRootStorage, readSmallObject } from "../repository/repository.js";
import type { FileSystem } from "../fs/types.js";
import type { ObjectStorage } from "../repository/storage.js";
import { recordChainHeadIn, type RecordLink } from "./chain.js";

/**
 * The head of a context's record chain, kept offsite too (issue 24 §2): at home, the tick's status
 * record holds it, but whoever can delete the newest incident record can rewrite that file as
 * well. A copy at the offsite target (beside the context's snapshots, below the root's prefix)
 * is out of that reach, so `report` finds a newest record deleted or edited at home.
 */
export const RECORDS_HEAD_NAME = "records-head.json";

export interface OffsiteRecordsHead {
  schema: "paas-backup/records-head@1";
  context: string;
  head: RecordLink | null;
  /** when the push that wrote it ran */
  at: string;
}

export function recordsHeadKey(context: string): string {
  return `${context}/${RECORDS_HEAD_NAME}`;
}

/** Copy the context's record chain head to a root's view at a target, when it changed. */
export async function pushRecordsHead(
  options: (
    | {
        /** where the context's incident and drill records are (`<context>/incidents/…`): the repository's storage */
        records: ObjectStorage;
      }
    | { fs: FileSystem; backupRoot: string }
  ) & {
    context: string;
    view: ObjectStorage;
    now: Date;
  },
): Promise<RecordLink | null> {
  const records = "records" in options ? options.records : backupRootStorage(options.fs, options.backupRoot);
  const head = await recordChainHeadIn(records, options.context);
  const there = await readOffsiteRecordsHead(options.view, options.context);
  // Unchanged: not written again (a versioned bucket would keep a version per tick).
  if (there && JSON.stringify(there.head) === JSON.stringify(head)) return head;
  const body: OffsiteRecordsHead = {
    schema: "paas-backup/records-head@1",
    context: options.context,
    head,
    at: options.now.toISOString(),
  };
  const data = Buffer.from(`${JSON.stringify(body, null, 2)}\n`, "utf8");
  await options.view.put(recordsHeadKey(options.context), Readable.from([data]), {
    sha256: createHash("sha256").update(data).digest("hex"),
    size: data.length,
  });
  return head;
}

/** The head a root's view at a target holds for a context; null when none was pushed (or it does not parse). */
export async function readOffsiteRecordsHead(
  view: ObjectStorage,
  context: string,
): Promise<OffsiteRecordsHead | null> {
  try {
    const parsed = JSON.parse(
      await readSmallObject(view, recordsHeadKey(context), 64 * 1024),
    ) as OffsiteRecordsHead;
    return parsed.schema === "paas-backup/records-head@1" ? parsed : null;
  } catch (err) {
    if (isNotFound(err) || err instanceof SyntaxError) return null;
    throw err;
  }
}
