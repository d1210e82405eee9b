import { DEFAULT_RETENTION, type RetentionPolicy } from "@paas-backup/core/retention";
import type { Runtime } from "../runtime.js";

export type KeepFlags = {
  keepHourly?: number;
  keepDaily?: number;
  keepWeekly?: number;
  keepMonthly?: number;
};

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
