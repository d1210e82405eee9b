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
