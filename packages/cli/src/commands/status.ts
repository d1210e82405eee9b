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
  if (rt.shared) return sharedStatus(rt, flags);
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
            s.newestFull
              ? `${s.newestFull.id} (${age(s.newestFull.ageSeconds)})${s.newestFull.plaintext ? " PLAINTEXT" : ""}`
              : "none",
            s.newestIncremental
              ? `${s.newestIncremental.id} (${age(s.newestIncremental.ageSeconds)})${s.newestIncremental.plaintext ? " PLAINTEXT" : ""}`
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
    // Not a reason for attention (the operator chose it), but never silent: say how many and what push does.
    for (const s of statuses)
      if (s.plaintext.length > 0)
        rt.write(
          `${s.context}: ${s.plaintext.length} snapshot(s) PLAINTEXT at home; offsite push encrypts them (not for allowPlaintext targets)\n`,
        );
  }
  return attention.length === 0 ? ExitCode.ok : ExitCode.attention;
}

/**
 * status of an s3:// root: the fleet from the bucket alone. Each host's status object (written by
 * its ticks) lists its contexts; a host whose object is older than the stale limit on the
 * server's clock is an alert, as is a context whose last tick failed (exit 11).
 */
async function sharedStatus(
  rt: Runtime,
  flags: { context?: string; allContexts?: boolean; metricsFile?: string },
): Promise<number> {
  const { sharedFleetStatus, writeFleetMetrics } = await import("../ops/fleet.js");
  const fleet = await sharedFleetStatus(rt);
  if (flags.metricsFile) await writeFleetMetrics(rt, flags.metricsFile, fleet);
  const only = flags.context && !flags.allContexts ? validateContextName(flags.context) : null;
  const rows = fleet.hosts.flatMap((h) =>
    h.contexts
      .filter((c) => !only || c.context === only)
      .map((c) => ({
        host: h.host,
        context: c.context,
        ok: c.ok && !h.stale,
        lastSnapshot: c.lastSnapshot,
        error: c.error,
        reportedAt: h.reportedAt,
        receivedAt: h.receivedAt,
        hostStale: h.stale,
      })),
  );
  if (fleet.hosts.length === 0)
    throw new UsageError("PAAS_BACKUP_NO_CONTEXTS", `no host has reported to ${rt.shared!.url} yet`, {
      path: rt.shared!.url,
      remediation:
        "Run `paas-backup tick` with this --backup-root on the hosts (each tick writes its status object), or check the bucket and prefix.",
      stage: "select",
    });
  if (only && rows.length === 0)
    throw new UsageError(
      "PAAS_BACKUP_CONTEXT_NOT_FOUND",
      `no host reports context ${only} in ${rt.shared!.url}`,
      {
        path: rt.shared!.url,
        remediation: "Check --context; `paas-backup status` without it lists every host's contexts.",
        stage: "select",
      },
    );
  const ok = fleet.alerts.length === 0;
  if (rt.json)
    printEnvelope(rt, {
      ok,
      command: "status",
      context: only ?? "",
      mode: "live",
      count: rows.length,
      attention: fleet.alerts.length,
      fleet: {
        root: rt.shared!.url,
        at: fleet.at,
        staleAfterSeconds: Math.round(fleet.staleAfterMs / 1000),
        hosts: fleet.hosts.map((h) => ({
          host: h.host,
          reportedAt: h.reportedAt,
          receivedAt: h.receivedAt,
          ageSeconds: h.ageMs === null ? null : Math.round(h.ageMs / 1000),
          stale: h.stale,
          contexts: h.contexts.length,
        })),
        alerts: fleet.alerts,
      },
      data: rows,
    });
  else {
    rt.write(
      table(
        [
          ["HOST", "CONTEXT", "LAST SNAPSHOT", "LAST TICK", "REPORTED", "STATE"],
          ...rows.map((r) => [
            r.host,
            r.context,
            r.lastSnapshot ? `${r.lastSnapshot.id} (${r.lastSnapshot.kind})` : "none",
            r.error ? `FAILED (${r.error.code ?? "error"})` : "ok",
            `${(r.receivedAt ?? r.reportedAt).slice(0, 16)}${r.hostStale ? " STALE" : ""}`,
            r.ok ? "ok" : "ATTENTION",
          ]),
        ],
        { whole: ["LAST SNAPSHOT"] },
      ),
    );
    for (const a of fleet.alerts) rt.write(`${a}\n`);
  }
  return ok ? ExitCode.ok : ExitCode.attention;
}
