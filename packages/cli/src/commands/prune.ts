import { pruneSnapshots } from "@paas-backup/core/retention";
import { withContext } from "@paas-backup/core/context";
import type { Runtime } from "../runtime.js";
import { retentionPolicy, type KeepFlags } from "../options/retention.js";
import { printEnvelope } from "../envelope.js";
import { table } from "../render/text.js";
import { sessionOptions } from "../options/lock.js";
import { requireContext } from "../options/context.js";

export async function pruneCommand(
  rt: Runtime,
  flags: KeepFlags & { context?: string; dryRun?: boolean; keepTag?: string[] },
): Promise<number> {
  const context = requireContext(flags.context);
  const policy = retentionPolicy(rt, flags);
  if (rt.shared) return sharedPrune(rt, context, policy, flags);
  const result = await withContext(sessionOptions(rt, context, "prune"), (session) =>
    pruneSnapshots({
      session,
      fs: rt.fs,
      backupRoot: rt.backupRoot,
      context,
      policy,
      // --keep-tag adds to the config file's retention.keepTags
      keepTags: [...(rt.config.retention.keepTags ?? []), ...(flags.keepTag ?? [])],
      dryRun: flags.dryRun === true,
      clock: rt.clock,
    }),
  );
  if (rt.json) {
    printEnvelope(rt, {
      ok: true,
      context,
      mode: flags.dryRun ? "dry-run" : "live",
      data: [{ ...result, policy }],
    });
    return 0;
  }
  rt.write(
    table([
      ["ID", "ACTION", "WHY"],
      ...result.plan.keep.map((k) => [k.id, "keep", k.reasons.join(", ")]),
      ...result.plan.remove.map((r) => [r.id, flags.dryRun ? "would remove" : "removed", r.reason]),
    ]),
  );
  rt.write(
    `policy: ${policy.hourly} hourly, ${policy.daily} daily, ${policy.weekly} weekly, ${policy.monthly} monthly${flags.dryRun ? " (dry run: nothing removed)" : ""}\n`,
  );
  return 0;
}

/**
 * prune of an s3:// root: maintenance work, under the bucket's `maintenance` lease (any host takes
 * it over once it lapses, so retiring a host never stops garbage collection) and the context's
 * lease. Deletes go in two phases: what retention drops is marked now and removed once the mark
 * is sharedRoot.deleteAfterSeconds old (a restore reading it meanwhile reads it to the end). Each
 * removal is written to the bucket's prune history before the objects go.
 */
async function sharedPrune(
  rt: Runtime,
  context: string,
  policy: ReturnType<typeof retentionPolicy>,
  flags: { dryRun?: boolean; keepTag?: string[] },
): Promise<number> {
  const shared = await import("../ops/shared.js");
  const { pruneShared } = await import("@paas-backup/core/retention");
  const keepTags = [...(rt.config.retention.keepTags ?? []), ...(flags.keepTag ?? [])];
  const where = rt.shared!.url;
  const result = flags.dryRun
    ? {
        ...(await pruneSnapshots({
          fs: rt.fs,
          backupRoot: rt.backupRoot,
          repository: await shared.committedView(rt.shared!, context),
          context,
          policy,
          keepTags,
          dryRun: true,
          clock: rt.clock,
        })),
        marked: [] as string[],
        unmarked: [] as string[],
        swept: [] as string[],
        waiting: [] as { id: string; dueAt: string }[],
      }
    : await shared.withLease(rt, "maintenance", "prune", () =>
        withContext(sessionOptions(rt, context, "prune"), () =>
          shared.withLease(rt, `context/${context}`, "prune", async (lease) => ({
            ...(await pruneShared({
              fs: rt.fs,
              scratch: rt.backupRoot,
              // retention judges the committed snapshots only (marked ones stay, prune acts on its marks)
              storage: await shared.committedView(rt.shared!, context, "show"),
              lease,
              context,
              policy,
              keepTags,
              clock: rt.clock,
              deleteAfterMs: rt.shared!.deleteAfterMs,
              beforeRemove: ({ id, kind, reason }) =>
                shared.appendSharedHistory(rt, context, "prune", {
                  schema: "paas-backup/history-prune@1",
                  at: rt.clock().toISOString(),
                  context,
                  id,
                  kind,
                  reason,
                  where,
                }),
            })),
            swept: await shared.sweepShared(rt, context),
          })),
        ),
      );
  if (rt.json) {
    printEnvelope(rt, {
      ok: true,
      context,
      mode: flags.dryRun ? "dry-run" : "live",
      data: [
        {
          context,
          dryRun: flags.dryRun === true,
          plan: result.plan,
          removed: result.removed,
          marked: result.marked,
          unmarked: result.unmarked,
          waiting: result.waiting,
          swept: result.swept,
          policy,
        },
      ],
    });
    return 0;
  }
  const dueAt = new Map(result.waiting.map((w) => [w.id, w.dueAt]));
  rt.write(
    table([
      ["ID", "ACTION", "WHY"],
      ...result.plan.keep.map((k) => [k.id, "keep", k.reasons.join(", ")]),
      ...result.plan.remove.map((r) => [
        r.id,
        flags.dryRun ? "would mark" : result.marked.includes(r.id) ? "marked" : "marked before",
        r.reason,
      ]),
      ...result.removed.map((id) => [id, "removed", "its mark fell due"]),
      ...[...dueAt].map(([id, at]) => [id, "waiting", `marked; removed after ${at}`]),
      ...result.unmarked.map((id) => [id, "unmarked", "a live snapshot's chain needs it"]),
    ]),
  );
  rt.write(
    `policy: ${policy.hourly} hourly, ${policy.daily} daily, ${policy.weekly} weekly, ${policy.monthly} monthly; in ${where} a dropped snapshot is marked first and removed ${Math.round(rt.shared!.deleteAfterMs / 3_600_000)} h later${flags.dryRun ? " (dry run: nothing marked or removed)" : ""}\n`,
  );
  return 0;
}
