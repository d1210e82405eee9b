import type { FileSystem } from "../fs/types.js";
import { inContext, type ContextCallOptions } from "../context/session.js";
import { validateContextName } from "../policy/context.js";
import { backupRootStorage, chainOf, openRepository, type SnapshotRef } from "../repository/repository.js";
import { presentSnapshots } from "../repository/timeline.js";
import type { ObjectStorage } from "../repository/storage.js";
import { checkSnapshotChecksum } from "../repository/checksum.js";
import { appendHistoryLine } from "../repository/history.js";
import { planRetention, type RetentionPlan, type RetentionPolicy } from "./plan.js";

export interface PruneResult {
  context: string;
  dryRun: boolean;
  plan: RetentionPlan;
  removed: string[];
  /** half-written leftovers of interrupted runs that were swept */
  swept: string[];
}

/**
 * Apply a retention plan. A snapshot's artifact goes first (once it is gone, `list` no longer
 * shows the snapshot), then its checksum and manifest; snapshots go newest first, so an
 * interruption never leaves a kept or listed incremental without its parent.
 */
export interface PruneOptions extends ContextCallOptions {
  fs: FileSystem;
  backupRoot: string;
  /** the repository to prune; by default the backup root through the local driver */
  repository?: ObjectStorage;
  context: string;
  policy?: Partial<RetentionPolicy>;
  /** snapshots tagged with any of these are kept beyond the policy's slots */
  keepTags?: readonly string[];
  dryRun?: boolean;
  clock: () => Date;
}

export async function pruneSnapshots(options: PruneOptions): Promise<PruneResult> {
  // In the context's session (locked); prune touches the repository only, so there is no state root to recover.
  return inContext({ ...options, command: "prune" }, () => pruneInSession(options));
}

async function pruneInSession(options: PruneOptions): Promise<PruneResult> {
  const repo = options.repository ?? backupRootStorage(options.fs, options.backupRoot);
  const context = validateContextName(options.context);
  const repository = openRepository(repo);
  const all = await repository.snapshots(context);
  const now = options.clock();
  const present = presentSnapshots(all, now);
  // Never removed: the newest verified full, and the newest restore point with its chain. Both are
  // found by checking checksums newest first, each link once, until one verifies.
  const verified = new Map<string, boolean>();
  const verifies = async (s: SnapshotRef): Promise<boolean> => {
    if (!verified.has(s.id)) verified.set(s.id, (await checkSnapshotChecksum(s)).state === "verified");
    return verified.get(s.id)!;
  };
  for (const s of [...present].reverse()) if (s.kind === "full" && (await verifies(s))) break;
  for (const s of [...present].reverse()) {
    const { chain, missing } = chainOf(s, all);
    let sound = !missing;
    for (const link of [...chain].reverse()) if (sound && !(await verifies(link))) sound = false;
    if (sound) break;
  }
  const plan = planRetention({
    snapshots: all.map((s) => ({
      id: s.id,
      time: s.time,
      kind: s.kind,
      ...(s.parent ? { parent: s.parent.id } : {}),
      ...(verified.has(s.id) ? { verified: verified.get(s.id)! } : {}),
      ...(s.manifest?.tags?.length ? { tags: s.manifest.tags } : {}),
    })),
    ...(options.policy ? { policy: options.policy } : {}),
    ...(options.keepTags?.length ? { keepTags: options.keepTags } : {}),
    now,
  });
  const removed: string[] = [];
  const swept: string[] = [];
  if (!options.dryRun) {
    const byId = new Map(all.map((s) => [s.id, s]));
    for (const { id, reason } of plan.remove) {
      // Evidence first (issue 24): a deletion recorded but interrupted leaves the snapshot listed,
      // which a report sees; a deletion done but unrecorded would leave no trace at all.
      // In the repository itself (issue 19 §2): the backup root's history/prune.jsonl on a folder,
      // an object per line under history/ in a bucket.
      await appendHistoryLine(repo, context, "prune", {
        schema: "paas-backup/history-prune@1",
        at: options.clock().toISOString(),
        context,
        id,
        kind: byId.get(id)!.kind,
        reason,
        where: options.repository ? options.repository.url : "local",
      });
      // plan.remove is newest first already
      await repository.delete(byId.get(id)!);
      removed.push(id);
    }
    swept.push(...(await sweepLeftovers(repo, context, now)));
  }
  return { context, dryRun: options.dryRun === true, plan, removed, swept };
}

/** Leftovers of interrupted runs (an hour old, so a running snapshot is never touched): staged objects, and sidecars whose artifact never landed or was pruned. */
async function sweepLeftovers(repo: ObjectStorage, context: string, now: Date): Promise<string[]> {
  const prefix = `${context}/`;
  const cutoff = new Date(now.getTime() - 3600_000);
  const swept = (await repo.sweepStaged(prefix, cutoff)).map((key) => key.slice(prefix.length));
  const objects = new Map<string, Date | null>();
  for await (const o of repo.list(prefix, { shallow: true }))
    objects.set(o.key.slice(prefix.length), o.lastModified);
  for (const [name, lastModified] of objects) {
    const m = /^(.+?)\.(?:manifest\.json|tar\.gz(?:\.age)?\.sha256)(?:\.sig)?$/.exec(name);
    const orphan = m && !objects.has(`${m[1]}.tar.gz`) && !objects.has(`${m[1]}.tar.gz.age`);
    if (orphan && lastModified && lastModified < cutoff) {
      await repo.delete(`${prefix}${name}`);
      swept.push(name);
    }
  }
  return swept.sort();
}
