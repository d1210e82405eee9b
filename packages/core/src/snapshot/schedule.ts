import { futureSnapshots, presentSnapshots } from "../repository/timeline.js";

/**
 * What an hourly `tick` does for one context (policy §4): a full snapshot when the current UTC day
 * has none, else an incremental when the newest snapshot is older than 55 minutes (so an hourly
 * cron that drifts a little still takes one every hour), else nothing. Pure: the snapshots and
 * the time come in. Snapshots from the future (ahead of the clock: repository/timeline.ts) count
 * for nothing here: one dated tomorrow must not stop today's incrementals, and when every snapshot
 * is from the future (the clock was corrected backwards) a new full is taken.
 */
export type TickAction = "full" | "incremental" | "none";

export const INCREMENTAL_AFTER_MS = 55 * 60_000;

export function decideTick(
  all: readonly { time: Date; kind: "full" | "incremental" }[],
  now: Date,
): { action: TickAction; reason: string } {
  const snapshots = presentSnapshots(all, now);
  const ahead = futureSnapshots(all, now).length;
  const note = ahead ? `; ${ahead} snapshot(s) from the future (ahead of the clock) ignored` : "";
  const day = now.toISOString().slice(0, 10);
  const fullToday = snapshots.some((s) => s.kind === "full" && s.time.toISOString().slice(0, 10) === day);
  if (!fullToday) return { action: "full", reason: `no full snapshot yet for ${day} (UTC)${note}` };
  const newest = snapshots.reduce<Date | null>((acc, s) => (!acc || s.time > acc ? s.time : acc), null)!;
  const age = now.getTime() - newest.getTime();
  if (age >= INCREMENTAL_AFTER_MS)
    // Rounded: a snapshot taken an hour ago (plus or minus the second its id is cut to) is "60 min old".
    return { action: "incremental", reason: `newest snapshot is ${Math.round(age / 60_000)} min old${note}` };
  return { action: "none", reason: `newest snapshot is ${Math.floor(age / 60_000)} min old (< 55)${note}` };
}

export { isContextFolderName } from "../policy/context.js";
