/**
 * `@paas-backup/core/snapshot`: what taking a snapshot needs and nothing more, so a caller that
 * only backs up (the CLI's `snapshot`, a cron job's script) does not load the restorer, the
 * doctor's shapes, the S3 driver or zod (95 of the 170 modules a snapshot loaded, about 50 ms of
 * its start). Everything here is also exported from the package's root.
 */
export {
  createSnapshot,
  type CreateSnapshotOptions,
  type SnapshotResult,
  type SnapshotKind,
  type SnapshotRedaction,
} from "./snapshot/create.js";
export {
  planSnapshotContents,
  type SnapshotContents,
  type PathDecision,
  type PathRule,
} from "./snapshot/plan.js";
export { contextDir, contextsDir } from "./util/paths.js";
export { withContextLock, acquireContextLock, type LockOwner, type HeldLock } from "./context/lock.js";
export {
  withContext,
  type ContextSession,
  type WithContextOptions,
  type ContextCallOptions,
  type ContextLockOptions,
} from "./context/session.js";
export { allowRepoStateFrom, assertSafeLocations, type GuardedLocation } from "./policy/work-tree.js";
export { recoverContext, hasJournal, type RecoveryResult } from "./context/journal.js";
export { validateContextName } from "./policy/context.js";
export { type OptionalFolder } from "./policy/selection.js";
export {
  ageEncryptor,
  ageDecryptor,
  parseRecipients,
  parseIdentities,
  checkIdentities,
  validateRecipient,
} from "./archive/age.js";
export type { ArtifactEncryptor, ArtifactDecryptor } from "./archive/encryption.js";
export { prestartScanWorker } from "./snapshot/scan-lane.js";
