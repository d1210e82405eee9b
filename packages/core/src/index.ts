/**
 * @paas-backup/core: back up, verify and restore the private state of `si paas`.
 * Every function that touches files takes a FileSystem; the clock, environment and operator
 * come in as parameters. The Node adapter is `nodeFs` from "@paas-backup/core/node".
 */
export * from "./errors.js";
export type { FileSystem, FileStat, FileKind, DirEntry, WriteOptions, FileReader } from "./fs/types.js";
export { validateContextName, MAX_CONTEXT_NAME_BYTES } from "./policy/context.js";
export {
  PROTECTED_FILES,
  EVENT_LOGS,
  OPTIONAL_FOLDERS,
  hardExclusionReason,
  type OptionalFolder,
} from "./policy/selection.js";
export { filesScannedAtSnapshot, type ScannedFiles } from "./validate/proven.js";
export {
  SecretScanner,
  scanLine,
  scanText,
  redactText,
  redactBytes,
  isSecretLikeKey,
  looksLikeSecretValue,
  SCANNER_RULES_VERSION,
  SECRET_RULES,
  GITLEAKS_RULE_IDS,
  REDACTED,
  type SecretFinding,
  type SecretAllowance,
  type SecretScannerOptions,
} from "./policy/secrets.js";
export {
  GITLEAKS_RULES,
  GITLEAKS_GLOBAL_ALLOW,
  GITLEAKS_COMMIT,
  type GitleaksRule,
  type GitleaksPattern,
} from "./policy/gitleaks-rules.js";
export { Manifest, MANIFEST_FORMAT, canonicalJson, type ManifestFile } from "./manifest/schema.js";
export { parseManifest } from "./manifest/io.js";
export {
  readArchive,
  hostileEntryReason,
  MAX_ENTRY_DEPTH,
  MAX_ENTRY_PATH_BYTES,
  type ArchiveEntryInfo,
} from "./archive/reader.js";
export type { ArtifactEncryptor, ArtifactDecryptor } from "./archive/encryption.js";
export { formatSnapshotId, parseSnapshotId, compareSnapshotIds } from "./repository/ids.js";
export {
  openRepository,
  type Repository,
  listSnapshots,
  listSnapshotsIn,
  scanSnapshots,
  scanSnapshotsIn,
  backupRootStorage,
  findSnapshot,
  deleteSnapshot,
  chainOf,
  artifactNames,
  type SnapshotRef,
  type DamagedSnapshot,
  type FoundSnapshot,
} from "./repository/repository.js";
export {
  checkSnapshotChecksum,
  expectedChecksum,
  parseChecksumFile,
  formatChecksumLine,
  type ChecksumState,
} from "./repository/checksum.js";
export {
  planSnapshotContents,
  type SnapshotContents,
  type PathDecision,
  type PathRule,
} from "./snapshot/plan.js";
export {
  createSnapshot,
  isAcknowledged,
  type CreateSnapshotOptions,
  type SnapshotResult,
  type SnapshotKind,
  type SnapshotProgress,
  type SecretAcknowledgement,
  type SnapshotRedaction,
} from "./snapshot/create.js";
export { DEFAULT_GZIP_LEVEL } from "./archive/writer.js";
export {
  defaultScanLane,
  prestartScanWorker,
  inlineScanLane,
  workerScanLane,
  ScanWorkerFailed,
  WORKER_SCAN_BYTES,
  type ScanLane,
  type FileScan,
} from "./snapshot/scan-lane.js";
export { verifySnapshots, findFallback, checkChain, type SnapshotVerification } from "./restore/verify.js";
export { materializeChain } from "./restore/materialize.js";
export {
  restoreSnapshot,
  workDir,
  type RestoreOptions,
  type RestoreResult,
  type RestorePlan,
  type ExternalDoctorResult,
} from "./restore/restore.js";
export { rollbackRestore, type RollbackResult } from "./restore/rollback.js";
export { unblockContext, type UnblockOptions, type UnblockResult } from "./restore/unblock.js";
export {
  recoverContext,
  contextsWithJournal,
  hasJournal,
  journalPath,
  readJournal,
  type RecoveryResult,
  type SwapJournal,
  type SwapStep,
} from "./context/journal.js";
export {
  restoreScope,
  type RestoreScope,
  type RestoreScopeMode,
  type RestoreChanges,
} from "./restore/scope.js";
export { inspectVault, recipientFingerprint, type VaultReport, type TrustStore } from "./restore/vault.js";
export { runDoctor, type DoctorReport, type DoctorCheck } from "./validate/doctor.js";
export {
  listEvents,
  readEventLog,
  normaliseEvent,
  redactForOutput,
  type EventRecord,
} from "./validate/events.js";
export {
  findGitRoot,
  nearestExisting,
  workTreeOf,
  allowRepoStateFrom,
  assertOutsideWorkTree,
  assertSafeLocations,
  assertIdentityLocation,
  type GuardedLocation,
} from "./policy/work-tree.js";
export {
  readBlock,
  writeBlock,
  writeBlockIn,
  clearBlock,
  BLOCK_FILE,
  type BlockRecord,
} from "./records/block.js";
export { writeIncident, listRecords, newIncidentRecord, type IncidentRecord } from "./records/incident.js";
export { appendAuditEvent } from "./records/audit.js";
export { TOOL_NAME, TOOL_VERSION } from "./version.js";
export { isWithin, contextDir, contextsDir } from "./util/paths.js";
export { createIdentityFile } from "./archive/identity.js";
export {
  ageEncryptor,
  ageDecryptor,
  parseRecipients,
  parseIdentities,
  checkIdentities,
  validateRecipient,
  generateIdentityFile,
  recipientOf,
} from "./archive/age.js";
export { acquireContextLock, withContextLock, type LockOwner, type HeldLock } from "./context/lock.js";
export {
  listContexts,
  listStateContexts,
  listBackupContexts,
  type ListContextsOptions,
} from "./context/contexts.js";
export {
  withContext,
  type ContextSession,
  type WithContextOptions,
  type ContextCallOptions,
  type ContextLockOptions,
} from "./context/session.js";
export {
  planRetention,
  isoWeek,
  DEFAULT_RETENTION,
  type RetentionPolicy,
  type RetentionPlan,
  type RetentionSnapshot,
} from "./retention/plan.js";
export { pruneSnapshots, type PruneResult } from "./retention/prune.js";
export {
  decideTick,
  isContextFolderName,
  INCREMENTAL_AFTER_MS,
  type TickAction,
} from "./snapshot/schedule.js";
export {
  runTick,
  type TickOptions,
  type TickOutcome,
  type TickResult,
  type SharedTick,
} from "./snapshot/tick.js";
export {
  runDrill,
  drillStatus,
  nextDrillDue,
  quarterStart,
  type DrillResult,
  type DrillStatus,
} from "./governance/drill.js";
export {
  parseTargetUrl,
  ObjectNotFoundError,
  stagedKey,
  isStagedKey,
  stagedMismatch,
  type ObjectStorage,
  type StorageFlags,
  type StagedObject,
  type StoredObject,
  type PutOptions,
  type PutResult,
  type Immutability,
  type TargetSpec,
  type CreateOnlyResult,
} from "./repository/storage.js";
export { LocalStorage, type LocalStorageOptions } from "./repository/drivers/local.js";
export {
  openTarget,
  registerStorageDriver,
  type OpenTargetOptions,
  type StorageDriverFactory,
} from "./repository/targets.js";
export { HashingStream, sha256Hex } from "./util/hash.js";
export {
  pushOffsite,
  listOffsite,
  verifyOffsite,
  pruneOffsite,
  contextsAtTarget,
  offsiteAfterTick,
  type OffsitePruneResult,
  type OffsiteRootPrune,
  type TickOffsiteResult,
  fetchFromOffsite,
  fetchChainFromOffsite,
  extendLocks,
  recordedCopies,
  rootView,
  targetWarnings,
  retentionHorizonDays,
  DEFAULT_OFFSITE_RETENTION,
  type OffsiteTarget,
  type OffsiteCopy,
  type PushResult,
  type OffsiteEntry,
  type OffsiteVerification,
  type DataSubset,
  type OffsiteRestorePlan,
} from "./offsite/offsite.js";
export {
  ensureRepositoryIdentity,
  readRepositoryIdentity,
  REPOSITORY_FILE,
  type RepositoryIdentity,
} from "./repository/identity.js";
export {
  FUTURE_SKEW_MS,
  isFromTheFuture,
  presentSnapshots,
  futureSnapshots,
  futureSkippedWarning,
} from "./repository/timeline.js";
export {
  CHEAP_REHASH_BYTES,
  DEEP_CHECK_EVERY_MS,
  VERIFIED_CACHE_NAME,
  verifyChainCached,
} from "./repository/chain-check.js";
export {
  contextStatus,
  fleetContexts,
  recordTickOutcome,
  readTickRecord,
  FULL_MAX_AGE_MS,
  OFFSITE_GRACE_MS,
  type ContextStatus,
  type OffsiteTargetStatus,
  type TickRecord,
} from "./governance/status.js";
export {
  listSnapshotFiles,
  dumpSnapshotFile,
  diffSnapshots,
  findInSnapshots,
  type SnapshotFileEntry,
  type DiffEntry,
  type SnapshotDiff,
  type FoundCopy,
} from "./snapshot/inspect.js";
export {
  acquireLease,
  probeConditionalWrites,
  readLeaseState,
  readFencedLog,
  leaseLost,
  Lease,
  DEFAULT_LEASE_TTL_MS,
  MIN_LEASE_TTL_MS,
  type LeaseOptions,
  type LeaseHolder,
  type LeaseState,
  type LogEntry,
} from "./repository/lease.js";
export {
  writeHostStatus,
  readFleetStatus,
  DEFAULT_HOST_STALE_AFTER_MS,
  type HostStatus,
  type HostContextStatus,
  type FleetHost,
  type FleetStatus,
} from "./repository/fleet-status.js";
export {
  pruneShared,
  hideMarked,
  listMarks,
  DEFAULT_DELETE_AFTER_MS,
  type SharedPruneResult,
} from "./retention/shared-prune.js";
export { listCommittedSnapshots } from "./repository/committed.js";
