import { contextStatus, type ContextStatus } from "@paas-backup/core/governance";
import { readFleetStatus, type FleetStatus } from "@paas-backup/core/repository";
import { ExitCode, PaasBackupError } from "@paas-backup/core/errors";
import { join } from "node:path";
import { environmentError } from "../host/environment.js";
import type { Runtime } from "../runtime.js";
import { resolveTargets } from "../options/targets.js";
import { renderFleetMetrics, renderStatusMetrics, writeMetricsFile } from "../render/metrics.js";

/** Each context's status, with the configured offsite targets (status, and tick's metrics file). */
export async function fleetStatus(rt: Runtime, contexts: string[]): Promise<ContextStatus[]> {
  const targets = await resolveTargets(rt, {}, false);
  const now = rt.clock();
  const out: ContextStatus[] = [];
  for (const context of contexts) {
    try {
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
    } catch (err) {
      // One broken context (its backup folder a file, a name no folder may have, a file it may not
      // read) needs attention; it does not blind status and the metrics to every other context.
      const named =
        err instanceof PaasBackupError && err.exitCode !== ExitCode.unexpected
          ? err
          : environmentError(err, { path: join(rt.backupRoot, context) });
      if (!named) throw err;
      out.push(unreadableStatus(context, named, now));
    }
  }
  return out;
}

/** The status of a context whose records cannot be read: needs attention, and says why (code and path). */
function unreadableStatus(context: string, err: PaasBackupError, now: Date): ContextStatus {
  return {
    context,
    ok: false,
    attention: [`cannot read its status: ${err.message} (${err.code})`],
    newestFull: null,
    newestIncremental: null,
    plaintext: [],
    chain: { ok: false, detail: `unreadable (${err.code})` },
    drill: {
      context,
      mandatory: false,
      lastDrill: null,
      lastPassed: null,
      nextDue: now.toISOString(),
      overdue: false,
    },
    blocked: null,
    offsite: [],
    lastTick: null,
  };
}

/** Write the metrics file for these contexts (tick and status); errors are the caller's. */
export async function writeStatusMetrics(
  rt: Runtime,
  path: string,
  statuses: ContextStatus[],
): Promise<void> {
  await writeMetricsFile(rt, path, await renderStatusMetrics(statuses, rt.clock()));
}

/** An s3:// root's fleet view: every host's status object, judged stale on the server's clock. */
export async function sharedFleetStatus(rt: Runtime): Promise<FleetStatus> {
  const shared = rt.shared!;
  return readFleetStatus(shared.storage, { staleAfterMs: shared.staleAfterMs, clock: rt.clock });
}

/** The fleet's metrics file (status and tick with an s3:// root). */
export async function writeFleetMetrics(rt: Runtime, path: string, fleet?: FleetStatus): Promise<void> {
  await writeMetricsFile(
    rt,
    path,
    await renderFleetMetrics(fleet ?? (await sharedFleetStatus(rt)), rt.clock()),
  );
}

/**
 * The contexts of an s3:// root: those its hosts report in their status objects, and this host's
 * own (offsite push --all-contexts from any host covers the fleet).
 */
export async function sharedFleetContexts(rt: Runtime): Promise<string[]> {
  const fleet = await sharedFleetStatus(rt);
  const { contextsOf } = await import("../options/context-list.js");
  const own = await contextsOf(rt).catch(() => [] as string[]);
  return [...new Set([...fleet.hosts.flatMap((h) => h.contexts.map((c) => c.context)), ...own])].sort();
}
