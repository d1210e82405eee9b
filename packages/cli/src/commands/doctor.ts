import { allowRepoStateFrom } from "@paas-backup/core/policy";
import { runDoctor } from "@paas-backup/core/validate";
import { rollbackRestore, unblockContext } from "@paas-backup/core/restore";
import { withContext } from "@paas-backup/core/context";
import { UsageError } from "@paas-backup/core/errors";
import { resolveRecordSigner } from "../options/signing.js";
import { resolveOperator, type Runtime } from "../runtime.js";
import { keyValues, table } from "../render/text.js";
import { describeEventLines } from "../render/restore.js";
import { printEnvelope } from "../envelope.js";
import { assertDoctorRunnable, externalDoctorRunner } from "../host/doctor.js";
import { lockedBy, sessionOptions } from "../options/lock.js";
import { requireContext, requireKnownContext } from "../options/context.js";

export async function doctorCommand(rt: Runtime, flags: { context?: string }): Promise<number> {
  const context = requireContext(flags.context);
  await requireKnownContext(rt, context);
  const report = await runDoctor({
    fs: rt.fs,
    stateRoot: rt.stateRoot,
    context,
    secretAllow: rt.config.secretAllow,
    secretAcknowledged: rt.config.secretAcknowledged,
    allowRepoState: allowRepoStateFrom(rt.env),
  });
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
        : {
            error: {
              code: "PAAS_BACKUP_DOCTOR_FAILED",
              stage: "validate",
              target: rt.stateRoot,
              message: `doctor checks fail for ${context}: ${failing.map((c) => `${c.name} (${c.detail})`).join("; ")}`,
              remediation: "Fix what each failing check names, then run doctor again.",
            },
          }),
    });
  } else {
    rt.write(
      table([
        ["CHECK", "OK", "DETAIL"],
        ...report.checks.map((c) => [c.name, c.ok ? "ok" : "FAIL", c.detail]),
      ]),
    );
  }
  return report.ok ? 0 : 5;
}

export async function unblockCommand(
  rt: Runtime,
  flags: {
    context?: string;
    ticket?: string;
    operator?: string;
    doctorCmd?: string;
    overrideDoctor?: boolean;
  },
): Promise<number> {
  const context = requireContext(flags.context);
  if (flags.doctorCmd) assertDoctorRunnable(flags.doctorCmd, rt.env);
  const signer = await resolveRecordSigner(rt);
  const signed = { ...sessionOptions(rt, context, "unblock"), ...(signer ? { signer } : {}) };
  const result = await withContext(signed, (session) =>
    unblockContext({
      session,
      ...(signer ? { signer } : {}),
      fs: rt.fs,
      stateRoot: rt.stateRoot,
      backupRoot: rt.backupRoot,
      context,
      ticket: flags.ticket ?? "",
      operator: resolveOperator(flags.operator, rt.env),
      clock: rt.clock,
      secretAllow: rt.config.secretAllow,
      secretAcknowledged: rt.config.secretAcknowledged,
      allowRepoState: allowRepoStateFrom(rt.env),
      ...(flags.doctorCmd
        ? { externalDoctor: { command: flags.doctorCmd, run: externalDoctorRunner(flags.doctorCmd, rt.env) } }
        : {}),
      overrideDoctor: flags.overrideDoctor === true,
      runRecordedDoctor: (command) => {
        assertDoctorRunnable(command, rt.env);
        return externalDoctorRunner(command, rt.env);
      },
    }),
  );
  // An s3:// root: the incident record belongs to the bucket, not this host's cache.
  if (rt.shared && result.incidentFile) {
    const moved = await (await import("../ops/shared.js")).moveRecordsToBucket(rt, context);
    result.incidentFile = moved.get(result.incidentFile) ?? result.incidentFile;
  }
  if (!result.cleared) {
    if (rt.json)
      printEnvelope(rt, { ok: true, command: "unblock", context, mode: "live", count: 0, data: [] });
    else rt.write(`${context} is not blocked\n`);
    return 0;
  }
  if (rt.json)
    printEnvelope(rt, {
      ok: true,
      command: "unblock",
      context,
      mode: "live",
      count: 1,
      data: [
        { cleared: result.cleared, externalDoctor: result.externalDoctor, incidentFile: result.incidentFile },
      ],
    });
  else
    rt.write(
      keyValues([
        ["unblocked", context],
        ["was blocked since", result.cleared.blockedAt],
        [
          "external doctor",
          result.externalDoctor
            ? `${result.externalDoctor.command}: ${result.externalDoctor.detail}`
            : undefined,
        ],
        ["incident", result.incidentFile ?? undefined],
      ]),
    );
  return 0;
}

export async function rollbackCommand(
  rt: Runtime,
  flags: { context?: string; ticket?: string; operator?: string },
): Promise<number> {
  const context = requireContext(flags.context);
  if (!flags.ticket?.trim()) {
    throw new UsageError("PAAS_BACKUP_TICKET_REQUIRED", "rollback needs --ticket <incident-id>", {
      remediation: "Pass the incident id of the restore you undo.",
      stage: "arguments",
    });
  }
  // The command's spec has `recover: true`, so a restore whose swap stopped part way has already
  // been finished by recovery here; rollback then undoes that finished restore (lines carried).
  // Only an SDK caller of rollbackRestore, without recovery first, meets the undo of a partial swap.
  const signer = await resolveRecordSigner(rt);
  const result = await rollbackRestore({
    ...lockedBy(rt, context, "rollback"),
    ...(signer ? { signer } : {}),
    fs: rt.fs,
    stateRoot: rt.stateRoot,
    backupRoot: rt.backupRoot,
    context,
    ticket: flags.ticket!,
    operator: resolveOperator(flags.operator, rt.env),
    clock: rt.clock,
  });
  // An s3:// root: the incident record (and event lines kept aside) belong to the bucket.
  if (rt.shared) {
    const moved = await (await import("../ops/shared.js")).moveRecordsToBucket(rt, context);
    result.incidentFile = moved.get(result.incidentFile) ?? result.incidentFile;
    for (const line of result.eventLines)
      if (line.keptIn) line.keptIn = moved.get(line.keptIn) ?? line.keptIn;
  }
  if (rt.json)
    printEnvelope(rt, { ok: true, command: "rollback", context, mode: "live", count: 1, data: [result] });
  else
    rt.write(
      keyValues([
        ["rolled back", context],
        ["put back", result.restoredFrom],
        ["kept in place", result.kept.join(", ") || undefined],
        ["restored contents kept in", result.movedAsideTo],
        ["event lines since the restore", describeEventLines(result, "the log put back")],
        ["incident", result.incidentFile],
      ]),
    );
  return 0;
}
