import { listSnapshotsIn, type SnapshotRef } from "./repository.js";
import { readFencedLog } from "./lease.js";
import { relocatedView, relocationMap, relocationsIn } from "./relocation.js";
import type { ObjectStorage } from "./storage.js";

/**
 * The snapshots of a context in a shared repository that count: listed there *and* committed
 * through the context's lease (`lease.commit({snapshot: id, ...})`) by a commit no later epoch
 * fenced out, each read where its newest committed relocation (a rotation) says. A writer that
 * paused past its lease may still have made its artifact visible before its commit was refused;
 * readers that go through this never see that snapshot.
 */
export async function listCommittedSnapshots(
  storage: ObjectStorage,
  context: string,
): Promise<SnapshotRef[]> {
  const committed = new Set<string>();
  const log = await readFencedLog(storage, `context/${context}`);
  for (const entry of log)
    if (entry.kind === "commit" && !entry.fenced && typeof entry.data.snapshot === "string")
      committed.add(entry.data.snapshot);
  const view = relocatedView(storage, relocationMap(relocationsIn(log)).current);
  return (await listSnapshotsIn(view, context)).filter((s) => committed.has(s.id));
}
