import type { Readable } from "node:stream";
import { UsageError } from "../errors.js";

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
  /** how the copy was confirmed: the server's own checksum, or a streamed re-read and hash */
  confirmedBy: "server-checksum" | "reread";
  multipart: boolean;
}

export interface Immutability {
  /** the backend can enforce write-once retention at all */
  supported: boolean;
  /** it is configured to, for this target */
  enabled: boolean;
  detail: string;
}

export interface ObjectStorage {
  readonly kind: "file" | "memory" | "s3";
  /** the target as a URL, for messages (no credentials) */
  readonly url: string;
  put(key: string, body: Readable, options: PutOptions): Promise<PutResult>;
  get(key: string): Promise<Readable>;
  head(key: string): Promise<StoredObject | null>;
  /** every object under the prefix, following the backend's pagination; `shallow` stops at the next "/" */
  list(prefix: string, options?: { shallow?: boolean }): AsyncIterable<StoredObject>;
  delete(key: string): Promise<void>;
  immutability(): Promise<Immutability>;
  /**
   * Move an object's write-once retention later (S3 PutObjectRetention). Only backends that can
   * enforce retention have it; a lock can only be extended, never shortened.
   */
  extendLock?(key: string, lock: { mode: "COMPLIANCE" | "GOVERNANCE"; retainUntil: Date }): Promise<void>;
  /** where a key lives, for messages: a path for directories, a URL otherwise */
  locate(key: string): string;
}

export interface TargetSpec {
  kind: "file" | "memory" | "s3";
  url: string;
  /** s3: bucket; file: the absolute folder; memory: a name */
  location: string;
  /** s3 only: key prefix, no leading or trailing "/" */
  prefix: string;
}

/** restic-style target names: s3://bucket/prefix, file:///abs/path, memory://name. */
export function parseTargetUrl(url: string): TargetSpec {
  const bad = (why: string) =>
    new UsageError("PAAS_BACKUP_BAD_TARGET", `offsite target ${JSON.stringify(url)} ${why}`, {
      remediation: "Name a target as s3://<bucket>/<prefix> (with --endpoint for S3-compatible servers) or file:///<absolute path>.",
      stage: "arguments",
    });
  const m = /^([a-z0-9]+):\/\/(.*)$/.exec(url);
  if (!m) throw bad("is not a URL");
  const [, scheme, rest] = m;
  if (scheme === "file") {
    if (!rest!.startsWith("/")) throw bad("needs an absolute path (file:///path)");
    return { kind: "file", url, location: rest!.replace(/\/+$/, "") || "/", prefix: "" };
  }
  if (scheme === "memory") return { kind: "memory", url, location: rest!, prefix: "" };
  if (scheme === "s3") {
    const [bucket, ...prefixParts] = rest!.split("/");
    if (!bucket || !/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket)) throw bad("has no valid bucket name");
    return { kind: "s3", url, location: bucket, prefix: prefixParts.filter(Boolean).join("/") };
  }
  throw bad(`has an unknown scheme ${scheme}:// (s3 or file)`);
}
