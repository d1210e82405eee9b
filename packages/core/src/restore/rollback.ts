import { randomUUID } from "node:crypto";
import type { FileSystem } from "../fs/types.js";
import { isNotFound, UsageError } from "../errors.js";
import { validateContextName } from "../policy/context.js";
import { contextDir, join } from "../util/paths.js";
import { exists } from "../util/optional-reads.js";
import { writeIncident, type IncidentRecord } from "../records/incident.js";
import { workDir } from "./restore.js";

export interface RollbackResult {
  context: string;
  restoredFrom: string;
  /** the contents that were live before the rollback, kept (never deleted) */
  movedAsideTo: string;
  incidentFile: string;
}

/**
 * Put back what the last restore moved aside. The restored contents are themselves moved aside,
 * not deleted, and the live vault/ goes with the context, so an operator can always go back.
 */
export async function rollbackRestore(options: { fs: FileSystem; stateRoot: string; backupRoot: string; context: string; ticket: string; operator: string; clock: () => Date }): Promise<RollbackResult> {
  const { fs, stateRoot, clock } = options;
  const context = validateContextName(options.context);
  const journalPath = join(workDir(stateRoot), `${context}.last-restore.json`);
  let journal: { aside: string | null; ticket: string };
  try {
    journal = JSON.parse(Buffer.from(await fs.readFile(journalPath)).toString("utf8")) as { aside: string | null; ticket: string };
  } catch (err) {
    if (!isNotFound(err)) throw err;
    throw new UsageError("PAAS_BACKUP_NOTHING_TO_ROLL_BACK", `no restore of ${context} to roll back (${journalPath} does not exist)`, {
      path: journalPath,
      remediation: "Rollback undoes the last restore only; earlier contents are under <state_root>/.paas-backup/moved-aside/.",
      stage: "rollback",
    });
  }
  if (!journal.aside || !(await exists(fs, journal.aside))) {
    throw new UsageError("PAAS_BACKUP_NOTHING_TO_ROLL_BACK", `the last restore of ${context} had no previous contents to put back`, {
      path: journalPath,
      remediation: "The context did not exist before that restore; nothing to return to.",
      stage: "rollback",
    });
  }
  const startedAt = clock();
  const live = contextDir(stateRoot, context);
  const stamp = startedAt.toISOString().replace(/[-:]/g, "").replace(/\.\d+Z$/, "Z");
  const movedAside = join(workDir(stateRoot), "moved-aside", `${context}.${stamp}.rolled-back.${randomUUID().slice(0, 8)}`);
  await fs.mkdir(join(workDir(stateRoot), "moved-aside"), { recursive: true, mode: 0o700 });
  if (await exists(fs, live)) await fs.rename(live, movedAside);
  await fs.rename(journal.aside, live);
  if ((await exists(fs, join(movedAside, "vault"))) && !(await exists(fs, join(live, "vault")))) await fs.rename(join(movedAside, "vault"), join(live, "vault"));
  await fs.rename(journalPath, `${journalPath}.rolled-back.${stamp}`);
  const record: IncidentRecord = {
    schema: "paas-backup/incident@1",
    kind: "rollback",
    ticket: options.ticket,
    context,
    stateRoot,
    snapshot: null,
    requestedSnapshot: "",
    fallback: { used: false },
    operator: options.operator,
    startedAt: startedAt.toISOString(),
    endedAt: clock().toISOString(),
    dryRun: false,
    movedAsideTo: movedAside,
    vault: null,
    doctor: null,
    externalDoctor: null,
    outcome: "rolled-back",
    error: null,
  };
  const incidentFile = await writeIncident(fs, options.backupRoot, record);
  return { context, restoredFrom: journal.aside, movedAsideTo: movedAside, incidentFile };
}
