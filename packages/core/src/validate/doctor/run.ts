import {
  contextShow,
  contextVaultOutsideRepo,
  eventsReadable,
  notBlocked,
  permissions,
  plaintextSecrets,
  stateFilesParse,
  stateRootOutsideRepo,
  stateRootResolved,
  type DoctorCheckFn,
} from "./checks.js";
import { DoctorRun } from "./facts.js";
import type { DoctorCheck, DoctorOptions, DoctorReport } from "./types.js";

/** The checks, in the order they are reported. */
export const DOCTOR_CHECKS: readonly DoctorCheckFn[] = [
  stateRootResolved,
  stateRootOutsideRepo,
  stateFilesParse,
  contextShow,
  contextVaultOutsideRepo,
  eventsReadable,
  plaintextSecrets,
  permissions,
  notBlocked,
];

/**
 * The post-restore validation of policy §6, as pure checks over the injected filesystem:
 * si's doctor checks (isolation from git), each state file's shape, the event logs, secrets,
 * permissions, `context show` and `events list`.
 */
export async function runDoctor(options: DoctorOptions): Promise<DoctorReport> {
  const run = new DoctorRun(options);
  const checks: DoctorCheck[] = [];
  for (const doctorCheck of DOCTOR_CHECKS) {
    const result = await doctorCheck(run);
    if (result) checks.push(result);
  }
  return {
    ok: checks.every((c) => c.ok),
    command: "doctor",
    context: options.context,
    mode: "live",
    count: checks.length,
    checks,
    contextShow: await run.contextShow(),
    events: await run.eventRecords(),
  };
}
