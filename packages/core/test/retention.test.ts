import { describe, it, expect } from "vitest";
import { DEFAULT_RETENTION, planRetention, type RetentionSnapshot } from "../src/retention/index.js";
import type { RetentionPolicy } from "../src/index.js";

// ---- an independent oracle, written from the rules' wording, not from the implementation ----
function isoWeekOracle(d: Date): string {
  // ISO week-year: the year of the week's Thursday; week 1 holds January 4th.
  const day = Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate());
  const weekday = (new Date(day).getUTCDay() + 6) % 7; // Monday 0
  const thursday = new Date(day + (3 - weekday) * 86_400_000);
  const y = thursday.getUTCFullYear();
  const jan4 = Date.UTC(y, 0, 4);
  const jan4Monday = jan4 - ((new Date(jan4).getUTCDay() + 6) % 7) * 86_400_000;
  const week = Math.floor((day - weekday * 86_400_000 - jan4Monday) / (7 * 86_400_000)) + 1;
  return `${y}-W${String(week).padStart(2, "0")}`;
}
const bucketOf: Record<keyof RetentionPolicy, (d: Date) => string> = {
  hourly: (d) => d.toISOString().slice(0, 13),
  daily: (d) => d.toISOString().slice(0, 10),
  weekly: isoWeekOracle,
  monthly: (d) => d.toISOString().slice(0, 7),
};
function oracle(snaps: RetentionSnapshot[], policy: RetentionPolicy): Map<string, string[]> {
  const kept = new Map<string, string[]>();
  const t = (s: RetentionSnapshot) => new Date(s.time).getTime();
  for (const rule of ["hourly", "daily", "weekly", "monthly"] as const) {
    const pool = snaps.filter((s) => rule === "hourly" || s.kind === "full");
    const buckets = new Map<string, RetentionSnapshot>();
    for (const s of pool) {
      const b = bucketOf[rule](new Date(s.time));
      const cur = buckets.get(b);
      if (!cur || t(s) > t(cur) || (t(s) === t(cur) && s.id > cur.id)) buckets.set(b, s);
    }
    const newestBuckets = [...buckets.keys()].sort().reverse().slice(0, policy[rule]);
    for (const b of newestBuckets) {
      const id = buckets.get(b)!.id;
      kept.set(id, [...(kept.get(id) ?? []), `${rule} ${b}`]);
    }
  }
  return kept;
}

function rng(seed: number) {
  return () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
}

/** hourly snapshots, a full at the first snapshot of each UTC day, incrementals chained in between */
function generate(
  start: string,
  hours: number,
  opts: { gapChance?: number; extraPerHour?: number; seed?: number } = {},
): RetentionSnapshot[] {
  const rand = rng(opts.seed ?? 7);
  const out: RetentionSnapshot[] = [];
  let lastDay = "";
  let prev: string | undefined;
  for (let h = 0; h < hours; h++) {
    if (rand() < (opts.gapChance ?? 0)) continue;
    const per = 1 + (rand() < (opts.extraPerHour ?? 0) ? 2 : 0);
    for (let k = 0; k < per; k++) {
      const time = new Date(Date.parse(start) + h * 3600_000 + k * 600_000 + Math.floor(rand() * 60) * 1000);
      const day = time.toISOString().slice(0, 10);
      const id = `s${out.length.toString().padStart(6, "0")}`;
      const full = day !== lastDay;
      lastDay = day;
      out.push(
        full
          ? { id, time: time.toISOString(), kind: "full" }
          : { id, time, kind: "incremental", parent: prev! },
      );
      prev = id;
    }
  }
  return out;
}

function checkInvariants(snaps: RetentionSnapshot[], policy: RetentionPolicy) {
  const plan = planRetention({ snapshots: snaps, policy });
  const keep = new Map(plan.keep.map((k) => [k.id, k.reasons]));
  // every snapshot exactly once
  expect(plan.keep.length + plan.remove.length).toBe(snaps.length);
  expect(new Set([...plan.keep.map((k) => k.id), ...plan.remove.map((r) => r.id)]).size).toBe(snaps.length);
  // the rules keep exactly what the oracle keeps, with the same reasons
  const expected = oracle(snaps, policy);
  for (const [id, reasons] of expected) expect(keep.get(id), id).toEqual(expect.arrayContaining(reasons));
  for (const [id, reasons] of keep) {
    const ruleReasons = reasons.filter((r) => /^(hourly|daily|weekly|monthly) /.test(r));
    expect(ruleReasons.sort(), id).toEqual((expected.get(id) ?? []).sort());
  }
  // dependencies win: every kept incremental's chain is kept, with the reason
  const byId = new Map(snaps.map((s) => [s.id, s]));
  for (const id of keep.keys()) {
    let cur = byId.get(id)!;
    while (cur.kind === "incremental") {
      const parent = byId.get(cur.parent as string)!;
      expect(keep.get(parent.id), `${parent.id} needed by ${id}`).toBeDefined();
      expect(
        keep.get(parent.id)!.some((r) => r.startsWith("needed by ")),
        `${parent.id} says why`,
      ).toBe(true);
      cur = parent;
    }
  }
  // the newest full is never removed
  const newestFull = [...snaps]
    .filter((s) => s.kind === "full")
    .sort((a, b) => new Date(b.time).getTime() - new Date(a.time).getTime())[0];
  if (newestFull) expect(keep.get(newestFull.id)).toContain("newest verified full");
  // the newest snapshot (each one verifies here) is the newest restore point, whatever its kind
  const newest = [...snaps].sort((a, b) => new Date(b.time).getTime() - new Date(a.time).getTime())[0];
  if (newest && !snaps.some((s) => s.verified === false))
    expect(keep.get(newest.id)).toContain("newest restore point");
  // nothing kept without a reason
  for (const r of plan.keep) expect(r.reasons.length).toBeGreaterThan(0);
  return plan;
}

describe("planRetention (restic forget --keep-* semantics, UTC)", () => {
  const policy: RetentionPolicy = { hourly: 24, daily: 7, weekly: 4, monthly: 3 };

  it("a year of hourly snapshots keeps 24 hourly + 7 daily + 4 weekly + 3 monthly and their chains", () => {
    const snaps = generate("2026-01-01T00:05:00Z", 365 * 24);
    const plan = checkInvariants(snaps, policy);
    // Only the newest day's incrementals need chains; the total stays small and bounded.
    expect(plan.keep.length).toBeLessThanOrEqual(24 + 7 + 4 + 3 + 24);
    expect(plan.remove.length).toBeGreaterThan(8000);
  });

  it("holds with gaps, several snapshots per hour, and random policies", () => {
    for (let seed = 1; seed <= 25; seed++) {
      const r = rng(seed * 31);
      const snaps = generate(
        `2026-0${1 + (seed % 9)}-1${seed % 9}T0${seed % 10}:00:00Z`,
        24 * (20 + Math.floor(r() * 80)),
        { gapChance: 0.3, extraPerHour: 0.2, seed },
      );
      checkInvariants(snaps, {
        hourly: Math.floor(r() * 30),
        daily: Math.floor(r() * 10),
        weekly: Math.floor(r() * 6),
        monthly: Math.floor(r() * 5),
      });
    }
  });

  it("treats ISO week 53 across the year boundary as one week", () => {
    // 2026-12-28 (Mon) to 2027-01-03 (Sun) is ISO week 2026-W53.
    const snaps: RetentionSnapshot[] = [
      { id: "a", time: "2026-12-21T12:00:00Z", kind: "full" },
      { id: "b", time: "2026-12-29T12:00:00Z", kind: "full" },
      { id: "c", time: "2027-01-02T12:00:00Z", kind: "full" },
      { id: "d", time: "2027-01-04T12:00:00Z", kind: "full" },
    ];
    const plan = planRetention({ snapshots: snaps, policy: { hourly: 0, daily: 0, weekly: 3, monthly: 0 } });
    const reasons = Object.fromEntries(plan.keep.map((k) => [k.id, k.reasons]));
    expect(reasons.d).toEqual(["weekly 2027-W01", "newest verified full", "newest restore point"]);
    expect(reasons.c).toEqual(["weekly 2026-W53"]);
    expect(reasons.a).toEqual(["weekly 2026-W52"]);
    expect(plan.remove).toEqual([{ id: "b", reason: "not kept by any rule" }]);
    checkInvariants(snaps, { hourly: 0, daily: 0, weekly: 3, monthly: 0 });
  });

  it("is deterministic for identical times and keeps one per period", () => {
    const snaps: RetentionSnapshot[] = ["x1", "x3", "x2"].map((id) => ({
      id,
      time: new Date("2026-05-05T05:05:05Z"),
      kind: "full" as const,
    }));
    const plan = planRetention({ snapshots: snaps, policy: { hourly: 5, daily: 5, weekly: 5, monthly: 5 } });
    expect(plan.keep).toEqual([
      {
        id: "x3",
        reasons: [
          "hourly 2026-05-05T05",
          "daily 2026-05-05",
          "weekly 2026-W19",
          "monthly 2026-05",
          "newest verified full",
          "newest restore point",
        ],
      },
    ]);
    expect(plan.remove.map((r) => r.id)).toEqual(["x2", "x1"]);
  });

  it("counts only fulls for daily/weekly/monthly, and never removes the newest verified full", () => {
    const snaps: RetentionSnapshot[] = [
      { id: "f1", time: "2026-03-01T00:00:00Z", kind: "full" },
      { id: "f2", time: "2026-03-02T00:00:00Z", kind: "full", verified: false },
      { id: "i1", time: "2026-03-02T05:00:00Z", kind: "incremental", parent: "f2" },
    ];
    const plan = planRetention({ snapshots: snaps, policy: { hourly: 0, daily: 1, weekly: 0, monthly: 0 } });
    const reasons = Object.fromEntries(plan.keep.map((k) => [k.id, k.reasons]));
    expect(reasons.f2).toEqual(["daily 2026-03-02"]);
    // i1 restores nothing (its full fails verification): the newest restore point is f1
    expect(reasons.f1).toEqual(["newest verified full", "newest restore point"]);
    expect(plan.remove).toEqual([{ id: "i1", reason: "not kept by any rule" }]);
  });

  // Issue 20 §2: the policy's numbers (no hourly rule) removed a 23-minute-old incremental as "not
  // kept by any rule", since daily/weekly/monthly count only fulls.
  it("with the policy's numbers never removes the newest restore point nor the chain it needs", () => {
    const snaps: RetentionSnapshot[] = [
      { id: "f0", time: "2026-11-23T00:10:00Z", kind: "full" },
      { id: "f1", time: "2026-11-24T00:10:00Z", kind: "full" },
      { id: "i1", time: "2026-11-24T01:10:00Z", kind: "incremental", parent: "f1" },
      { id: "i2", time: "2026-11-24T02:10:00Z", kind: "incremental", parent: "i1" },
      { id: "i3", time: "2026-11-24T02:47:00Z", kind: "incremental", parent: "i2" },
    ];
    const policy = { hourly: 0, daily: 7, weekly: 4, monthly: 3 };
    const plan = planRetention({ snapshots: snaps, policy, now: new Date("2026-11-24T03:10:00Z") });
    const reasons = Object.fromEntries(plan.keep.map((k) => [k.id, k.reasons]));
    expect(reasons.i3).toEqual(["newest restore point"]);
    expect(reasons.i2).toEqual(["needed by i3"]);
    expect(reasons.i1).toEqual(["needed by i3"]);
    expect(plan.keep.map((k) => k.id).sort()).toEqual(["f0", "f1", "i1", "i2", "i3"]);
    expect(plan.remove).toEqual([]);
    checkInvariants(snaps, { ...DEFAULT_RETENTION, ...policy });
  });

  // Issue 20 §2: a snapshot dated ahead of the clock (a clock that jumped) took the newest day's
  // slot, so prune kept it as the newest full and deleted the real newest.
  it("keeps snapshots from the future, and judges the rest as if they were not there", () => {
    const snaps: RetentionSnapshot[] = [
      { id: "real-1", time: "2026-11-22T00:10:00Z", kind: "full" },
      { id: "real-2", time: "2026-11-23T00:10:00Z", kind: "full" },
      { id: "real-3", time: "2026-11-24T00:10:00Z", kind: "full" },
      { id: "ahead", time: "2027-02-24T00:10:00Z", kind: "full" },
    ];
    const plan = planRetention({
      snapshots: snaps,
      policy: { hourly: 0, daily: 2, weekly: 0, monthly: 0 },
      now: new Date("2026-11-24T06:00:00Z"),
    });
    const reasons = Object.fromEntries(plan.keep.map((k) => [k.id, k.reasons]));
    expect(reasons.ahead).toEqual(["from the future (ahead of the clock 2026-11-24T06:00:00.000Z): kept"]);
    expect(reasons["real-3"]).toEqual(["daily 2026-11-24", "newest verified full", "newest restore point"]);
    expect(reasons["real-2"]).toEqual(["daily 2026-11-23"]);
    expect(plan.remove).toEqual([{ id: "real-1", reason: "not kept by any rule" }]);
  });
});
