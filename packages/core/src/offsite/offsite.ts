/**
 * The offsite copy (policy §4.4), one file per concept: types (the target, a copy, the record),
 * roots (the roots/<id>/ layout at a target), record (what we copied, kept in the repository's storage),
 * checks (cheap per-copy checks and target warnings), push, locks (extend-locks), list, verify,
 * prune and fetch. This barrel is the folder's entry, @paas-backup/core/offsite.
 */
export { DEFAULT_OFFSITE_RETENTION, type OffsiteCopy, type OffsiteTarget } from "./types.js";
export { rootView } from "./roots.js";
export {
  recordedCopies,
  offsiteRecordsIn,
  recordStoreOf,
  OFFSITE_RECORDS_PREFIX,
  type OffsiteRecordsOptions,
} from "./record.js";
export { retentionHorizonDays, targetWarnings } from "./checks.js";
export { pushOffsite, type PushOffsiteOptions, type PushResult } from "./push.js";
export { encryptScratchDir, noRecipientRefusal, type PushSigner } from "./encrypt-on-push.js";
export { extendLocks } from "./locks.js";
export { listOffsite, type OffsiteEntry } from "./list.js";
export { verifyOffsite, type DataSubset, type OffsiteVerification } from "./verify.js";
export { pruneOffsite, contextsAtTarget, type OffsitePruneResult, type OffsiteRootPrune } from "./prune.js";
export { offsiteAfterTick, type TickOffsiteResult } from "./after-tick.js";
export {
  fetchChainFromOffsite,
  fetchFromOffsite,
  type FetchFromOffsiteOptions,
  type OffsiteRestorePlan,
} from "./fetch.js";
