/**
 * `@paas-backup/core/snapshot`: taking a snapshot and nothing more, so a caller that only backs up
 * (the CLI's `snapshot`, a cron job's script) does not load the restorer, the doctor's shapes, tar,
 * the S3 driver or zod (`packages/cli/test/startup-modules.test.ts` holds the CLI's `snapshot` to a
 * bound on the modules it loads). The cron tick is `/tick`; ls, dump, diff and find are `/inspect`.
 *
 * The names below the line came from other folders when this entry was a hand-kept subset of the
 * root; they keep working here, deprecated: import them from the entry the note names.
 */
export {
  createSnapshot,
  isAcknowledged,
  type CreateSnapshotOptions,
  type SnapshotResult,
  type SnapshotKind,
  type SnapshotProgress,
  type SecretAcknowledgement,
  type SnapshotRedaction,
} from "./create.js";
export { hasMemberCache } from "./member-cache.js";
export { planSnapshotContents, type SnapshotContents, type PathDecision, type PathRule } from "./plan.js";
export {
  defaultScanLane,
  prestartScanWorker,
  inlineScanLane,
  workerScanLane,
  ScanWorkerFailed,
  WORKER_SCAN_BYTES,
  type ScanLane,
  type FileScan,
} from "./scan-lane.js";
// The vocabulary of CreateSnapshotOptions (include, encryptor), named here for its callers.
export type { OptionalFolder } from "../policy/selection.js";
export type { ArtifactEncryptor } from "../archive/encryption.js";

// ---- deprecated aliases (issue 19 §5): each name's own entry is in its note ----
import * as paths from "../util/paths.js";
import * as lock from "../context/lock.js";
import * as session from "../context/session.js";
import * as journal from "../context/journal.js";
import * as workTree from "../policy/work-tree.js";
import * as contextName from "../policy/context.js";
import * as age from "../archive/age.js";
import type * as encryption from "../archive/encryption.js";

/** @deprecated import from "@paas-backup/core/policy" */
export const contextDir = paths.contextDir;
/** @deprecated import from "@paas-backup/core/policy" */
export const contextsDir = paths.contextsDir;
/** @deprecated import from "@paas-backup/core" or "@paas-backup/core/context" */
export const withContextLock = lock.withContextLock;
/** @deprecated import from "@paas-backup/core/context" */
export const acquireContextLock = lock.acquireContextLock;
/** @deprecated import from "@paas-backup/core/context" */
export type LockOwner = lock.LockOwner;
/** @deprecated import from "@paas-backup/core/context" */
export type HeldLock = lock.HeldLock;
/** @deprecated import from "@paas-backup/core" or "@paas-backup/core/context" */
export const withContext = session.withContext;
/** @deprecated import from "@paas-backup/core" or "@paas-backup/core/context" */
export type ContextSession = session.ContextSession;
/** @deprecated import from "@paas-backup/core" or "@paas-backup/core/context" */
export type WithContextOptions = session.WithContextOptions;
/** @deprecated import from "@paas-backup/core/context" */
export type ContextCallOptions = session.ContextCallOptions;
/** @deprecated import from "@paas-backup/core/context" */
export type ContextLockOptions = session.ContextLockOptions;
/** @deprecated import from "@paas-backup/core" or "@paas-backup/core/policy" */
export const allowRepoStateFrom = workTree.allowRepoStateFrom;
/** @deprecated import from "@paas-backup/core/policy" */
export const assertSafeLocations = workTree.assertSafeLocations;
/** @deprecated import from "@paas-backup/core/policy" */
export type GuardedLocation = workTree.GuardedLocation;
/** @deprecated import from "@paas-backup/core" or "@paas-backup/core/context" */
export const recoverContext = journal.recoverContext;
/** @deprecated import from "@paas-backup/core/context" */
export const hasJournal = journal.hasJournal;
/** @deprecated import from "@paas-backup/core" or "@paas-backup/core/context" */
export type RecoveryResult = journal.RecoveryResult;
/** @deprecated import from "@paas-backup/core/policy" */
export const validateContextName = contextName.validateContextName;
/** @deprecated import from "@paas-backup/core" or "@paas-backup/core/age" */
export const ageEncryptor = age.ageEncryptor;
/** @deprecated import from "@paas-backup/core" or "@paas-backup/core/age" */
export const ageDecryptor = age.ageDecryptor;
/** @deprecated import from "@paas-backup/core/age" */
export const parseRecipients = age.parseRecipients;
/** @deprecated import from "@paas-backup/core/age" */
export const parseIdentities = age.parseIdentities;
/** @deprecated import from "@paas-backup/core/age" */
export const checkIdentities = age.checkIdentities;
/** @deprecated import from "@paas-backup/core/age" */
export const validateRecipient = age.validateRecipient;
/** @deprecated import from "@paas-backup/core/age" */
export type ArtifactDecryptor = encryption.ArtifactDecryptor;
