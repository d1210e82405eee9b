import { pruneSnapshots, withContextLock, DEFAULT_RETENTION, type RetentionPolicy } from "@paas-backup/core";
import type { Runtime } from "../runtime.js";
import { printEnvelope, table } from "../output.js";
import { lockOptions, requireContext } from "./common.js";

type KeepFlags = { keepHourly?: number; keepDaily?: number; keepWeekly?: number; keepMonthly?: number };

/** The parser has already refused anything but whole numbers >= 0 (spec.ts wholeNumber). */
export function retentionPolicy(rt: Runtime, flags: KeepFlags): RetentionPolicy {
  const num = (v: number | undefined, fallback: number) => (v === undefined ? fallback : v);
  const base = { ...DEFAULT_RETENTION, ...rt.config.retention };
  return {
    hourly: num(flags.keepHourly, base.hourly),
    daily: num(flags.keepDaily, base.daily),
    weekly: num(flags.keepWeekly, base.weekly),
    monthly: num(flags.keepMonthly, base.monthly),
  };
}

export async function pruneCommand(
  rt: Runtime,
  flags: KeepFlags & { context?: string; dryRun?: boolean },
): Promise<number> {
  const context = requireContext(flags.context);
  const policy = retentionPolicy(rt, flags);
  const result = await withContextLock(lockOptions(rt, context, "prune"), () =>
    pruneSnapshots({
      fs: rt.fs,
      backupRoot: rt.backupRoot,
      context,
      policy,
      dryRun: flags.dryRun === true,
      clock: rt.clock,
    }),
  );
  if (rt.json) {
    printEnvelope(rt, {
      ok: true,
      context,
      mode: flags.dryRun ? "dry-run" : "live",
      data: [{ ...result, policy }],
    });
    return 0;
  }
  rt.write(
    table([
      ["ID", "ACTION", "WHY"],
      ...result.plan.keep.map((k) => [k.id, "keep", k.reasons.join(", ")]),
      ...result.plan.remove.map((r) => [r.id, flags.dryRun ? "would remove" : "removed", r.reason]),
    ]),
  );
  rt.write(
    `policy: ${policy.hourly} hourly, ${policy.daily} daily, ${policy.weekly} weekly, ${policy.monthly} monthly${flags.dryRun ? " (dry run: nothing removed)" : ""}\n`,
  );
  return 0;
}
