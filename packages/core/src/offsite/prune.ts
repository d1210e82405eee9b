import type { FileSystem } from "../fs/types.js";
import { parseSnapshotId } from "../repository/ids.js";
import { deleteSnapshot, type SnapshotRef } from "../repository/repository.js";
import { planRetention } from "../retention/plan.js";
import { listOffsite, type OffsiteEntry } from "./list.js";
import { readRecord, writeRecord } from "./record.js";
import { DEFAULT_OFFSITE_RETENTION, type OffsiteTarget } from "./types.js";

/** Offsite retention: its own policy over fulls; never deletes what is still under retention. */
export async function pruneOffsite(options: {
  fs: FileSystem;
  backupRoot: string;
  context: string;
  target: OffsiteTarget;
  clock: () => Date;
  dryRun?: boolean;
}): Promise<{ keep: { id: string; reasons: string[] }[]; remove: string[]; heldByLock: string[] }> {
  const { entries } = await listOffsite(options);
  // Only what is provably this root's: its own prefix, or old-layout copies it recorded. An
  // old-layout copy nobody here recorded may be another host's, and is left alone.
  const present = entries.filter(
    (e): e is OffsiteEntry & { snapshot: SnapshotRef } =>
      e.snapshot !== null && e.own && (e.root !== null || e.recorded !== null),
  );
  const plan = planRetention({
    snapshots: present.map((e) => ({ id: e.id, time: parseSnapshotId(e.id)!.time, kind: "full" as const })),
    policy: { ...DEFAULT_OFFSITE_RETENTION, ...(options.target.retention ?? {}) },
  });
  const now = options.clock().getTime();
  const remove: string[] = [];
  const heldByLock: string[] = [];
  const keep = [...plan.keep];
  const record = await readRecord(options.fs, options.backupRoot, options.context, options.target);
  for (const { id } of plan.remove) {
    const e = present.find((x) => x.id === id)!;
    if (e.immutableUntil && Date.parse(e.immutableUntil) > now) {
      heldByLock.push(id);
      keep.push({ id, reasons: [`retained until ${e.immutableUntil}`] });
      continue;
    }
    remove.push(id);
    if (!options.dryRun) {
      await deleteSnapshot(e.snapshot);
      delete record.copies[id];
      await writeRecord(options.fs, options.backupRoot, options.context, options.target, record);
    }
  }
  return { keep, remove, heldByLock };
}
