import type { FileSystem } from "../fs/types.js";
import { UsageError, ValidationError } from "../errors.js";
import { validateContextName } from "../policy/context.js";
import type { SecretAcknowledgement, SecretAllowance } from "../policy/secrets.js";
import { runDoctor, type DoctorReport } from "../validate/doctor.js";
import { clearBlock, readBlock, type BlockRecord } from "../records/block.js";
import { newIncidentRecord, writeIncident } from "../records/incident.js";
import { inContext, type ContextCallOptions } from "../context/session.js";
import type { ExternalDoctorResult } from "./restore.js";

export interface UnblockOptions extends ContextCallOptions {
  fs: FileSystem;
  stateRoot: string;
  backupRoot: string;
  context: string;
  ticket: string;
  operator: string;
  clock: () => Date;
  secretAllow?: readonly SecretAllowance[];
  secretAcknowledged?: readonly SecretAcknowledgement[];
  allowRepoState?: boolean;
  /**
   * the external doctor to run: the operator's --doctor-cmd, else the one the marker recorded. A
   * block that recorded a doctor is cleared by that doctor only: another command is refused
   * unless overrideDoctor, and the incident record then names both.
   */
  externalDoctor?: { command: string; run: (stateRoot: string) => Promise<ExternalDoctorResult> };
  /** how to run a recorded command when the caller gave none (the CLI runs it with sh -c) */
  runRecordedDoctor?: (command: string) => (stateRoot: string) => Promise<ExternalDoctorResult>;
  /** run externalDoctor although the block recorded another (unblock --override-doctor) */
  overrideDoctor?: boolean;
}

export interface UnblockResult {
  context: string;
  /** the marker that was cleared, or null when the context was not blocked */
  cleared: BlockRecord | null;
  doctor: DoctorReport | null;
  externalDoctor: ExternalDoctorResult | null;
  incidentFile: string | null;
}

/**
 * Lift a post-restore block (policy §8.2) once validation passes: paas-backup's doctor and, when
 * the block recorded one, the external doctor that blocked (issue 10 §3), in the context's session.
 */
export async function unblockContext(options: UnblockOptions): Promise<UnblockResult> {
  const context = validateContextName(options.context);
  if (!options.ticket.trim()) {
    throw new UsageError("PAAS_BACKUP_TICKET_REQUIRED", "unblock needs --ticket <incident-id>", {
      remediation: "Pass the incident id the block was recorded under.",
      stage: "arguments",
    });
  }
  // In the context's session: locked, and a swap a crash interrupted finished or undone first.
  return inContext({ ...options, command: "unblock", guardStateRoot: false }, () =>
    unblockInSession(options, context),
  );
}

async function unblockInSession(options: UnblockOptions, context: string): Promise<UnblockResult> {
  const { fs, stateRoot, clock } = options;
  const block = await readBlock(fs, stateRoot, context);
  if (!block) return { context, cleared: null, doctor: null, externalDoctor: null, incidentFile: null };
  const recorded = block.externalDoctor?.command ?? null;
  const given = options.externalDoctor?.command ?? null;
  // `--doctor-cmd "echo '{\"ok\": true}'"` must not clear what `si paas doctor` blocked: checked
  // before any doctor runs
  const overridden = recorded !== null && given !== null && given.trim() !== recorded.trim();
  if (overridden && !options.overrideDoctor) {
    throw new UsageError(
      "PAAS_BACKUP_DOCTOR_MISMATCH",
      `${context} was blocked by the external doctor \`${recorded}\`; unblock runs that doctor, not \`${given}\``,
      {
        remediation: `Run unblock without --doctor-cmd (the recorded doctor runs), or with --doctor-cmd ${JSON.stringify(recorded)}; to pass it over deliberately, add --override-doctor (the incident record under --ticket names both commands).`,
        stage: "arguments",
        data: { recordedDoctor: recorded, givenDoctor: given },
      },
    );
  }
  const startedAt = clock().toISOString();
  const report = await runDoctor({
    fs,
    stateRoot,
    context,
    ignoreBlock: true,
    ...(options.secretAllow ? { secretAllow: options.secretAllow } : {}),
    ...(options.secretAcknowledged ? { secretAcknowledged: options.secretAcknowledged } : {}),
    allowRepoState: options.allowRepoState ?? false,
  });
  if (!report.ok) {
    throw new ValidationError(
      "PAAS_BACKUP_STILL_FAILING",
      `${context} stays blocked: doctor still fails (${report.checks
        .filter((c) => !c.ok)
        .map((c) => c.name)
        .join(", ")})`,
      {
        path: stateRoot,
        remediation: `Fix what \`paas-backup doctor --context ${context}\` reports, then unblock again.`,
        stage: "validate",
        data: { checks: report.checks },
      },
    );
  }
  let external: ExternalDoctorResult | null = null;
  const doctor =
    options.externalDoctor ??
    (recorded && options.runRecordedDoctor
      ? { command: recorded, run: options.runRecordedDoctor(recorded) }
      : null);
  if (recorded && !doctor) {
    throw new UsageError(
      "PAAS_BACKUP_DOCTOR_REQUIRED",
      `${context} was blocked by the external doctor \`${recorded}\`; it has to pass before unblock`,
      {
        remediation: `Pass --doctor-cmd with that doctor (or its replacement) so unblock can run it.`,
        stage: "validate",
      },
    );
  }
  if (doctor) {
    external = await doctor.run(stateRoot);
    if (!external.ok) {
      throw new ValidationError(
        "PAAS_BACKUP_STILL_FAILING",
        `${context} stays blocked: the external doctor \`${doctor.command}\` still fails (${external.detail})`,
        {
          path: stateRoot,
          remediation: `Fix what \`${doctor.command}\` reports, then unblock again.`,
          stage: "validate",
          data: { externalDoctor: external },
        },
      );
    }
  }
  // The record first, then the marker: a kill between them leaves a context still blocked with a
  // record of the unblock (rerun it), never an unblocked context with no record (issue 20).
  const record = newIncidentRecord({
    kind: "unblock",
    ticket: options.ticket,
    context,
    stateRoot,
    operator: options.operator,
    startedAt,
    outcome: "unblocked",
  });
  record.doctor = { ok: true, checks: report.checks };
  record.externalDoctor = external;
  if (overridden) record.doctorOverride = { recorded: recorded!, used: given! };
  record.endedAt = clock().toISOString();
  const incidentFile = await writeIncident(fs, options.backupRoot, record, "incidents", options.signer);
  await clearBlock(fs, stateRoot, context);
  return { context, cleared: block, doctor: report, externalDoctor: external, incidentFile };
}
