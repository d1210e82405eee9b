import { randomUUID } from "node:crypto";
import type { FileSystem } from "../fs/types.js";
import { validateContextName } from "../policy/context.js";
import { compareSnapshotIds } from "../repository/ids.js";
import { writeFileAtomic } from "../util/atomic.js";
import { readTextOrNull } from "../util/optional-reads.js";
import { contextBackupDir, join } from "../util/paths.js";
import type { Immutability, PutOptions, PutResult, StoredObject } from "../repository/storage.js";
import type { OffsiteCopy, OffsiteRecord, OffsiteTarget } from "./types.js";

export function recordFileName(name: string): string {
  return `${name.replace(/[^A-Za-z0-9._-]/g, "_")}.json`;
}

export function recordPath(backupRoot: string, context: string, name: string): string {
  return join(contextBackupDir(backupRoot, context), "offsite", recordFileName(name));
}

export async function readRecordFile(fs: FileSystem, path: string): Promise<OffsiteRecord | null> {
  const text = await readTextOrNull(fs, path);
  return text === null ? null : (JSON.parse(text) as OffsiteRecord);
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
  const names = [...new Set([target.name, target.storage.url])];
  const record: OffsiteRecord = { schema: "paas-backup/offsite@1", target: target.storage.url, copies: {} };
  for (const name of names.reverse()) {
    const r = await readRecordFile(fs, recordPath(backupRoot, context, name));
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
  const path = recordPath(backupRoot, context, target.name);
  await fs.mkdir(join(contextBackupDir(backupRoot, context), "offsite"), { recursive: true, mode: 0o700 });
  await writeFileAtomic(fs, path, `${JSON.stringify(record, null, 2)}\n`, 0o600, randomUUID().slice(0, 8));
  // The URL-named record (from --to) is merged into this one now: leave one record per target.
  if (target.name !== target.storage.url)
    await fs.rm(recordPath(backupRoot, context, target.storage.url), { force: true });
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
