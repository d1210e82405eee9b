import { readdirSync } from "node:fs";
import { join } from "node:path";
import { contextsWithJournal, decideTick, isContextFolderName, listSnapshots, pruneSnapshots, recordTickOutcome, withContextLock, PaasBackupError, UsageError, validateContextName, ExitCode, type SnapshotResult, type SnapshotRedaction } from "@paas-backup/core";
import { redactionNotice } from "./snapshot.js";
import type { Runtime } from "../runtime.js";
import { printEnvelope, table } from "../output.js";
import { lockOptions, lockOwner, parseInclude, recoverFirst, resolveEncryptor, type KeyFlags } from "./common.js";
import { retentionPolicy } from "./prune.js";
import { createSnapshot } from "@paas-backup/core";
import { assertBackupLocation } from "./guard.js";
import { ping, type PingResult } from "../ping.js";
import { fleetStatus, writeStatusMetrics } from "./status.js";
import { resolveTargets } from "../targets.js";
import { pushForContext } from "./offsite.js";

/** tick as the CLI runs it: with an offsite push after each context when targets are configured. */
export async function tickAction(rt: Runtime, flags: KeyFlags & { context?: string; allContexts?: boolean; include?: string; pingUrl?: string; metricsFile?: string }): Promise<number> {
  return tickCommand(rt, flags, (await resolveTargets(rt, {}, false)).length > 0 ? (r, context) => pushForContext(r, context, {}) : undefined);
}

export interface TickOutcome {
  context: string;
  ok: boolean;
  action: "full" | "incremental" | "none";
  reason: string;
  snapshot: Pick<SnapshotResult, "id" | "kind" | "artifact" | "sha256" | "bytes" | "storedBytes"> | null;
  pruned: string[];
  offsite: unknown;
  error: { code: string; message: string; remediation: string } | null;
  /** values the snapshot holds as <redacted> (file, line, rule); any not acknowledged makes the tick exit 9 */
  redactions: SnapshotRedaction[];
}

export type OffsiteHook = (rt: Runtime, context: string) => Promise<unknown>;

function fleetContextsSafe(rt: Runtime): string[] {
  try {
    return contextsOf(rt);
  } catch {
    return [];
  }
}

export function contextsOf(rt: Runtime): string[] {
  const dir = join(rt.stateRoot, "contexts");
  try {
    return readdirSync(dir, { withFileTypes: true })
      .filter((e) => e.isDirectory() && isContextFolderName(e.name))
      .map((e) => e.name)
      .sort();
  } catch {
    throw new UsageError("PAAS_BACKUP_NO_CONTEXTS", `no contexts folder at ${dir}`, {
      path: dir,
      remediation: "Check --state-root or SI_PAAS_STATE_ROOT.",
      stage: "plan",
    });
  }
}

/** One context's tick, and the exit code its failure would have on its own. */
async function tickOne(rt: Runtime, context: string, flags: KeyFlags & { include?: string }, offsite?: OffsiteHook): Promise<{ outcome: TickOutcome; exitCode: number }> {
  const outcome: TickOutcome = { context, ok: true, action: "none", reason: "", snapshot: null, pruned: [], offsite: null, error: null, redactions: [] };
  let durationSeconds = 0;
  try {
    const encryptor = await resolveEncryptor(rt, flags);
    await withContextLock(
      lockOptions(rt, context, "tick"),
      async () => {
        const now = rt.clock();
        const decision = decideTick(await listSnapshots(rt.fs, rt.backupRoot, context), now);
        outcome.action = decision.action;
        outcome.reason = decision.reason;
        if (decision.action !== "none") {
          const started = rt.clock().getTime();
          const r = await createSnapshot({
            fs: rt.fs,
            stateRoot: rt.stateRoot,
            backupRoot: rt.backupRoot,
            context,
            clock: rt.clock,
            kind: decision.action,
            include: parseInclude(flags.include, rt.config.include),
            ...(encryptor ? { encryptor } : {}),
            insecurePlaintext: flags.insecurePlaintext === true,
            secretAllow: rt.config.secretAllow,
            secretAcknowledged: rt.config.secretAcknowledged,
          });
          durationSeconds = (rt.clock().getTime() - started) / 1000;
          outcome.snapshot = { id: r.id, kind: r.kind, artifact: r.artifact, sha256: r.sha256, bytes: r.bytes, storedBytes: r.storedBytes };
          outcome.redactions = r.redactions;
          if (r.promotedToFull) {
            // an incremental was due, but the chain it would extend no longer verifies (or cannot be extended)
            outcome.action = "full";
            outcome.reason = `${decision.reason}; took a full instead of an incremental: ${r.promotedToFull}`;
          }
          const pruned = await pruneSnapshots({ fs: rt.fs, backupRoot: rt.backupRoot, context, policy: retentionPolicy(rt, {}), clock: rt.clock });
          outcome.pruned = pruned.removed;
        }
      },
    );
    if (offsite) outcome.offsite = await offsite(rt, context);
    await remember(rt, outcome, durationSeconds);
    return { outcome, exitCode: 0 };
  } catch (err) {
    const failed = failedOutcome(context, err, outcome);
    await remember(rt, outcome, durationSeconds);
    return failed;
  }
}

function failedOutcome(context: string, err: unknown, outcome: TickOutcome = { context, ok: false, action: "none", reason: "", snapshot: null, pruned: [], offsite: null, error: null, redactions: [] }): { outcome: TickOutcome; exitCode: number } {
  outcome.ok = false;
  outcome.error =
    err instanceof PaasBackupError
      ? { code: err.code, message: err.message, remediation: err.remediation }
      : { code: "PAAS_BACKUP_UNEXPECTED", message: (err as Error).message, remediation: "Rerun with the same arguments and report the message." };
  return { outcome, exitCode: err instanceof PaasBackupError ? err.exitCode : 1 };
}

/** Record the outcome in the backup root for `status` and the metrics; never fails the tick. */
async function remember(rt: Runtime, o: TickOutcome, durationSeconds: number): Promise<void> {
  try {
    await recordTickOutcome(rt.fs, rt.backupRoot, {
      context: o.context,
      at: rt.clock(),
      ok: o.ok,
      action: o.action,
      reason: o.reason,
      error: o.error ? { code: o.error.code, message: o.error.message } : null,
      snapshot: o.snapshot ? { id: o.snapshot.id, kind: o.snapshot.kind, bytes: o.snapshot.bytes, storedBytes: o.snapshot.storedBytes, durationSeconds } : null,
    });
  } catch (err) {
    process.stderr.write(`warning: could not record the tick outcome of ${o.context} in ${rt.backupRoot}: ${(err as Error).message}\n`);
  }
}

/** tick: the one command for cron. Idempotent: a second run in the same hour does nothing. */
export async function tickCommand(rt: Runtime, flags: KeyFlags & { context?: string; allContexts?: boolean; include?: string; pingUrl?: string; metricsFile?: string }, offsite?: OffsiteHook): Promise<number> {
  if (!flags.context && !flags.allContexts) {
    throw new UsageError("PAAS_BACKUP_INVALID_ARGUMENT", "tick needs --context <name> or --all-contexts", { remediation: "Name one context, or pass --all-contexts for every context of the state root.", stage: "arguments" });
  }
  const pingUrl = flags.pingUrl ?? rt.config.pingUrl;
  const pings: PingResult[] = [];
  const pingOnce = async (event: PingResult["event"]) => {
    if (!pingUrl) return;
    const r = await ping(pingUrl, event);
    pings.push(r);
    // The URL is the check's credential at healthchecks.io: never printed.
    if (!r.ok) process.stderr.write(`warning: ping (${event}) failed: ${r.detail}; the backup is not affected\n`);
  };
  await pingOnce("start");
  let contexts: string[] = [];
  const runs: { outcome: TickOutcome; exitCode: number }[] = [];
  try {
    await assertBackupLocation(rt);
    // A swap a crash interrupted can leave a context missing from contexts/: finish or undo every
    // one first, so the listing below sees it and tick never reports ok over a missing context.
    const recoveryFailures: { outcome: TickOutcome; exitCode: number }[] = [];
    if (flags.allContexts) {
      for (const context of await contextsWithJournal(rt.fs, rt.stateRoot)) {
        try {
          await recoverFirst(rt, context);
        } catch (err) {
          recoveryFailures.push(failedOutcome(context, err));
        }
      }
    }
    contexts = flags.allContexts ? contextsOf(rt).filter((c) => !recoveryFailures.some((f) => f.outcome.context === c)) : [validateContextName(flags.context!)];
    runs.push(...recoveryFailures);
    for (const context of contexts) runs.push(await tickOne(rt, context, flags, offsite));
  } catch (err) {
    await pingOnce("fail");
    throw err;
  }
  const outcomes = runs.map((r) => r.outcome);
  const failed = outcomes.filter((o) => !o.ok);
  const ok = failed.length === 0;
  await pingOnce(ok ? "success" : "fail");
  let metrics: { file: string; written: boolean; error?: string } | null = null;
  if (flags.metricsFile) {
    // The metrics cover every context of the fleet, not only the ticked one: the file is the whole picture.
    try {
      await writeStatusMetrics(rt, flags.metricsFile, await fleetStatus(rt, flags.allContexts ? contexts : [...new Set([...fleetContextsSafe(rt), ...contexts])].sort()));
      metrics = { file: flags.metricsFile, written: true };
    } catch (err) {
      metrics = { file: flags.metricsFile, written: false, error: (err as Error).message };
      process.stderr.write(`warning: could not write the metrics file ${flags.metricsFile}: ${(err as Error).message}\n`);
    }
  }
  if (rt.json) {
    printEnvelope(rt, { ok, command: "tick", context: flags.allContexts ? "" : contexts[0]!, mode: "live", count: outcomes.length, failed: failed.length, ...(pingUrl ? { pings } : {}), ...(metrics ? { metrics } : {}), data: outcomes });
  } else {
    rt.write(
      table([
        ["CONTEXT", "ACTION", "SNAPSHOT", "PRUNED", "RESULT"],
        ...outcomes.map((o) => [o.context, o.action, o.snapshot?.id ?? "-", String(o.pruned.length), o.ok ? "ok" : `FAILED (${o.error?.code})`]),
      ]),
    );
    // Why each context did what it did, and the long texts, below the table.
    for (const o of outcomes) {
      rt.write(`${o.context}: ${o.action === "none" ? "nothing to do" : `took a ${o.action} snapshot`}: ${o.reason || "-"}${o.pruned.length ? `; pruned ${o.pruned.join(", ")}` : ""}\n`);
      if (o.error) rt.write(`  ${o.error.message}\n  what to do: ${o.error.remediation}\n`);
    }
  }
  // A leaked credential never stops the tick: every context is still backed up (redacted); 9 only when nothing worse happened.
  const unacknowledged = outcomes.flatMap((o) => o.redactions.filter((r) => !r.acknowledged));
  if (unacknowledged.length > 0 && !rt.json) process.stderr.write(redactionNotice(unacknowledged));
  if (ok) return unacknowledged.length > 0 ? ExitCode.redacted : 0;
  if (!flags.allContexts) return runs[0]!.exitCode;
  return 7;
}
