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

/**
 * Where the push records are (issue 19 §2): what every offsite step reads and writes them
 * through. `records` when given; else the repository when one is given (an SDK caller holding
 * only a bucket keeps them there, `<context>/offsite/<target>.json`, and nothing on the host);
 * else the backup root folder, the repository of a folder root.
 */
export interface OffsiteRecordsOptions {
  fs: FileSystem;
  backupRoot: string;
  /** the repository the snapshots are in, when it is not the backup root folder */
  repository?: ObjectStorage;
  /** where the push records are kept, in the layout of recordKey (offsiteRecordsIn gives a bucket's) */
  records?: ObjectStorage;
}

export function recordStoreOf(options: OffsiteRecordsOptions): ObjectStorage {
  return options.records ?? options.repository ?? backupRootStorage(options.fs, options.backupRoot);
}

/** The bucket layout of the push records: `offsite-records/<context>/<target>.json`. */
export const OFFSITE_RECORDS_PREFIX = "offsite-records";

/**
 * The push records of a bucket several hosts share, in the layout an s3:// root has always used,
 * `offsite-records/<context>/<target>.json` (readable by older paas-backup on the same bucket),
 * as a record store (keys `<context>/offsite/<name>`): every offsite step reads and writes them
 * there directly, so every host knows what any host pushed, confirmed or removed, and nothing is
 * copied through a host's cache. Any other key is refused: this store holds records only.
 */
export function offsiteRecordsIn(bucket: ObjectStorage): ObjectStorage {
  const toBucket = (key: string): string => {
    const m = /^([^/]+)\/offsite\/(.*)$/.exec(key);
    if (!m) throw new Error(`not an offsite record key: ${key}`);
    return `${OFFSITE_RECORDS_PREFIX}/${m[1]}/${m[2]}`;
  };
  const fromBucket = (key: string): string => {
    const m = new RegExp(`^${OFFSITE_RECORDS_PREFIX}/([^/]+)/(.*)$`).exec(key);
    return m ? `${m[1]}/offsite/${m[2]}` : key;
  };
  const mapped = (o: StoredObject): StoredObject => ({ ...o, key: fromBucket(o.key) });
  const store: ObjectStorage = {
    kind: bucket.kind,
    flags: bucket.flags,
    url: bucket.url,
    put: async (key, body, options) => {
      const put = await bucket.put(toBucket(key), body, options);
      return { ...put, key };
    },
    stage: (key) => bucket.stage(toBucket(key)),
    get: (key) => bucket.get(toBucket(key)),
    head: async (key) => {
      const h = await bucket.head(toBucket(key));
      return h && mapped(h);
    },
    list: async function* (prefix, options) {
      for await (const o of bucket.list(toBucket(prefix), options)) yield mapped(o);
    },
    delete: (key) => bucket.delete(toBucket(key)),
    sweepStaged: async (prefix, olderThan) =>
      (await bucket.sweepStaged(toBucket(prefix), olderThan)).map(fromBucket),
    immutability: () => bucket.immutability(),
    locate: (key) => bucket.locate(toBucket(key)),
  };
  return store;
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
export async function recordedCopies(
  options: OffsiteRecordsOptions & {
    context: string;
    target: OffsiteTarget;
  },
): Promise<OffsiteCopy[]> {
  const record = await readRecordIn(
    recordStoreOf(options),
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
