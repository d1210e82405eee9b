import { readdirSync } from "node:fs";
import { join } from "node:path";
import {
  contextStatus,
  isContextFolderName,
  validateContextName,
  ExitCode,
  UsageError,
  type ContextStatus,
} from "@paas-backup/core";
import type { Runtime } from "../runtime.js";
import { printEnvelope, table } from "../output.js";
import { resolveTargets } from "../targets.js";
import { renderStatusMetrics, writeMetricsFile } from "../metrics.js";

/** Every context the state root has, and every context the backup root has snapshots or tick records of. */
export function fleetContexts(rt: Runtime): string[] {
  const names = new Set<string>();
  for (const dir of [join(rt.stateRoot, "contexts"), rt.backupRoot]) {
    try {
      for (const e of readdirSync(dir, { withFileTypes: true }))
        if (e.isDirectory() && isContextFolderName(e.name)) names.add(e.name);
    } catch {
      // a root that does not exist has no contexts
    }
  }
  return [...names].sort();
}

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

function age(seconds: number): string {
  if (seconds < 3600) return `${Math.round(seconds / 60)}m`;
  if (seconds < 172_800) return `${Math.round(seconds / 3600)}h`;
  return `${Math.round(seconds / 86_400)}d`;
}

export async function statusCommand(
  rt: Runtime,
  flags: { context?: string; allContexts?: boolean; metricsFile?: string },
): Promise<number> {
  const contexts =
    flags.context && !flags.allContexts ? [validateContextName(flags.context)] : fleetContexts(rt);
  // An empty fleet is a wrong path far more often than no customers: say so, not "all ok".
  if (contexts.length === 0)
    throw new UsageError(
      "PAAS_BACKUP_NO_CONTEXTS",
      `no contexts in ${join(rt.stateRoot, "contexts")} or ${rt.backupRoot}`,
      {
        path: rt.backupRoot,
        remediation:
          "Check --state-root and --backup-root (or SI_PAAS_STATE_ROOT, PAAS_BACKUP_ROOT and the config file).",
        stage: "select",
      },
    );
  const statuses = await fleetStatus(rt, contexts);
  if (flags.metricsFile) await writeStatusMetrics(rt, flags.metricsFile, statuses);
  const attention = statuses.filter((s) => !s.ok);
  if (rt.json)
    printEnvelope(rt, {
      ok: attention.length === 0,
      command: "status",
      context: flags.context && !flags.allContexts ? contexts[0]! : "",
      mode: "live",
      count: statuses.length,
      attention: attention.length,
      data: statuses,
    });
  else {
    rt.write(
      table([
        ["CONTEXT", "FULL", "INCR", "CHAIN", "DRILL DUE", "OFFSITE", "BLOCKED", "LAST TICK", "STATE"],
        ...statuses.map((s) => [
          s.context,
          s.newestFull ? `${s.newestFull.id} (${age(s.newestFull.ageSeconds)})` : "none",
          s.newestIncremental ? `${s.newestIncremental.id} (${age(s.newestIncremental.ageSeconds)})` : "none",
          s.chain.ok ? "ok" : "BROKEN",
          `${s.drill.nextDue.slice(0, 10)}${s.drill.overdue ? (s.drill.mandatory ? " OVERDUE" : " overdue") : ""}`,
          s.offsite
            .map(
              (o) =>
                `${o.name}: ${o.confirmed} ok${o.immutableUntil ? ` until ${o.immutableUntil.slice(0, 10)}` : ""}${o.problems.length ? `, ${o.problems.length} bad` : ""}${o.newestFullMissing ? ", newest MISSING" : ""}`,
            )
            .join("; ") || "-",
          s.blocked ? "BLOCKED" : "no",
          s.lastTick ? `${s.lastTick.at.slice(0, 16)} ${s.lastTick.ok ? "ok" : "FAILED"}` : "never",
          s.ok ? "ok" : "ATTENTION",
        ]),
      ]),
    );
    for (const s of attention) for (const a of s.attention) rt.write(`${s.context}: ${a}\n`);
  }
  return attention.length === 0 ? ExitCode.ok : ExitCode.attention;
}
