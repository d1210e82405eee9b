// @paas-backup/core/context: the session every core call that touches a context runs in (name,
// locations, lock, recover), the lock itself, the swap journal and its recovery, the context lister.
export {
  withContext,
  type ContextSession,
  type WithContextOptions,
  type ContextCallOptions,
  type ContextLockOptions,
} from "./session.js";
export { acquireContextLock, withContextLock, type LockOwner, type HeldLock } from "./lock.js";
export {
  recoverContext,
  contextsWithJournal,
  hasJournal,
  journalPath,
  readJournal,
  type RecoveryResult,
  type SwapJournal,
  type SwapStep,
} from "./journal.js";
export { listContexts, listStateContexts, listBackupContexts, type ListContextsOptions } from "./contexts.js";
