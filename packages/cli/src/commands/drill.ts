import { tmpdir } from "node:os";
import { runDrill, drillStatus, ExitCode, validateContextName } from "@paas-backup/core";
import { resolveOperator, type Runtime } from "../runtime.js";
import { keyValues, printEnvelope, table } from "../output.js";
import { requireContext, resolveDecryptor, type KeyFlags } from "./common.js";
import { externalDoctorRunner } from "./restore.js";
import { renderDrillMetrics, writeMetricsFile } from "../metrics.js";

export async function drillCommand(rt: Runtime, flags: KeyFlags & { context?: string; operator?: string; doctorCmd?: string }): Promise<number> {
  const context = requireContext(flags.context);
  const decryptor = await resolveDecryptor(rt, flags);
  const result = await runDrill({
    fs: rt.fs,
    backupRoot: rt.backupRoot,
    context,
    // a fresh private folder under the OS temp folder, outside the live state root; runDrill removes it
    scratchParent: tmpdir(),
    clock: rt.clock,
    operator: resolveOperator(flags.operator, rt.env),
    ...(decryptor ? { decryptor } : {}),
    ...(flags.doctorCmd ? { externalDoctor: externalDoctorRunner(flags.doctorCmd, rt.env) } : {}),
  });
  if (rt.json) printEnvelope(rt, { ok: result.ok, command: "drill", context, mode: "live", count: 1, data: [result] });
  else
    rt.write(
      keyValues([
        ["drill", `${context} from ${result.snapshot}: ${result.ok ? "passed" : "FAILED"}`],
        ["failing checks", result.restore?.doctor?.checks.filter((c) => !c.ok).map((c) => `${c.name} (${c.detail})`).join("; ") || undefined],
        ["error", result.error?.message],
        ["record", result.recordFile],
      ]),
    );
  return result.ok ? ExitCode.ok : ExitCode.validation;
}

export async function drillStatusCommand(rt: Runtime, flags: { context?: string[]; metricsFile?: string }): Promise<number> {
  const contexts = (flags.context ?? []).map(validateContextName);
  const status = await drillStatus({ fs: rt.fs, backupRoot: rt.backupRoot, contexts, mandatory: rt.config.mandatoryDrillContexts, now: rt.clock() });
  const overdue = status.filter((s) => s.mandatory && s.overdue);
  if (flags.metricsFile) await writeMetricsFile(rt, flags.metricsFile, await renderDrillMetrics(status, rt.clock()));
  if (rt.json) printEnvelope(rt, { ok: overdue.length === 0, command: "drill status", context: "", mode: "live", count: status.length, data: status });
  else
    rt.write(
      table([
        ["CONTEXT", "MANDATORY", "LAST DRILL", "LAST PASSED", "NEXT DUE", "STATE"],
        ...status.map((s) => [
          s.context,
          s.mandatory ? "yes" : "no",
          s.lastDrill ? `${s.lastDrill.at.slice(0, 10)} ${s.lastDrill.ok ? "passed" : "failed"}` : "never",
          s.lastPassed?.slice(0, 10) ?? "never",
          s.nextDue.slice(0, 10),
          s.overdue ? (s.mandatory ? "OVERDUE" : "overdue") : "ok",
        ]),
      ]),
    );
  return overdue.length === 0 ? ExitCode.ok : ExitCode.overdue;
}
