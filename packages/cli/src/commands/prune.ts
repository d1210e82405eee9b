import { pruneSnapshots } from "@paas-backup/core/retention";
import { ExitCode, PaasBackupError } from "@paas-backup/core/errors";
import { withContext } from "@paas-backup/core/context";
import type { Runtime } from "../runtime.js";
import { retentionPolicy, type KeepFlags } from "../options/retention.js";
import { printEnvelope } from "../envelope.js";
import { table } from "../render/text.js";
import { sessionOptions } from "../options/lock.js";
import { requireContext } from "../options/context.js";

export async function pruneCommand(
  rt: Runtime,
  flags: KeepFlags & { context?: string; allContexts?: boolean; dryRun?: boolean; keepTag?: string[] },
): Promise<number> {
  const policy = retentionPolicy(rt, flags);
  if (flags.allContexts) return pruneAll(rt, policy, flags);
  const context = requireContext(flags.context);
  if (rt.shared) return sharedPrune(rt, context, policy, flags);
  const result = await pruneFolder(rt, context, policy, flags);
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

function pruneFolder(
  rt: Runtime,
  context: string,
  policy: ReturnType<typeof retentionPolicy>,
  flags: { dryRun?: boolean; keepTag?: string[] },
) {
  return withContext(sessionOptions(rt, context, "prune"), (session) =>
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
}

/**
 * prune --all-contexts: every context of the state root and the backup root (with an s3:// root,
 * every context the fleet's hosts report, under one maintenance lease for the run). One entry of
 * `data` per context; a context that fails is named in its entry (`error`) and the others go on
 * (exit 7).
 */
async function pruneAll(
  rt: Runtime,
  policy: ReturnType<typeof retentionPolicy>,
  flags: { dryRun?: boolean; keepTag?: string[] },
): Promise<number> {
  const shared = rt.shared ? await import("../ops/shared.js") : null;
  const contexts = shared
    ? await (await import("../ops/fleet.js")).sharedFleetContexts(rt)
    : await (await import("../options/context-list.js")).fleetContexts(rt);
  const one = async (context: string) => {
    try {
      const r = shared
        ? await sharedPruneOne(rt, context, policy, flags)
        : await pruneFolder(rt, context, policy, flags);
      return { ...r, context, ok: true, error: null, policy };
    } catch (err) {
      if (!(err instanceof PaasBackupError)) throw err;
      return {
        context,
        ok: false,
        error: { code: err.code, message: err.message, remediation: err.remediation },
      };
    }
  };
  const run = async () => {
    const out = [];
    for (const context of contexts) out.push(await one(context));
    return out;
  };
  const data =
    shared && !flags.dryRun ? await shared.withLease(rt, "maintenance", "prune", run) : await run();
  const failed = data.filter((d) => !d.ok);
  if (rt.json)
    printEnvelope(rt, {
      ok: failed.length === 0,
      context: "",
      mode: flags.dryRun ? "dry-run" : "live",
      data,
    });
  else {
    rt.write(
      table([
        ["CONTEXT", "REMOVED", "MARKED", "KEPT", "ERROR"],
        ...data.map((d) =>
          d.ok && "plan" in d
            ? [
                d.context,
                String(d.removed.length),
                "marked" in d ? String(d.marked.length) : "-",
                String(d.plan.keep.length),
                "-",
              ]
            : [d.context, "-", "-", "-", d.error?.message ?? "-"],
        ),
      ]),
    );
    for (const d of failed)
      process.stderr.write(`${d.context}: ${d.error!.message}\n  ${d.error!.remediation}\n`);
  }
  return failed.length === 0 ? 0 : ExitCode.partial;
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
  const where = rt.shared!.url;
  const result = flags.dryRun
    ? await sharedPruneOne(rt, context, policy, flags)
    : await (
        await import("../ops/shared.js")
      ).withLease(rt, "maintenance", "prune", () => sharedPruneOne(rt, context, policy, flags));
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
          ...("log" in result ? { log: result.log } : {}),
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

/** One context of an s3:// root (the caller holds the maintenance lease): its plan, marks and removals. */
async function sharedPruneOne(
  rt: Runtime,
  context: string,
  policy: ReturnType<typeof retentionPolicy>,
  flags: { dryRun?: boolean; keepTag?: string[] },
) {
  const shared = await import("../ops/shared.js");
  const keepTags = [...(rt.config.retention.keepTags ?? []), ...(flags.keepTag ?? [])];
  if (flags.dryRun)
    return {
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
    };
  return withContext(sessionOptions(rt, context, "prune"), () =>
    shared.withLease(rt, `context/${context}`, "prune", (lease) =>
      shared.pruneSharedContext(rt, context, lease, policy, keepTags),
    ),
  );
}
