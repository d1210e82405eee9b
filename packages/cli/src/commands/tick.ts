import { readdirSync } from "node:fs";
import { join } from "node:path";
import { decideTick, isContextFolderName, listSnapshots, pruneSnapshots, withContextLock, PaasBackupError, UsageError, validateContextName, type SnapshotResult } from "@paas-backup/core";
import type { Runtime } from "../runtime.js";
import { printEnvelope, table } from "../output.js";
import { lockOptions, parseInclude, resolveEncryptor, type KeyFlags } from "./common.js";
import { retentionPolicy } from "./prune.js";
import { createSnapshot } from "@paas-backup/core";
import { assertBackupLocation } from "./guard.js";
import { resolveTargets } from "../targets.js";
import { pushForContext } from "./offsite.js";

/** tick as the CLI runs it: with an offsite push after each context when targets are configured. */
export async function tickAction(rt: Runtime, flags: KeyFlags & { context?: string; allContexts?: boolean; include?: string }): Promise<number> {
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
}

export type OffsiteHook = (rt: Runtime, context: string) => Promise<unknown>;

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
  const outcome: TickOutcome = { context, ok: true, action: "none", reason: "", snapshot: null, pruned: [], offsite: null, error: null };
  try {
    const encryptor = resolveEncryptor(rt, flags);
    await withContextLock(
      lockOptions(rt, context, "tick"),
      async () => {
        const now = rt.clock();
        const decision = decideTick(await listSnapshots(rt.fs, rt.backupRoot, context), now);
        outcome.action = decision.action;
        outcome.reason = decision.reason;
        if (decision.action !== "none") {
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
          });
          outcome.snapshot = { id: r.id, kind: r.kind, artifact: r.artifact, sha256: r.sha256, bytes: r.bytes, storedBytes: r.storedBytes };
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
    return { outcome, exitCode: 0 };
  } catch (err) {
    outcome.ok = false;
    outcome.error =
      err instanceof PaasBackupError
        ? { code: err.code, message: err.message, remediation: err.remediation }
        : { code: "PAAS_BACKUP_UNEXPECTED", message: (err as Error).message, remediation: "Rerun with the same arguments and report the message." };
    return { outcome, exitCode: err instanceof PaasBackupError ? err.exitCode : 1 };
  }
}

/** tick: the one command for cron. Idempotent: a second run in the same hour does nothing. */
export async function tickCommand(rt: Runtime, flags: KeyFlags & { context?: string; allContexts?: boolean; include?: string }, offsite?: OffsiteHook): Promise<number> {
  if (!flags.context && !flags.allContexts) {
    throw new UsageError("PAAS_BACKUP_INVALID_ARGUMENT", "tick needs --context <name> or --all-contexts", { remediation: "Name one context, or pass --all-contexts for every context of the state root.", stage: "arguments" });
  }
  await assertBackupLocation(rt);
  const contexts = flags.allContexts ? contextsOf(rt) : [validateContextName(flags.context!)];
  const runs: { outcome: TickOutcome; exitCode: number }[] = [];
  for (const context of contexts) runs.push(await tickOne(rt, context, flags, offsite));
  const outcomes = runs.map((r) => r.outcome);
  const failed = outcomes.filter((o) => !o.ok);
  const ok = failed.length === 0;
  if (rt.json) {
    printEnvelope(rt, { ok, command: "tick", context: flags.allContexts ? "" : contexts[0]!, mode: "live", count: outcomes.length, failed: failed.length, data: outcomes });
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
  if (ok) return 0;
  if (!flags.allContexts) return runs[0]!.exitCode;
  return 7;
}
