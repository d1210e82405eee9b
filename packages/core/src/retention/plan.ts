import { UsageError } from "../errors.js";
import { isFromTheFuture } from "../repository/timeline.js";
/**
 * planRetention: restic's `forget --keep-*` semantics, in UTC, as a pure function.
 * For each rule, walk snapshots newest first and keep the newest snapshot of each hour / day /
 * ISO week / month, for the N most recent such periods that have a snapshot. The daily, weekly
 * and monthly rules count full snapshots (an incremental is not a day's backup on its own); the
 * hourly rule counts all. Dependencies win: whatever a kept incremental needs is kept. Never
 * removed: the newest verified full, and the newest restore point (the newest snapshot, full or
 * incremental, that is not known to fail verification) with its chain: rules that count only
 * fulls must not delete the incremental taken minutes ago (issue 20 §2).
 *
 * With `now`, snapshots from the future (ahead of the clock: repository/timeline.ts) are kept, and
 * take no rule's period: the newest day, week and month are those the clock has reached.
 */
export interface RetentionSnapshot {
  id: string;
  time: string | Date;
  kind: "full" | "incremental";
  parent?: string | { id: string };
  /** false when the snapshot failed verification; unknown counts as verified */
  verified?: boolean;
  /** the operator's tags (`snapshot --tag`): a tag in keepTags keeps the snapshot beyond the slots */
  tags?: readonly string[];
}

export interface RetentionPolicy {
  hourly: number;
  daily: number;
  weekly: number;
  monthly: number;
}

export const DEFAULT_RETENTION: RetentionPolicy = { hourly: 24, daily: 7, weekly: 4, monthly: 3 };

/** How long the policy can keep a full at the latest: its longest rule (a month counted as 31 days). */
export function retentionHorizonMs(policy: RetentionPolicy): number {
  return Math.max(policy.daily, policy.weekly * 7, policy.monthly * 31) * 86_400_000;
}

export interface RetentionPlan {
  keep: { id: string; reasons: string[] }[];
  remove: { id: string; reason: string }[];
}

function pad(n: number, w = 2): string {
  return String(n).padStart(w, "0");
}

/** ISO 8601 week of a UTC date: the year that owns the week, and its number. */
export function isoWeek(d: Date): { year: number; week: number } {
  const t = new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate()));
  const dayNum = t.getUTCDay() || 7; // Monday 1 … Sunday 7
  t.setUTCDate(t.getUTCDate() + 4 - dayNum); // the Thursday of this week decides its year
  const yearStart = Date.UTC(t.getUTCFullYear(), 0, 1);
  const week = Math.ceil(((t.getTime() - yearStart) / 86_400_000 + 1) / 7);
  return { year: t.getUTCFullYear(), week };
}

type Rule = { name: keyof RetentionPolicy; label: string; bucket: (d: Date) => string; fullsOnly: boolean };

const RULES: Rule[] = [
  {
    name: "hourly",
    label: "hourly",
    fullsOnly: false,
    bucket: (d) =>
      `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}T${pad(d.getUTCHours())}`,
  },
  {
    name: "daily",
    label: "daily",
    fullsOnly: true,
    bucket: (d) => `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}`,
  },
  {
    name: "weekly",
    label: "weekly",
    fullsOnly: true,
    bucket: (d) => {
      const w = isoWeek(d);
      return `${w.year}-W${pad(w.week)}`;
    },
  },
  {
    name: "monthly",
    label: "monthly",
    fullsOnly: true,
    bucket: (d) => `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}`,
  },
];

function parentId(s: RetentionSnapshot): string | undefined {
  return typeof s.parent === "string" ? s.parent : s.parent?.id;
}

export function planRetention(input: {
  snapshots: readonly RetentionSnapshot[];
  policy?: Partial<RetentionPolicy>;
  /** snapshots with any of these tags are kept whatever the slots say (config retention.keepTags, prune --keep-tag) */
  keepTags?: readonly string[];
  /** the clock: snapshots ahead of it are kept and left out of the rules */
  now?: Date;
}): RetentionPlan {
  const policy = { ...DEFAULT_RETENTION, ...(input.policy ?? {}) };
  const items = input.snapshots.map((s, order) => ({
    s,
    order,
    time: s.time instanceof Date ? s.time : new Date(s.time),
  }));
  for (const it of items)
    if (Number.isNaN(it.time.getTime()))
      throw new UsageError("PAAS_BACKUP_INVALID_ARGUMENT", `snapshot ${it.s.id} has an invalid time`, {
        remediation: "Pass each snapshot's time as a Date or an ISO 8601 string.",
        stage: "plan",
      });
  // Newest first; identical times fall back to the id, then to input order, so the plan is deterministic.
  items.sort(
    (a, b) =>
      b.time.getTime() - a.time.getTime() ||
      (a.s.id < b.s.id ? 1 : a.s.id > b.s.id ? -1 : 0) ||
      b.order - a.order,
  );

  const reasons = new Map<string, string[]>();
  const addReason = (id: string, reason: string) => {
    const list = reasons.get(id) ?? [];
    if (!list.includes(reason)) list.push(reason);
    reasons.set(id, list);
  };

  const future = input.now ? items.filter((it) => isFromTheFuture(it.time, input.now!)) : [];
  for (const it of future)
    addReason(it.s.id, `from the future (ahead of the clock ${input.now!.toISOString()}): kept`);
  const present = items.filter((it) => !future.includes(it));

  for (const rule of RULES) {
    const limit = policy[rule.name];
    if (limit <= 0) continue;
    let last: string | null = null;
    let kept = 0;
    for (const it of present) {
      if (rule.fullsOnly && it.s.kind !== "full") continue;
      const bucket = rule.bucket(it.time);
      if (bucket === last) continue;
      last = bucket;
      addReason(it.s.id, `${rule.label} ${bucket}`);
      if (++kept >= limit) break;
    }
  }

  const keepTags = new Set(input.keepTags ?? []);
  if (keepTags.size)
    for (const it of items)
      for (const tag of it.s.tags ?? []) if (keepTags.has(tag)) addReason(it.s.id, `tag ${tag}`);

  const newestFull = present.find((it) => it.s.kind === "full" && it.s.verified !== false);
  if (newestFull) addReason(newestFull.s.id, "newest verified full");

  const byId = new Map(items.map((it) => [it.s.id, it.s]));
  // The newest restore point: the newest snapshot whose chain has every link and none known bad.
  const chainSound = (s: RetentionSnapshot): boolean => {
    const seen = new Set<string>();
    for (let cur: RetentionSnapshot | undefined = s; cur;) {
      if (cur.verified === false || seen.has(cur.id)) return false;
      seen.add(cur.id);
      if (cur.kind === "full") return true;
      const pid = parentId(cur);
      cur = pid ? byId.get(pid) : undefined;
    }
    return false;
  };
  const newestRestorePoint = present.find((it) => chainSound(it.s));
  if (newestRestorePoint) addReason(newestRestorePoint.s.id, "newest restore point");

  // Dependencies: every kept incremental keeps its chain back to its full.
  for (const id of [...reasons.keys()]) {
    let cur = byId.get(id);
    while (cur && cur.kind === "incremental") {
      const pid = parentId(cur);
      const parent = pid ? byId.get(pid) : undefined;
      if (!parent) break;
      addReason(parent.id, `needed by ${id}`);
      cur = parent;
    }
  }

  const keep: RetentionPlan["keep"] = [];
  const remove: RetentionPlan["remove"] = [];
  for (const it of items) {
    const r = reasons.get(it.s.id);
    if (r) keep.push({ id: it.s.id, reasons: r });
    else remove.push({ id: it.s.id, reason: "not kept by any rule" });
  }
  return { keep, remove };
}
