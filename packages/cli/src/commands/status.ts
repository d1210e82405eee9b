import { contextsDir, validateContextName } from "@paas-backup/core/policy";
import { ExitCode, UsageError } from "@paas-backup/core/errors";
import type { Runtime } from "../runtime.js";
import { printEnvelope } from "../envelope.js";
import { table } from "../render/text.js";
import { fleetContexts } from "../options/context-list.js";
import { fleetStatus, writeStatusMetrics } from "../ops/fleet.js";

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
    flags.context && !flags.allContexts ? [validateContextName(flags.context)] : await fleetContexts(rt);
  // An empty fleet is a wrong path far more often than no customers: say so, not "all ok".
  if (contexts.length === 0)
    throw new UsageError(
      "PAAS_BACKUP_NO_CONTEXTS",
      `no contexts in ${contextsDir(rt.stateRoot)} or ${rt.backupRoot}`,
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
      table(
        [
          ["CONTEXT", "FULL", "INCR", "CHAIN", "DRILL DUE", "OFFSITE", "BLOCKED", "LAST TICK", "STATE"],
          ...statuses.map((s) => [
            s.context,
            s.newestFull ? `${s.newestFull.id} (${age(s.newestFull.ageSeconds)})` : "none",
            s.newestIncremental
              ? `${s.newestIncremental.id} (${age(s.newestIncremental.ageSeconds)})`
              : "none",
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
        ],
        { whole: ["FULL", "INCR"] },
      ),
    );
    for (const s of attention) for (const a of s.attention) rt.write(`${s.context}: ${a}\n`);
  }
  return attention.length === 0 ? ExitCode.ok : ExitCode.attention;
}
