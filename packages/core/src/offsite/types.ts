import type { ObjectStorage, PutResult } from "../repository/storage.js";
import type { RetentionPolicy } from "../retention/plan.js";

/**
 * Policy §4.4: an immutable, offsite copy of every daily full. The logic here is written once over
 * the ObjectStorage interface; the drivers (directory, memory, S3) only move bytes.
 * Layout at a target: roots/<root id>/<context>/<id>.tar.gz[.age], .sha256 and <id>.manifest.json,
 * as at home below the backup root's identity, and roots/<root id>.json naming the root. Copies
 * made before backup roots had identities sit at <context>/<id>... (the "legacy" layout): they are
 * still listed, verified, restored and pruned, and a push that must replace one writes it anew
 * under the root's own prefix.
 */
export interface OffsiteTarget {
  name: string;
  storage: ObjectStorage;
  objectLock?: { mode: "COMPLIANCE" | "GOVERNANCE"; days: number };
  retention?: Partial<RetentionPolicy>;
  /**
   * The target may hold plaintext: a snapshot written without encryption (`--insecure-plaintext`,
   * the policy's shell flow) is copied as it is. Without it, such a snapshot leaves the host
   * encrypted to the configured recipients (issue 21 §5).
   */
  allowPlaintext?: boolean;
}

export interface OffsiteCopy {
  id: string;
  /** the artifact's key at the target (roots/<root>/<context>/… or, for old copies, <context>/…) */
  artifact: string;
  sha256: string;
  size: number;
  confirmedBy: PutResult["confirmedBy"];
  multipart: boolean;
  confirmedAt: string;
  retainUntil: string | null;
  lockMode: string | null;
  immutable: boolean;
  /** set by a deep verify that read other bytes than we copied, or a push that found the copy gone; cleared when it is put back */
  problem?: string | null;
  problemSeenAt?: string | null;
  /** when a verify last read the copy's bytes and found them as copied (audit evidence, issue 24) */
  readVerifiedAt?: string | null;
  /**
   * The snapshot is plaintext at home and was encrypted on its way out (issue 21 §5): the copy is
   * `<id>.tar.gz.age` with its own checksum file, and `sha256`/`size` above are of those encrypted
   * bytes (what verify and heal compare); `sourceSha256` is the home artifact's, which it encrypts.
   */
  encryptedOnPush?: boolean;
  sourceSha256?: string;
  /**
   * encryptedOnPush: the age recipients (public keys, never an identity) the copy is encrypted
   * to. A push whose configured recipients differ encrypts it again; keys rotate does too. Absent
   * on copies pushed before it was recorded.
   */
  recipients?: string[];
  /** the keys rotate (rotation id) that last re-encrypted this copy */
  rotatedBy?: string;
}

/**
 * An encrypted-on-push copy being uploaded, recorded before its artifact is committed: age output
 * differs on every run, so after a kill only this record can tell the object at the key is the
 * one this push wrote (confirmed then by re-reading it), and not some other root's.
 */
export interface PendingEncryptedCopy {
  artifact: string;
  sha256: string;
  size: number;
  sourceSha256: string;
  /** the recipients this upload is encrypted to */
  recipients?: string[];
  startedAt: string;
}

export interface OffsiteRecord {
  schema: "paas-backup/offsite@1";
  target: string;
  copies: Record<string, OffsiteCopy>;
  /** the rotation of `offsite verify --read-data-subset`: which copies the current cycle has read */
  dataSubset?: { cycle: number; startedAt: string; read: string[] };
  /**
   * Copies the target's retention removed (offsite prune, tick), by id, with when: push does not
   * send them again while the full stays at home for a reason of its own (issue 20 §4).
   */
  removedByRetention?: Record<string, string>;
  /** encrypted-on-push uploads begun and not yet confirmed, by snapshot id */
  pending?: Record<string, PendingEncryptedCopy>;
}

export const DEFAULT_OFFSITE_RETENTION: RetentionPolicy = { hourly: 0, daily: 7, weekly: 4, monthly: 3 };

export const ROOTS = "roots";
