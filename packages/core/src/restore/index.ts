// @paas-backup/core/restore: verify, chain replay, restore (plan, verify, stage, swap, validate,
// record), what a restore replaces, rollback, unblock, the vault report.
export {
  verifySnapshots,
  findFallback,
  checkChain,
  type VerifyOptions,
  type SnapshotVerification,
} from "./verify.js";
export { materializeChain } from "./materialize.js";
export {
  restoreSnapshot,
  workDir,
  type RestoreOptions,
  type RestoreResult,
  type RestorePlan,
  type ExternalDoctorResult,
} from "./restore.js";
export { rollbackRestore, type RollbackOptions, type RollbackResult } from "./rollback.js";
export { unblockContext, type UnblockOptions, type UnblockResult } from "./unblock.js";
export { restoreScope, type RestoreScope, type RestoreScopeMode, type RestoreChanges } from "./scope.js";
export { inspectVault, recipientFingerprint, type VaultReport, type TrustStore } from "./vault.js";
