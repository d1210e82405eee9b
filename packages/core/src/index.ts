/**
 * @paas-backup/core: back up, verify and restore the private state of `si paas`.
 *
 * The front door: the verbs, their options and results, the errors, and the two things an SDK
 * caller plugs in (a FileSystem, an ObjectStorage). At most 80 names, types included
 * (`test/front-door.test.ts` counts them). Everything else is behind a subpath named after the
 * folder it lives in (`@paas-backup/core/repository`, `/context`, `/policy`, `/restore`, ...;
 * package.json `exports` lists them). Every function that touches files takes a FileSystem; the
 * clock, environment and operator come in as parameters. The Node adapter is `nodeFs` from
 * "@paas-backup/core/node".
 */
export {
  ExitCode,
  type ExitCodeValue,
  ERROR_CODES,
  type ErrorCode,
  type ErrorDetails,
  PaasBackupError,
  UsageError,
  SafetyError,
  IntegrityError,
  ValidationError,
  EnvironmentError,
  BusyError,
  isErrorCode,
  errorCodeOf,
  isNotFound,
} from "./errors.js";
export type { FileSystem, FileStat, FileKind, DirEntry, WriteOptions, FileReader } from "./fs/types.js";
export { ObjectNotFoundError, type ObjectStorage } from "./repository/storage.js";

// The context session every verb runs in; a caller composing several calls holds one.
export { withContext, type ContextSession, type WithContextOptions } from "./context/session.js";
export { withContextLock } from "./context/lock.js";
export { recoverContext, type RecoveryResult } from "./context/journal.js";
export { allowRepoStateFrom } from "./policy/work-tree.js";

// The repository (snapshots over any storage) and where it lives.
export { openRepository, type Repository, type SnapshotRef } from "./repository/repository.js";
export { openTarget, type OpenTargetOptions } from "./repository/targets.js";

// The verbs.
export { createSnapshot, type CreateSnapshotOptions, type SnapshotResult } from "./snapshot/create.js";
export { verifySnapshots, type VerifyOptions, type SnapshotVerification } from "./restore/verify.js";
export {
  restoreSnapshot,
  type RestoreOptions,
  type RestoreResult,
  type RestorePlan,
} from "./restore/restore.js";
export { rollbackRestore, type RollbackOptions, type RollbackResult } from "./restore/rollback.js";
export { unblockContext, type UnblockOptions, type UnblockResult } from "./restore/unblock.js";
export { readBlock, type BlockRecord } from "./records/block.js";
export { pruneSnapshots, type PruneOptions, type PruneResult } from "./retention/prune.js";
export type { RetentionPolicy } from "./retention/plan.js";
export { runTick, type TickOptions, type TickResult } from "./snapshot/tick.js";
export { runDrill, type DrillOptions, type DrillResult } from "./governance/drill.js";
export { contextStatus, type ContextStatus } from "./governance/status.js";
export { runDoctor, type DoctorOptions, type DoctorReport } from "./validate/doctor.js";
export { pushOffsite, type PushOffsiteOptions, type PushResult } from "./offsite/push.js";
export { fetchFromOffsite, type FetchFromOffsiteOptions } from "./offsite/fetch.js";
export { createIdentityFile } from "./archive/identity.js";
export { ageEncryptor, ageDecryptor } from "./archive/age.js";
