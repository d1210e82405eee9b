import { runDoctor, readBlock, clearBlock, rollbackRestore, writeIncident, UsageError, ValidationError } from "@paas-backup/core";
import { resolveOperator, type Runtime } from "../runtime.js";
import { keyValues, printEnvelope, table } from "../output.js";
import { requireContext, requireKnownContext } from "./common.js";
import { allowRepoState } from "./guard.js";

export async function doctorCommand(rt: Runtime, flags: { context?: string }): Promise<number> {
  const context = requireContext(flags.context);
  await requireKnownContext(rt, context);
  const report = await runDoctor({ fs: rt.fs, stateRoot: rt.stateRoot, context, secretAllow: rt.config.secretAllow, allowRepoState: allowRepoState(rt.env) });
  if (rt.json) {
    const failing = report.checks.filter((c) => !c.ok);
    // si's doctor envelope: ok, command, context, mode, count, checks.
    printEnvelope(rt, {
      ok: report.ok,
      context,
      mode: "live",
      checks: report.checks,
      data: [{ contextShow: report.contextShow, events: report.events }],
      ...(report.ok
        ? {}
        : { error: { code: "PAAS_BACKUP_DOCTOR_FAILED", stage: "validate", target: rt.stateRoot, message: `doctor checks fail for ${context}: ${failing.map((c) => `${c.name} (${c.detail})`).join("; ")}`, remediation: "Fix what each failing check names, then run doctor again." } }),
    });
  } else {
    rt.write(table([["CHECK", "OK", "DETAIL"], ...report.checks.map((c) => [c.name, c.ok ? "ok" : "FAIL", c.detail])]));
  }
  return report.ok ? 0 : 5;
}

export async function unblockCommand(rt: Runtime, flags: { context?: string; ticket?: string; operator?: string }): Promise<number> {
  const context = requireContext(flags.context);
  if (!flags.ticket?.trim()) {
    throw new UsageError("PAAS_BACKUP_TICKET_REQUIRED", "unblock needs --ticket <incident-id>", { remediation: "Pass the incident id the block was recorded under.", stage: "arguments" });
  }
  const block = await readBlock(rt.fs, rt.stateRoot, context);
  if (!block) {
    if (rt.json) printEnvelope(rt, { ok: true, command: "unblock", context, mode: "live", count: 0, data: [] });
    else rt.write(`${context} is not blocked\n`);
    return 0;
  }
  const report = await runDoctor({ fs: rt.fs, stateRoot: rt.stateRoot, context, secretAllow: rt.config.secretAllow, allowRepoState: allowRepoState(rt.env), ignoreBlock: true });
  if (!report.ok) {
    throw new ValidationError("PAAS_BACKUP_STILL_FAILING", `${context} stays blocked: doctor still fails (${report.checks.filter((c) => !c.ok).map((c) => c.name).join(", ")})`, {
      path: rt.stateRoot,
      remediation: `Fix what \`paas-backup doctor --context ${context}\` reports, then unblock again.`,
      stage: "validate",
      data: { checks: report.checks },
    });
  }
  await clearBlock(rt.fs, rt.stateRoot, context);
  const now = rt.clock().toISOString();
  const incidentFile = await writeIncident(rt.fs, rt.backupRoot, {
    schema: "paas-backup/incident@1", kind: "unblock", ticket: flags.ticket, context, stateRoot: rt.stateRoot, snapshot: null, requestedSnapshot: "",
    fallback: { used: false }, operator: resolveOperator(flags.operator, rt.env), startedAt: now, endedAt: now, dryRun: false, movedAsideTo: null, vault: null,
    doctor: { ok: true, checks: report.checks }, externalDoctor: null, outcome: "unblocked", error: null,
  });
  if (rt.json) printEnvelope(rt, { ok: true, command: "unblock", context, mode: "live", count: 1, data: [{ cleared: block, incidentFile }] });
  else rt.write(keyValues([["unblocked", context], ["was blocked since", block.blockedAt], ["incident", incidentFile]]));
  return 0;
}

export async function rollbackCommand(rt: Runtime, flags: { context?: string; ticket?: string; operator?: string }): Promise<number> {
  const context = requireContext(flags.context);
  if (!flags.ticket?.trim()) {
    throw new UsageError("PAAS_BACKUP_TICKET_REQUIRED", "rollback needs --ticket <incident-id>", { remediation: "Pass the incident id of the restore you undo.", stage: "arguments" });
  }
  const result = await rollbackRestore({ fs: rt.fs, stateRoot: rt.stateRoot, backupRoot: rt.backupRoot, context, ticket: flags.ticket, operator: resolveOperator(flags.operator, rt.env), clock: rt.clock });
  if (rt.json) printEnvelope(rt, { ok: true, command: "rollback", context, mode: "live", count: 1, data: [result] });
  else rt.write(keyValues([["rolled back", context], ["put back", result.restoredFrom], ["restored contents kept in", result.movedAsideTo], ["incident", result.incidentFile]]));
  return 0;
}
