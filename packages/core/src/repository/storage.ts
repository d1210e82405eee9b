import type { Readable, Writable } from "node:stream";
import { IntegrityError, UsageError } from "../errors.js";

/**
 * One storage interface, a driver per backend (as unstorage does): local directory, memory, S3.
 * Keys are "/"-separated relative paths; every object carries the sha256 of its bytes.
 */
export interface StoredObject {
  key: string;
  size: number;
  /** our sha256 metadata, hex; null when the object has none */
  sha256: string | null;
  lastModified: Date | null;
  /** Object Lock retention of this object, when the backend reports one */
  retainUntil: string | null;
  lockMode: string | null;
  /** permission bits and owner, where the backend has them (directories) */
  mode?: number;
  uid?: number;
}

export interface PutOptions {
  sha256: string;
  size: number;
  /** write-once retention (S3 Object Lock), sent with the object */
  lock?: { mode: "COMPLIANCE" | "GOVERNANCE"; retainUntil: Date };
}

export interface PutResult {
  key: string;
  size: number;
  sha256: string;
  /** how the copy was confirmed: the server's own checksum, a streamed re-read and hash, or (the backup root) the hash of the bytes written */
  confirmedBy: "server-checksum" | "reread" | "hashed-on-write";
  multipart: boolean;
}

export interface Immutability {
  /** the backend can enforce write-once retention at all */
  supported: boolean;
  /** it is configured to, for this target */
  enabled: boolean;
  detail: string;
}

/**
 * What a driver can do, so callers decide by capability and never by driver name (unstorage's
 * `flags`). Every flag is a promise the conformance suite checks for each driver.
 */
export interface StorageFlags {
  /** reading an object back is cheap (a local or mounted disk): verify bytes, not only metadata */
  cheapReads: boolean;
  /** head() reports permission bits and the owner of objects */
  permissions: boolean;
  /** put() can ask for write-once retention (S3 Object Lock) */
  retention: boolean;
}

/**
 * An object being written as a stream. Nothing is visible under its key until commit() returns;
 * abort() (or a crash) leaves only a staged leftover that sweepStaged() removes later. The local
 * driver stages into a dot-file in the same folder and commits with flush + rename + flush.
 */
export interface StagedObject {
  readonly stream: Writable;
  /**
   * After the stream has finished: make the object visible under its key. With `expectSha256`,
   * bytes that hash otherwise are refused (IntegrityError) and nothing becomes visible.
   */
  commit(expectSha256?: string): Promise<PutResult>;
  /** drop what was staged (safe to call after a failed write or twice) */
  abort(): Promise<void>;
}

export interface ObjectStorage {
  /** the driver's name, for messages only: decide by `flags` */
  readonly kind: string;
  readonly flags: StorageFlags;
  /** the target as a URL, for messages (no credentials) */
  readonly url: string;
  /** write an object whose sha256 and size are known beforehand; replaces an existing one */
  put(key: string, body: Readable, options: PutOptions): Promise<PutResult>;
  /** stream an object in; see StagedObject */
  stage(key: string): Promise<StagedObject>;
  /** rejects with ObjectNotFoundError (isNotFound) when there is no such object */
  get(key: string): Promise<Readable>;
  /** null when there is no such object */
  head(key: string): Promise<StoredObject | null>;
  /**
   * every object under the prefix, following the backend's pagination; `shallow` stops at the next
   * "/"; staged objects are not listed. `keysOnly`: key, size and time from the listing alone, with
   * sha256 and lock left null where the backend would need a request per object for them (S3).
   */
  list(prefix: string, options?: { shallow?: boolean; keysOnly?: boolean }): AsyncIterable<StoredObject>;
  /** deleting a missing object is not an error */
  delete(key: string): Promise<void>;
  /** remove staged objects under the prefix last written before `olderThan` (interrupted runs); returns their keys */
  sweepStaged(prefix: string, olderThan: Date): Promise<string[]>;
  immutability(): Promise<Immutability>;
  /**
   * Move an object's write-once retention later (S3 PutObjectRetention). Only backends that can
   * enforce retention have it; a lock can only be extended, never shortened.
   */
  extendLock?(key: string, lock: { mode: "COMPLIANCE" | "GOVERNANCE"; retainUntil: Date }): Promise<void>;
  /** where a key lives, for messages: a path for directories, a URL otherwise */
  locate(key: string): string;
  /**
   * Create-only write of a small object (S3 `If-None-Match: *`): exactly one of several writers
   * racing for a key creates it, the others get `created: false`. Leases and the fenced commit
   * log of a shared repository rest on it. Servers that ignore the condition (s3rver, and Ceph
   * RGW 16 on a versioned bucket) are caught by probeConditionalWrites, never trusted.
   */
  createOnly?(key: string, body: Buffer): Promise<CreateOnlyResult>;
  /**
   * Append text to an object, creating it (a file on a folder driver: the backup root's history
   * JSON Lines, one write per line, a crash leaving at most a torn last line). Object stores have
   * no append and leave it out: callers then write an object per line (repository/history.ts).
   */
  append?(key: string, text: string): Promise<void>;
  /** The storage server's clock (S3: the Date header of an answer): leases are judged on it, never on the host's. */
  serverTime?(): Promise<Date>;
  /**
   * Every version of every object under the prefix, the current ones and those a newer version or
   * a delete marker hides (S3 ListObjectVersions on a versioned bucket). Only backends that keep
   * versions have it: keys audit reads each old version's age header, which a removed recipient
   * can still open until the version is gone.
   */
  listVersions?(prefix: string): AsyncIterable<StoredVersion>;
  /** The first `bytes` bytes of one version of an object (a ranged GET), with that version's Object Lock. */
  readVersionStart?(key: string, versionId: string, bytes: number): Promise<VersionStart>;
}

export interface StoredVersion {
  key: string;
  versionId: string;
  /** the version a plain GET returns */
  latest: boolean;
  /** a delete marker: no bytes, it only hides the versions below it */
  deleteMarker: boolean;
  size: number;
  lastModified: Date | null;
}

export interface VersionStart {
  data: Buffer;
  retainUntil: string | null;
  lockMode: string | null;
}

export type CreateOnlyResult =
  { created: true; /** the server's time of the write */ at: Date } | { created: false };

/** The one "not found" of every driver: a repository object that should be there is not. */
export class ObjectNotFoundError extends IntegrityError {
  constructor(where: string, cause?: unknown) {
    super("PAAS_BACKUP_OBJECT_NOT_FOUND", `${where} does not exist`, {
      path: where,
      remediation:
        "Something removed it while paas-backup ran, or the repository is damaged: run `paas-backup verify` and take a new snapshot.",
      stage: "storage",
      ...(cause === undefined ? {} : { cause }),
    });
  }
}

export function stagedMismatch(where: string, actual: string, expected: string): IntegrityError {
  return new IntegrityError(
    "PAAS_BACKUP_STORAGE_MISMATCH",
    `bytes written to ${where} hash to ${actual}, expected ${expected}`,
    {
      path: where,
      remediation:
        "The source changed while it was copied, or the storage corrupts writes: check it and run the command again.",
      stage: "storage",
    },
  );
}

/** The staging name of a key: a dot-file beside it that no listing shows. */
export function stagedKey(key: string, nonce: string): string {
  const slash = key.lastIndexOf("/");
  return `${key.slice(0, slash + 1)}.${key.slice(slash + 1)}.${nonce}.partial`;
}

export function isStagedKey(key: string): boolean {
  return /(^|\/)\.[^/]*\.partial$/.test(key);
}

export interface TargetSpec {
  kind: "file" | "s3";
  url: string;
  /** s3: bucket; file: the absolute folder */
  location: string;
  /** s3 only: key prefix, no leading or trailing "/" */
  prefix: string;
}

/** restic-style target names: s3://bucket/prefix, file:///abs/path. */
export function parseTargetUrl(url: string): TargetSpec {
  const bad = (why: string) =>
    new UsageError("PAAS_BACKUP_BAD_TARGET", `offsite target ${JSON.stringify(url)} ${why}`, {
      remediation:
        "Name a target as s3://<bucket>/<prefix> (with --endpoint for S3-compatible servers) or file:///<absolute path>.",
      stage: "arguments",
    });
  const m = /^([a-z0-9]+):\/\/(.*)$/.exec(url);
  if (!m) throw bad("is not a URL");
  const [, scheme, rest] = m;
  if (scheme === "file") {
    if (!rest!.startsWith("/")) throw bad("needs an absolute path (file:///path)");
    return { kind: "file", url, location: rest!.replace(/\/+$/, "") || "/", prefix: "" };
  }
  if (scheme === "s3") {
    const [bucket, ...prefixParts] = rest!.split("/");
    if (!bucket || !/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket)) throw bad("has no valid bucket name");
    return { kind: "s3", url, location: bucket, prefix: prefixParts.filter(Boolean).join("/") };
  }
  throw bad(`has an unknown scheme ${scheme}:// (s3 or file)`);
}
