import { contextStatus, type ContextStatus } from "@paas-backup/core";
import type { Runtime } from "../runtime.js";
import { resolveTargets } from "../options/targets.js";
import { renderStatusMetrics, writeMetricsFile } from "../render/metrics.js";

/** Each context's status, with the configured offsite targets (status, and tick's metrics file). */
export async function fleetStatus(rt: Runtime, contexts: string[]): Promise<ContextStatus[]> {
  const targets = await resolveTargets(rt, {}, false);
  const now = rt.clock();
  const out: ContextStatus[] = [];
  for (const context of contexts)
    out.push(
      await contextStatus({
        fs: rt.fs,
        backupRoot: rt.backupRoot,
        stateRoot: rt.stateRoot,
        context,
        now,
        mandatoryDrills: rt.config.mandatoryDrillContexts,
        targets,
      }),
    );
  return out;
}

/** Write the metrics file for these contexts (tick and status); errors are the caller's. */
export async function writeStatusMetrics(
  rt: Runtime,
  path: string,
  statuses: ContextStatus[],
): Promise<void> {
  await writeMetricsFile(rt, path, await renderStatusMetrics(statuses, rt.clock()));
}
