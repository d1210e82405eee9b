import { allowRepoStateFrom, listStateContexts, runTick, UsageError } from "@paas-backup/core";
import type { Runtime } from "../runtime.js";
import { printEnvelope, table } from "../output.js";
import { lockOwner, parseInclude, resolveEncryptor, type KeyFlags } from "./common.js";
import { retentionPolicy } from "./prune.js";

export type OffsiteHook = (rt: Runtime, context: string) => Promise<unknown>;

export function contextsOf(rt: Runtime): Promise<string[]> {
  return listStateContexts(rt.fs, rt.stateRoot);
}

/** tick: the one command for cron. Idempotent: a second run in the same hour does nothing. */
export async function tickCommand(rt: Runtime, flags: KeyFlags & { context?: string; allContexts?: boolean; include?: string }, offsite?: OffsiteHook): Promise<number> {
  if (!flags.context && !flags.allContexts) {
    throw new UsageError("PAAS_BACKUP_INVALID_ARGUMENT", "tick needs --context <name> or --all-contexts", { remediation: "Name one context, or pass --all-contexts for every context of the state root.", stage: "arguments" });
  }
  const encryptor = await resolveEncryptor(rt, flags);
  const { outcomes, recovered, exitCode } = await runTick({
    fs: rt.fs,
    stateRoot: rt.stateRoot,
    backupRoot: rt.backupRoot,
    ...(flags.allContexts ? {} : { contexts: [flags.context!] }),
    allContexts: flags.allContexts === true,
    clock: rt.clock,
    owner: lockOwner("tick"),
    lockTimeoutMs: rt.config.lockTimeoutSeconds * 1000,
    include: parseInclude(flags.include, rt.config.include),
    ...(encryptor ? { encryptor } : {}),
    insecurePlaintext: flags.insecurePlaintext === true,
    secretAllow: rt.config.secretAllow,
    allowRepoState: allowRepoStateFrom(rt.env),
    retention: retentionPolicy(rt, {}),
    ...(offsite ? { afterEach: (context: string) => offsite(rt, context) } : {}),
  });
  for (const r of recovered) process.stderr.write(`paas-backup: recovery: ${r.message}${r.incidentFile ? ` (recorded in ${r.incidentFile})` : ""}\n`);
  const failed = outcomes.filter((o) => !o.ok);
  if (rt.json) {
    printEnvelope(rt, { ok: failed.length === 0, command: "tick", context: flags.allContexts ? "" : outcomes[0]!.context, mode: "live", count: outcomes.length, failed: failed.length, data: outcomes });
  } else {
    rt.write(
      table([
        ["CONTEXT", "ACTION", "SNAPSHOT", "PRUNED", "RESULT"],
        ...outcomes.map((o) => [o.context, o.action, o.snapshot?.id ?? "-", String(o.pruned.length), o.ok ? "ok" : `FAILED ${o.error?.code}: ${o.error?.message}`]),
      ]),
    );
    for (const o of outcomes) if (o.reason.includes("took a full instead")) rt.write(`${o.context}: ${o.reason}\n`);
    for (const o of outcomes) if (o.reason.includes("took a full instead")) rt.write(`${o.context}: ${o.reason}\n`);
  }
  return exitCode;
}
