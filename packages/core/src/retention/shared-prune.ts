import type { FileSystem } from "../fs/types.js";
import { validateContextName } from "../policy/context.js";
import { pruneSnapshots } from "./prune.js";
import type { RetentionPlan, RetentionPolicy } from "./plan.js";
import { UsageError } from "../errors.js";
import { chainOf, deleteSnapshot, listSnapshotsIn } from "../repository/repository.js";
import type { Lease } from "../repository/lease.js";
import type { ObjectStorage } from "../repository/storage.js";
import { appendHistoryLine } from "../repository/history.js";

/**
 * Deletes in two phases in a repository several hosts share: prune first *marks* what retention
 * drops (`marks/<context>/<id>`, created create-only; its Last-Modified is the mark's time on the
 * server's clock) and removes it only once the mark is `deleteAfterMs` old. Meanwhile the
 * snapshot is gone from listings through `hideMarked` (so no new incremental takes it as its
 * parent), but its objects stay: a restore that listed it before the mark reads it to the end.
 * A mark that a live snapshot's chain still needs when it falls due (a pruner that paused and
 * marked late) is dropped, never acted on.
 */
export const DEFAULT_DELETE_AFTER_MS = 24 * 3_600_000;

const markPrefix = (context: string) => `marks/${context}/`;

/** id -> when it was marked (server time) */
export async function listMarks(storage: ObjectStorage, context: string): Promise<Map<string, Date | null>> {
  const marks = new Map<string, Date | null>();
  for await (const o of storage.list(markPrefix(context), { shallow: true, keysOnly: true }))
    marks.set(o.key.slice(markPrefix(context).length), o.lastModified);
  return marks;
}

/** The repository as ticks and new restores must see it: marked snapshots are not listed (get and head still reach them). */
export function hideMarked(
  storage: ObjectStorage,
  context: string,
  marked: ReadonlySet<string>,
): ObjectStorage {
  const hidden = (key: string) => {
    if (!key.startsWith(`${context}/`)) return false;
    const name = key.slice(context.length + 1);
    const dot = name.indexOf(".");
    return dot > 0 && marked.has(name.slice(0, dot));
  };
  return new Proxy(storage, {
    get(target, prop, receiver) {
      if (prop === "list")
        return async function* (prefix: string, options?: { shallow?: boolean; keysOnly?: boolean }) {
          for await (const o of target.list(prefix, options)) if (!hidden(o.key)) yield o;
        };
      const value = Reflect.get(target, prop, receiver) as unknown;
      return typeof value === "function" ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
}

/** The reason retention gave when it marked the snapshot (null for a mark without one). */
async function markReason(storage: ObjectStorage, context: string, id: string): Promise<string | null> {
  try {
    const chunks: Buffer[] = [];
    for await (const c of await storage.get(`${markPrefix(context)}${id}`)) chunks.push(c as Buffer);
    const mark = JSON.parse(Buffer.concat(chunks).toString("utf8")) as { reason?: unknown };
    return typeof mark.reason === "string" ? mark.reason : null;
  } catch {
    return null;
  }
}

export interface SharedPruneResult {
  context: string;
  /** what retention keeps and drops, as prune's plan (the marked snapshots already left out) */
  plan: RetentionPlan;
  /** newly marked by this run */
  marked: string[];
  /** marks that fell due: the snapshots' objects are removed */
  removed: string[];
  /** marks dropped because a live snapshot's chain needs them */
  unmarked: string[];
  /** marks not due yet, with when they are */
  waiting: { id: string; dueAt: string }[];
}

export async function pruneShared(options: {
  fs: FileSystem;
  /** the folder of the context session the planning prune opens (its lock); nothing of the repository is written there */
  scratch: string;
  storage: ObjectStorage;
  /** the context's lease, held by the caller (with the maintenance lease) */
  lease: Lease;
  context: string;
  policy?: Partial<RetentionPolicy>;
  /** snapshots tagged with any of these are kept beyond the policy's slots */
  keepTags?: readonly string[];
  clock: () => Date;
  deleteAfterMs?: number;
  /**
   * Called before a due snapshot's objects are removed, with the reason retention gave when it
   * was marked: the evidence is written first (issue 24), so an interrupted removal is seen. By
   * default the removal is a line of the bucket's prune history (appendHistoryLine, where `storage.url`).
   */
  beforeRemove?: (removal: { id: string; kind: "full" | "incremental"; reason: string }) => Promise<void>;
}): Promise<SharedPruneResult> {
  const context = validateContextName(options.context);
  const { storage, lease } = options;
  if (lease.name !== `context/${context}`)
    throw new UsageError(
      "PAAS_BACKUP_INVALID_ARGUMENT",
      `prune of ${context} under the lease ${lease.name}`,
      {
        remediation: `Take the lease context/${context} first.`,
        stage: "prune",
      },
    );
  const deleteAfterMs = options.deleteAfterMs ?? DEFAULT_DELETE_AFTER_MS;
  const marks = await listMarks(storage, context);
  const result = await markDue(options, context, marks);
  if (marks.size === 0) return result;
  // Before removing anything, the lease must still be ours (a renewal that finds a later epoch throws).
  await lease.renew();
  await sweepMarked(options, context, marks, deleteAfterMs, result);
  return result;
}

type PruneSharedOptions = Parameters<typeof pruneShared>[0];

/**
 * Phase 1: plan as prune does, with the marked snapshots hidden, and mark (create-only, with the
 * lease's epoch and retention's reason) each snapshot the plan removes.
 */
async function markDue(
  options: PruneSharedOptions,
  context: string,
  marks: Awaited<ReturnType<typeof listMarks>>,
): Promise<SharedPruneResult> {
  const { storage, lease } = options;
  const plan = await pruneSnapshots({
    fs: options.fs,
    backupRoot: options.scratch,
    repository: hideMarked(storage, context, new Set(marks.keys())),
    context,
    ...(options.policy ? { policy: options.policy } : {}),
    ...(options.keepTags?.length ? { keepTags: options.keepTags } : {}),
    dryRun: true,
    clock: options.clock,
  });
  const result: SharedPruneResult = {
    context,
    plan: plan.plan,
    marked: [],
    removed: [],
    unmarked: [],
    waiting: [],
  };
  for (const { id, reason } of plan.plan.remove) {
    const made = await storage.createOnly!(
      `${markPrefix(context)}${id}`,
      Buffer.from(`${JSON.stringify({ epoch: lease.epoch, lease: lease.name, reason })}\n`),
    );
    if (made.created) result.marked.push(id);
  }
  return result;
}

/**
 * Phase 2, for the marks found at the start: a mark on a snapshot some unmarked chain needs is
 * dropped; one younger than the delete delay (by the server's clock) waits; a due one is
 * recorded, its snapshot removed, then its mark. Newest first, as prune does: an interruption
 * never leaves an incremental without its parent.
 */
async function sweepMarked(
  options: PruneSharedOptions,
  context: string,
  marks: Awaited<ReturnType<typeof listMarks>>,
  deleteAfterMs: number,
  result: SharedPruneResult,
): Promise<void> {
  const { storage } = options;
  const now = (await storage.serverTime!()).getTime();
  const all = await listSnapshotsIn(storage, context);
  const markedNow = new Set([...marks.keys(), ...result.marked]);
  const needed = new Set<string>();
  for (const s of all.filter((s) => !markedNow.has(s.id)))
    for (const link of chainOf(s, all).chain) needed.add(link.id);
  const byId = new Map(all.map((s) => [s.id, s]));
  for (const [id, at] of [...marks].sort((a, b) => b[0].localeCompare(a[0]))) {
    if (needed.has(id)) {
      await storage.delete(`${markPrefix(context)}${id}`);
      result.unmarked.push(id);
      continue;
    }
    const dueAt = (at?.getTime() ?? now) + deleteAfterMs;
    if (now < dueAt) {
      result.waiting.push({ id, dueAt: new Date(dueAt).toISOString() });
      continue;
    }
    const ref = byId.get(id);
    if (ref) {
      const removal = {
        id,
        kind: ref.kind,
        reason: (await markReason(storage, context, id)) ?? "marked by retention",
      };
      if (options.beforeRemove) await options.beforeRemove(removal);
      else
        await appendHistoryLine(storage, context, "prune", {
          schema: "paas-backup/history-prune@1",
          at: options.clock().toISOString(),
          context,
          ...removal,
          where: storage.url,
        });
    }
    if (ref) await deleteSnapshot(ref);
    await storage.delete(`${markPrefix(context)}${id}`);
    result.removed.push(id);
  }
}
