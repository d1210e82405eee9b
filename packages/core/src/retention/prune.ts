import type { FileSystem } from "../fs/types.js";
import { validateContextName } from "../policy/context.js";
import { deleteSnapshot, listSnapshots } from "../repository/repository.js";
import { checkSnapshotChecksum } from "../repository/checksum.js";
import { contextBackupDir, join } from "../util/paths.js";
import { readdirOrEmpty } from "../util/atomic.js";
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
export async function pruneSnapshots(options: { fs: FileSystem; backupRoot: string; context: string; policy?: Partial<RetentionPolicy>; dryRun?: boolean; clock: () => Date }): Promise<PruneResult> {
  const { fs } = options;
  const context = validateContextName(options.context);
  const all = await listSnapshots(fs, options.backupRoot, context);
  // "The newest verified full is never removed": find it by checking fulls newest first.
  const verified = new Map<string, boolean>();
  for (const s of [...all].reverse()) {
    if (s.kind !== "full") continue;
    const ok = (await checkSnapshotChecksum(s)).state === "verified";
    verified.set(s.id, ok);
    if (ok) break;
  }
  const plan = planRetention({
    snapshots: all.map((s) => ({ id: s.id, time: s.time, kind: s.kind, ...(s.parent ? { parent: s.parent.id } : {}), ...(verified.has(s.id) ? { verified: verified.get(s.id)! } : {}) })),
    ...(options.policy ? { policy: options.policy } : {}),
  });
  const removed: string[] = [];
  const swept: string[] = [];
  if (!options.dryRun) {
    const byId = new Map(all.map((s) => [s.id, s]));
    for (const { id } of plan.remove) {
      // plan.remove is newest first already
      await deleteSnapshot(byId.get(id)!);
      removed.push(id);
    }
    swept.push(...(await sweepLeftovers(fs, options.backupRoot, context, options.clock())));
  }
  return { context, dryRun: options.dryRun === true, plan, removed, swept };
}

/** Partial files older than an hour, and sidecars whose artifact never landed or was pruned. */
async function sweepLeftovers(fs: FileSystem, backupRoot: string, context: string, now: Date): Promise<string[]> {
  const dir = contextBackupDir(backupRoot, context);
  const entries = await readdirOrEmpty(fs, dir);
  const names = new Set(entries.map((e) => e.name));
  const swept: string[] = [];
  for (const e of entries) {
    if (e.kind !== "file") continue;
    const path = join(dir, e.name);
    const old = now.getTime() - (await fs.lstat(path)).mtimeMs > 3600_000;
    const partial = e.name.startsWith(".") && e.name.endsWith(".partial");
    const m = /^(.+?)\.(?:manifest\.json|tar\.gz(?:\.age)?\.sha256)$/.exec(e.name);
    const orphan = m && !names.has(`${m[1]}.tar.gz`) && !names.has(`${m[1]}.tar.gz.age`);
    if ((partial || orphan) && old) {
      await fs.rm(path, { force: true });
      swept.push(e.name);
    }
  }
  return swept;
}
