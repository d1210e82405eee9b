// @paas-backup/core/retention: which snapshots a policy keeps (planRetention, pure), prune, and the
// shared prune of a bucket several hosts write to.
export {
  planRetention,
  isoWeek,
  DEFAULT_RETENTION,
  type RetentionPolicy,
  type RetentionPlan,
  type RetentionSnapshot,
} from "./plan.js";
export { pruneSnapshots, type PruneOptions, type PruneResult } from "./prune.js";
export {
  pruneShared,
  hideMarked,
  listMarks,
  DEFAULT_DELETE_AFTER_MS,
  type SharedPruneResult,
} from "./shared-prune.js";
