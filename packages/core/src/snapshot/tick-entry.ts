// @paas-backup/core/tick: the whole cron tick for SDK callers (decision, snapshot, prune, offsite
// hook, status record) and the pure decision it makes per context.
export { runTick, type TickOptions, type TickOutcome, type TickResult, type SharedTick } from "./tick.js";
export { decideTick, isContextFolderName, INCREMENTAL_AFTER_MS, type TickAction } from "./schedule.js";
