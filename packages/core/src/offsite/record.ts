import { createHash } from "node:crypto";
import { Readable } from "node:stream";
import { isNotFound } from "../errors.js";
import type { FileSystem } from "../fs/types.js";
import { validateContextName } from "../policy/context.js";
import { compareSnapshotIds } from "../repository/ids.js";
import { backupRootStorage, readSmallObject } from "../repository/repository.js";
import type {
  Immutability,
  ObjectStorage,
  PutOptions,
  PutResult,
  StoredObject,
} from "../repository/storage.js";
import type { OffsiteCopy, OffsiteRecord, OffsiteTarget } from "./types.js";

export function recordFileName(name: string): string {
  return `${name.replace(/[^A-Za-z0-9._-]/g, "_")}.json`;
}

/** The record's key in the repository: <context>/offsite/<target>.json, beside the context's snapshots. */
export function recordKey(context: string, name: string): string {
  return `${context}/offsite/${recordFileName(name)}`;
}

async function readRecordObject(store: ObjectStorage, key: string): Promise<OffsiteRecord | null> {
  try {
    return JSON.parse(await readSmallObject(store, key)) as OffsiteRecord;
  } catch (err) {
    if (isNotFound(err)) return null;
    throw err;
  }
}

/**
 * The record of what we copied to a target. A target is one record whether it was named in the
 * config or given by URL: copies pushed with --to URL (recorded under the URL) belong to the
 * configured target with that URL, and are read from there until the next write merges them.
 */
export async function readRecord(
  fs: FileSystem,
  backupRoot: string,
  context: string,
  target: OffsiteTarget,
): Promise<OffsiteRecord> {
  return readRecordIn(backupRootStorage(fs, backupRoot), context, target);
}

/** readRecord through the storage that holds the records (the backup root's, for a folder root). */
export async function readRecordIn(
  store: ObjectStorage,
  context: string,
  target: OffsiteTarget,
): Promise<OffsiteRecord> {
  const names = [...new Set([target.name, target.storage.url])];
  const record: OffsiteRecord = { schema: "paas-backup/offsite@1", target: target.storage.url, copies: {} };
  for (const name of names.reverse()) {
    const r = await readRecordObject(store, recordKey(context, name));
    if (!r) continue;
    Object.assign(record.copies, r.copies ?? {});
    if (r.dataSubset) record.dataSubset = r.dataSubset;
    if (r.removedByRetention)
      record.removedByRetention = { ...record.removedByRetention, ...r.removedByRetention };
    if (r.pending) record.pending = { ...record.pending, ...r.pending };
  }
  return record;
}

export async function writeRecord(
  fs: FileSystem,
  backupRoot: string,
  context: string,
  target: OffsiteTarget,
  record: OffsiteRecord,
): Promise<void> {
  await writeRecordIn(backupRootStorage(fs, backupRoot), context, target, record);
}

/** The record written whole (the storage's put is atomic: a reader sees the old record or the new). */
export async function writeRecordIn(
  store: ObjectStorage,
  context: string,
  target: OffsiteTarget,
  record: OffsiteRecord,
): Promise<void> {
  const body = Buffer.from(`${JSON.stringify(record, null, 2)}\n`, "utf8");
  await store.put(recordKey(context, target.name), Readable.from([body]), {
    sha256: createHash("sha256").update(body).digest("hex"),
    size: body.length,
  });
  // The URL-named record (from --to) is merged into this one now: leave one record per target.
  if (target.name !== target.storage.url) await store.delete(recordKey(context, target.storage.url));
}

/** What the backup root recorded about a target's copies, without asking the target (for status). */
export async function recordedCopies(options: {
  fs: FileSystem;
  backupRoot: string;
  context: string;
  target: OffsiteTarget;
}): Promise<OffsiteCopy[]> {
  const record = await readRecord(
    options.fs,
    options.backupRoot,
    validateContextName(options.context),
    options.target,
  );
  return Object.values(record.copies).sort((a, b) => compareSnapshotIds(a.id, b.id));
}

/**
 * The record of a copy the target has just confirmed, built in one place for every way a copy
 * lands (a push, an encrypted-on-push upload, a key rotation's replacement): its lock is what the
 * target reports, else what we asked for, and it is immutable only when the bucket enforces locks
 * (a lock header the server ignores is not a lock). A confirmed copy has no problem.
 */
export function confirmedCopy(
  copy: Pick<OffsiteCopy, "id" | "artifact" | "sha256" | "size"> & Partial<OffsiteCopy>,
  put: Pick<PutResult, "confirmedBy" | "multipart">,
  at: {
    now: Date;
    head: Pick<StoredObject, "retainUntil" | "lockMode"> | null;
    lock: PutOptions["lock"] | undefined;
    immutability: Immutability;
  },
): OffsiteCopy {
  return {
    ...copy,
    confirmedBy: put.confirmedBy,
    multipart: put.multipart,
    confirmedAt: at.now.toISOString(),
    retainUntil: at.head?.retainUntil ?? at.lock?.retainUntil.toISOString() ?? null,
    lockMode: at.head?.lockMode ?? at.lock?.mode ?? null,
    immutable: at.immutability.enabled && at.lock !== undefined,
    problem: null,
    problemSeenAt: null,
  };
}
