// @paas-backup/core/governance: restore drills and their status, a context's status and the tick
// record. The governance report is its own entry, @paas-backup/core/report.
export {
  runDrill,
  drillStatus,
  nextDrillDue,
  quarterStart,
  type DrillOptions,
  type DrillResult,
  type DrillStatus,
} from "./drill.js";
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
} from "./status.js";
