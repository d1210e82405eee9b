import { isContextFolderName } from "../policy/context.js";
import { parseSnapshotId } from "../repository/ids.js";
import { deleteSnapshot, type SnapshotRef } from "../repository/repository.js";
import { planRetention } from "../retention/plan.js";
import { listOffsite, type OffsiteEntry } from "./list.js";
import { readRecordIn, recordStoreOf, writeRecordIn, type OffsiteRecordsOptions } from "./record.js";
import { DEFAULT_OFFSITE_RETENTION, ROOTS, type OffsiteTarget } from "./types.js";

/** What offsite retention did with one backup root's copies of a context at a target. */
export interface OffsiteRootPrune {
  /** the backup root whose copies these are; null for the shared layout made before roots had identities */
  root: string | null;
  keep: { id: string; reasons: string[] }[];
  remove: string[];
  heldByLock: string[];
}

export interface OffsitePruneResult {
  /** this backup root's copies (and the old-layout copies it recorded), as before roots were judged apart */
  keep: { id: string; reasons: string[] }[];
  remove: string[];
  heldByLock: string[];
  /** the copies other backup roots (a lost disk's, another host's) left at the target, judged by the same rule */
  otherRoots: OffsiteRootPrune[];
}

/**
 * Offsite retention (issue 20 §2): the target's own policy over the copies the target holds,
 * judged by their snapshot dates, per context and per backup root. Nothing local is consulted:
 * a copy whose local full is gone is judged like any other (it may be the only one left), and
 * the copies of a root that is lost age out by the same rule instead of staying forever. A copy
 * under a write-once lock is kept until the lock expires; a copy from the future (ahead of the
 * clock) is kept. Old-layout copies (before roots had identities) are judged only when this root
 * recorded them: one nobody here recorded may be another host's.
 */
export async function pruneOffsite(
  options: OffsiteRecordsOptions & {
    context: string;
    target: OffsiteTarget;
    clock: () => Date;
    dryRun?: boolean;
  },
): Promise<OffsitePruneResult> {
  const { entries, root: ownRoot } = await listOffsite({ ...options, allRoots: true });
  const groups = new Map<string, (OffsiteEntry & { snapshot: SnapshotRef })[]>();
  for (const e of entries) {
    if (e.snapshot === null) continue;
    if (e.root === null && e.recorded === null) continue;
    const key = e.root ?? "";
    groups.set(key, [...(groups.get(key) ?? []), e as OffsiteEntry & { snapshot: SnapshotRef }]);
  }
  const now = options.clock();
  const policy = { ...DEFAULT_OFFSITE_RETENTION, ...(options.target.retention ?? {}) };
  const records = recordStoreOf(options);
  const record = await readRecordIn(records, options.context, options.target);
  const result: OffsitePruneResult = { keep: [], remove: [], heldByLock: [], otherRoots: [] };
  for (const [key, present] of [...groups].sort((a, b) => (a[0] < b[0] ? -1 : 1))) {
    const root = key === "" ? null : key;
    const own = root === null || root === ownRoot;
    const plan = planRetention({
      snapshots: present.map((e) => ({ id: e.id, time: parseSnapshotId(e.id)!.time, kind: "full" as const })),
      policy,
      now,
    });
    const out: OffsiteRootPrune = own
      ? { root, keep: result.keep, remove: result.remove, heldByLock: result.heldByLock }
      : { root, keep: [], remove: [], heldByLock: [] };
    out.keep.push(...plan.keep);
    for (const { id } of plan.remove) {
      const e = present.find((x) => x.id === id)!;
      if (e.immutableUntil && Date.parse(e.immutableUntil) > now.getTime()) {
        out.heldByLock.push(id);
        out.keep.push({ id, reasons: [`retained until ${e.immutableUntil}`] });
        continue;
      }
      out.remove.push(id);
      if (options.dryRun) continue;
      if (own) {
        // Recorded before the delete: push must not send back what retention removed (a full
        // kept at home by a tag or a chain would otherwise go out again after every prune), and a
        // crash after this leaves a copy the next prune removes, never one push re-sends.
        delete record.copies[id];
        record.removedByRetention = { ...record.removedByRetention, [id]: now.toISOString() };
        await writeRecordIn(records, options.context, options.target, record);
      }
      await deleteSnapshot(e.snapshot);
    }
    if (!own) result.otherRoots.push(out);
  }
  return result;
}

/**
 * Every context with copies at a target, under any backup root or in the old shared layout:
 * what `offsite prune --all-contexts` judges besides the contexts this host knows.
 */
export async function contextsAtTarget(target: OffsiteTarget): Promise<string[]> {
  const names = new Set<string>();
  for await (const o of target.storage.list("")) {
    const parts = o.key.split("/");
    const name =
      parts[0] === ROOTS
        ? parts.length >= 4
          ? parts[2]
          : undefined
        : parts.length >= 2
          ? parts[0]
          : undefined;
    if (name && isContextFolderName(name)) names.add(name);
  }
  return [...names].sort();
}
