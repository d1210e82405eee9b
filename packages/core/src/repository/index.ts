// @paas-backup/core/repository: snapshots over any storage driver (openRepository), the storage
// contract and what a driver needs (staged keys, hashing), the local driver, target URLs and the
// driver registry, checksums, ids, the repository identity, the verified-chain cache, and the
// leases and fenced commits of several hosts sharing one bucket.
export { formatSnapshotId, parseSnapshotId, compareSnapshotIds } from "./ids.js";
export {
  openRepository,
  backupRootStorage,
  deleteSnapshot,
  chainOf,
  artifactNames,
  listSnapshots,
  listSnapshotsIn,
  scanSnapshots,
  scanSnapshotsIn,
  findSnapshot,
  type Repository,
  type SnapshotRef,
  type DamagedSnapshot,
  type FoundSnapshot,
} from "./repository.js";
export {
  checkSnapshotChecksum,
  expectedChecksum,
  parseChecksumFile,
  formatChecksumLine,
  type ChecksumState,
  type ChecksumCheck,
} from "./checksum.js";
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
  type StoredVersion,
  type VersionStart,
} from "./storage.js";
export { LocalStorage, type LocalStorageOptions } from "./drivers/local.js";
export {
  openTarget,
  registerStorageDriver,
  type OpenTargetOptions,
  type StorageDriverFactory,
} from "./targets.js";
export { HashingStream, sha256Hex } from "../util/hash.js";
export {
  ensureRepositoryIdentity,
  readRepositoryIdentity,
  ensureIdentityIn,
  readIdentityIn,
  parseRepositoryIdentity,
  REPOSITORY_FILE,
  type RepositoryIdentity,
} from "./identity.js";
export {
  FUTURE_SKEW_MS,
  isFromTheFuture,
  presentSnapshots,
  futureSnapshots,
  futureSkippedWarning,
} from "./timeline.js";
export {
  appendHistoryLine,
  readHistoryLines,
  historyLinesKey,
  historyObjectsPrefix,
  type HistoryStream,
  type HistoryLine,
  type TickHistoryLine,
  type PruneHistoryLine,
} from "./history.js";
export {
  CHEAP_REHASH_BYTES,
  DEEP_CHECK_EVERY_MS,
  VERIFIED_CACHE_NAME,
  verifiedCacheKey,
  verifyChain,
  verifyChainCached,
  type VerifyChainOptions,
} from "./chain-check.js";
export {
  acquireLease,
  probeConditionalWrites,
  readLeaseState,
  readFencedLog,
  readListedLog,
  listLog,
  readCheckpoint,
  leaseLost,
  Lease,
  DEFAULT_LEASE_TTL_MS,
  MIN_LEASE_TTL_MS,
  type LeaseOptions,
  type LeaseHolder,
  type LeaseState,
  type LogEntry,
  type LogCheckpoint,
  type LogListing,
} from "./lease.js";
export { compactLog, type CompactLogOptions, type CompactLogResult } from "./log-compaction.js";
export {
  writeHostStatus,
  readFleetStatus,
  DEFAULT_HOST_STALE_AFTER_MS,
  type HostStatus,
  type HostContextStatus,
  type FleetHost,
  type FleetStatus,
} from "./fleet-status.js";
export { listCommittedSnapshots } from "./committed.js";
export {
  relocatedView,
  relocationKey,
  relocationMap,
  relocationOf,
  relocationsIn,
  RELOCATIONS_FOLDER,
  type Relocation,
  type RelocationMap,
} from "./relocation.js";
