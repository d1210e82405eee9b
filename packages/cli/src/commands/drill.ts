import { tmpdir } from "node:os";
import { resolveRecordSigner, resolveSignaturePolicy } from "../options/signing.js";
import { runDrill, drillStatus } from "@paas-backup/core/governance";
import { ExitCode } from "@paas-backup/core/errors";
import { validateContextName } from "@paas-backup/core/policy";
import { resolveOperator, type Runtime } from "../runtime.js";
import { keyValues, table } from "../render/text.js";
import { printEnvelope } from "../envelope.js";
import { requireContext, requireKnownContext } from "../options/context.js";
import { lockedBy } from "../options/lock.js";
import { resolveDecryptor, type KeyFlags } from "../options/keys.js";
import { externalDoctorRunner } from "../host/doctor.js";
import { renderDrillMetrics, writeMetricsFile } from "../render/metrics.js";

export async function drillCommand(
  rt: Runtime,
  flags: KeyFlags & { context?: string; operator?: string; doctorCmd?: string },
): Promise<number> {
  const context = requireContext(flags.context);
  const decryptor = await resolveDecryptor(rt, flags);
  const signer = await resolveRecordSigner(rt);
  // An s3:// root: the snapshots committed in the bucket; the drill record goes to the bucket after.
  const shared = rt.shared ? await import("../ops/shared.js") : null;
  const result = await runDrill({
    ...lockedBy(rt, context, "drill"),
    ...(signer ? { signer } : {}),
    fs: rt.fs,
    backupRoot: rt.backupRoot,
    ...(shared ? { repository: await shared.committedView(rt.shared!, context) } : {}),
    context,
    // a fresh private folder under the OS temp folder, outside the live state root; runDrill removes it
    scratchParent: tmpdir(),
    clock: rt.clock,
    operator: resolveOperator(flags.operator, rt.env),
    ...(decryptor ? { decryptor } : {}),
    ...(flags.doctorCmd ? { externalDoctor: externalDoctorRunner(flags.doctorCmd, rt.env) } : {}),
    signatures: await resolveSignaturePolicy(rt, false),
  });
  if (shared) {
    const moved = await shared.moveRecordsToBucket(rt, context);
    result.recordFile = moved.get(result.recordFile) ?? result.recordFile;
    if (result.restore)
      result.restore.incidentFile = moved.get(result.restore.incidentFile) ?? result.restore.incidentFile;
  }
  // The same failure exits with the same code as in restore (a missing or wrong identity is 4, not 5).
  const exitCode = result.ok ? 0 : (result.error?.exitCode ?? 5);
  const failing = result.restore?.doctor?.checks.filter((c) => !c.ok) ?? [];
  const error = result.ok
    ? undefined
    : result.error
      ? {
          code: result.error.code,
          stage: result.error.stage,
          target: result.error.target,
          message: result.error.message,
          remediation: result.error.remediation,
        }
      : {
          code: "PAAS_BACKUP_DRILL_FAILED",
          stage: "validate",
          target: result.recordFile,
          message: `drill of ${context} from ${result.snapshot} failed: ${failing.map((c) => `${c.name} (${c.detail})`).join("; ") || "validation failed"}`,
          remediation:
            "Read the drill record; fix the snapshot or the validation it fails before relying on it.",
        };
  if (rt.json)
    printEnvelope(rt, { ok: result.ok, context, mode: "live", data: [result], ...(error ? { error } : {}) });
  else
    rt.write(
      keyValues([
        ["drill", `${context} from ${result.snapshot}: ${result.ok ? "passed" : "FAILED"}`],
        [
          "failing checks",
          result.restore?.doctor?.checks
            .filter((c) => !c.ok)
            .map((c) => `${c.name} (${c.detail})`)
            .join("; ") || undefined,
        ],
        ["error", result.error?.message],
        ["record", result.recordFile],
      ]),
    );
  return exitCode;
}

export async function drillStatusCommand(
  rt: Runtime,
  flags: { context?: string[] | string; metricsFile?: string },
): Promise<number> {
  // `drill` itself has --context too, and commander gives it the value when it comes after
  // `status`: accept one name as well as the repeated list.
  const named =
    flags.context === undefined ? [] : Array.isArray(flags.context) ? flags.context : [flags.context];
  const contexts = named.map(validateContextName);
  // A named context with neither state nor snapshots is a typo: the unknown-context error, not a
  // made-up "overdue" row.
  for (const context of contexts) await requireKnownContext(rt, context);
  // An s3:// root: the drill records live in the bucket (`records/<context>/drills/`, where drill
  // moves them), and every context is every one the fleet's hosts report or holds records for.
  const shared = rt.shared ? await import("../ops/shared.js") : null;
  const status = await drillStatus({
    fs: rt.fs,
    backupRoot: shared ? rt.shared!.url : rt.backupRoot,
    ...(shared
      ? {
          records: (context: string) => shared.sharedRecords(rt, context, "drills"),
          allContexts: () => shared.sharedRecordContexts(rt),
        }
      : {}),
    contexts,
    mandatory: rt.config.mandatoryDrillContexts,
    now: rt.clock(),
  });
  const overdue = status.filter((s) => s.mandatory && s.overdue);
  if (flags.metricsFile)
    await writeMetricsFile(rt, flags.metricsFile, await renderDrillMetrics(status, rt.clock()));
  const error = overdue.length
    ? {
        code: "PAAS_BACKUP_DRILL_OVERDUE",
        stage: "drill",
        target: overdue.map((s) => s.context).join(","),
        message: `a mandatory restore drill is overdue for ${overdue.map((s) => `${s.context} (due ${s.nextDue.slice(0, 10)})`).join(", ")}`,
        remediation: `Run \`paas-backup drill --context ${overdue[0]!.context}\` (policy §7.4).`,
      }
    : undefined;
  if (rt.json)
    printEnvelope(rt, {
      ok: overdue.length === 0,
      context: "",
      mode: "live",
      data: status,
      ...(error ? { error } : {}),
    });
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
