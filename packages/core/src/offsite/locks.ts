import { validateContextName } from "../policy/context.js";
import { parseSnapshotId } from "../repository/ids.js";
import { planRetention } from "../retention/plan.js";
import { readRecordIn, recordStoreOf, writeRecordIn, type OffsiteRecordsOptions } from "./record.js";
import { DEFAULT_OFFSITE_RETENTION, type OffsiteTarget } from "./types.js";

/**
 * kopia's --extend-object-locks: every copy the offsite retention still keeps gets its retain-until
 * moved to now + lock days once less than half of that is left, so a copy kept three months is
 * never unlocked on day 36. Copies retention will drop are left to expire.
 */
export async function extendLocks(
  options: OffsiteRecordsOptions & {
    context: string;
    target: OffsiteTarget;
    clock: () => Date;
  },
): Promise<{ extended: { id: string; retainUntil: string }[]; skipped: string | null }> {
  const { target } = options;
  const context = validateContextName(options.context);
  if (!target.objectLock)
    return { extended: [], skipped: `target ${target.name} has no objectLock configured` };
  const storage = target.storage;
  if (!storage.extendLock)
    return { extended: [], skipped: `${storage.url} cannot hold Object Lock retention` };
  const immutability = await storage.immutability();
  if (!immutability.enabled) return { extended: [], skipped: immutability.detail };
  const records = recordStoreOf(options);
  const record = await readRecordIn(records, context, target);
  const now = options.clock();
  const copies = Object.values(record.copies).filter((c) => !c.problem);
  const plan = planRetention({
    snapshots: copies.map((c) => ({ id: c.id, time: parseSnapshotId(c.id)!.time, kind: "full" as const })),
    policy: { ...DEFAULT_OFFSITE_RETENTION, ...(target.retention ?? {}) },
  });
  const kept = new Set(plan.keep.map((k) => k.id));
  const lockMs = target.objectLock.days * 86_400_000;
  const extended: { id: string; retainUntil: string }[] = [];
  for (const copy of copies) {
    if (!kept.has(copy.id)) continue;
    const until = copy.retainUntil ? Date.parse(copy.retainUntil) : 0;
    if (until - now.getTime() >= lockMs / 2) continue;
    const retainUntil = new Date(now.getTime() + lockMs);
    const base = copy.artifact.replace(/\.tar\.gz(\.age)?$/, "");
    for (const key of [copy.artifact, `${copy.artifact}.sha256`, `${base}.manifest.json`]) {
      if (key !== copy.artifact && !(await storage.head(key))) continue;
      await storage.extendLock(key, { mode: target.objectLock.mode, retainUntil });
    }
    copy.retainUntil = retainUntil.toISOString();
    copy.lockMode = target.objectLock.mode;
    record.copies[copy.id] = copy;
    await writeRecordIn(records, context, target, record);
    extended.push({ id: copy.id, retainUntil: copy.retainUntil });
  }
  return { extended, skipped: null };
}
