import type { FileSystem } from "../fs/types.js";
import type { SigningKey } from "../signing/sshsig.js";
import { PaasBackupError, SafetyError } from "../errors.js";
import { validateContextName } from "../policy/context.js";
import { contextDir, dirname, join } from "../util/paths.js";
import { writeFileAtomic } from "../util/atomic.js";
import { exists, readdirOrEmpty, readTextOrNull } from "../util/optional-reads.js";
import { newIncidentRecord, writeIncident, type EventLines } from "../records/incident.js";
import { BLOCK_FILE } from "../records/block.js";

/**
 * The swap journal: how restore and rollback survive a kill at any point (issue 9 §1).
 *
 * A swap is an ordered list of renames on one filesystem. One of them is the pivot (the staged
 * context becoming live, or the moved-aside one coming back): before it, the old state is still
 * whole and a crash is undone; after it, the new state is in place and a crash is completed.
 * Before every rename the journal is rewritten (temporary file, fsync, rename, fsync of the
 * folder) with the step about to run, every path involved and where the vault is at that moment,
 * so the next command (recoverContext) can tell, by looking at which paths exist, how far it got.
 *
 *   <state_root>/.paas-backup/journal/<context>.json
 */
export const JOURNAL_SCHEMA = "paas-backup/journal@1";

export interface SwapStep {
  /** what the rename does, e.g. "live-aside", "staged-live", "keep vault" */
  name: string;
  from: string;
  to: string;
}

export interface SwapJournal {
  schema: typeof JOURNAL_SCHEMA;
  operation: "restore" | "rollback";
  context: string;
  ticket: string;
  operator: string;
  startedAt: string;
  /** the phase the operation was in when the journal was written */
  phase: string;
  /** index of the step about to run; steps.length once the swap is done */
  next: number;
  steps: SwapStep[];
  /** index of the pivot step */
  pivot: number;
  /** where the context's vault/ is at this moment (null when it has none) */
  vault: string | null;
  /** folders to remove once the swap is completed or undone */
  cleanup: string[];
  /** files to write once the swap is completed (e.g. the rollback pointer) */
  writeOnComplete: { path: string; content: string }[];
  /** files to rename once the swap is completed (e.g. retiring the rollback pointer) */
  renameOnComplete: { from: string; to: string }[];
}

/** Where paas-backup keeps staging, moved-aside contents and journals: under the state root, outside contexts/. */
export function workDir(stateRoot: string): string {
  return join(stateRoot, ".paas-backup");
}

export function journalPath(stateRoot: string, context: string): string {
  return join(workDir(stateRoot), "journal", `${context}.json`);
}

export async function writeJournal(fs: FileSystem, stateRoot: string, journal: SwapJournal): Promise<void> {
  const path = journalPath(stateRoot, journal.context);
  await fs.mkdir(dirname(path), { recursive: true, mode: 0o700 });
  await writeFileAtomic(fs, path, `${JSON.stringify(journal, null, 2)}\n`);
}

export async function readJournal(
  fs: FileSystem,
  stateRoot: string,
  context: string,
): Promise<SwapJournal | null> {
  const path = journalPath(stateRoot, context);
  const text = await readTextOrNull(fs, path);
  if (text === null) return null;
  try {
    const parsed = JSON.parse(text) as SwapJournal;
    if (parsed.schema !== JOURNAL_SCHEMA || !Array.isArray(parsed.steps)) throw new Error("not a journal");
    return parsed;
  } catch {
    // Written atomically, so a journal we cannot read was not written by us: never guess.
    throw new SafetyError(
      "PAAS_BACKUP_JOURNAL_UNREADABLE",
      `the swap journal ${path} cannot be read; ${context} may be half swapped`,
      {
        path,
        remediation: `Look at ${contextDir(stateRoot, context)} and ${workDir(stateRoot)}/moved-aside/ by hand, put the context back, then remove ${path}.`,
        stage: "recover",
      },
    );
  }
}

/** Where the vault is after `done` steps have run. */
function vaultAfter(
  journal: Pick<SwapJournal, "steps">,
  initial: string | null,
  done: number,
): string | null {
  let at = initial;
  if (!at) return null;
  for (const step of journal.steps.slice(0, done)) {
    if (at === step.from) at = step.to;
    else if (at.startsWith(`${step.from}/`)) at = step.to + at.slice(step.from.length);
  }
  return at;
}

async function stepDone(fs: FileSystem, step: SwapStep): Promise<boolean> {
  return !(await exists(fs, step.from)) && (await exists(fs, step.to));
}

async function renameStep(fs: FileSystem, from: string, to: string): Promise<void> {
  if (await exists(fs, to)) {
    // rename(2) would replace an empty folder or a file silently: never overwrite anything.
    throw new SafetyError(
      "PAAS_BACKUP_SWAP_CONFLICT",
      `cannot move ${from} to ${to}: something is already there`,
      {
        path: to,
        remediation: `Move ${to} out of the way by hand (nothing was overwritten), then rerun the command; it finishes the swap.`,
        stage: "swap",
      },
    );
  }
  await fs.mkdir(dirname(to), { recursive: true, mode: 0o700 });
  await fs.rename(from, to);
}

async function syncFolders(fs: FileSystem, paths: Iterable<string>): Promise<void> {
  for (const dir of new Set([...paths].map((p) => dirname(p)))) {
    await fs.sync(dir).catch((err: { code?: string }) => {
      if (err.code !== "ENOENT") throw err;
    });
  }
}

/**
 * Run a journaled swap: journal, rename, journal, rename… Ends with the journal in phase
 * `afterPhase` (kept, so a crash in what follows is still seen). `progress.done` counts the
 * renames made, so a caller can tell whether a failure came before or after the pivot.
 */
export async function runSwap(
  fs: FileSystem,
  stateRoot: string,
  journal: SwapJournal,
  initialVault: string | null,
  afterPhase: string,
  progress: { done: number } = { done: 0 },
): Promise<void> {
  for (let i = 0; i < journal.steps.length; i++) {
    const step = journal.steps[i]!;
    await writeJournal(fs, stateRoot, {
      ...journal,
      phase: `swap:${step.name}`,
      next: i,
      vault: vaultAfter(journal, initialVault, i),
    });
    await renameStep(fs, step.from, step.to);
    progress.done = i + 1;
  }
  await syncFolders(
    fs,
    journal.steps.flatMap((s) => [s.from, s.to]),
  );
  await finishComplete(fs, journal);
  await writeJournal(fs, stateRoot, {
    ...journal,
    phase: afterPhase,
    next: journal.steps.length,
    vault: vaultAfter(journal, initialVault, journal.steps.length),
  });
}

async function finishComplete(fs: FileSystem, journal: SwapJournal): Promise<void> {
  for (const w of journal.writeOnComplete) {
    await fs.mkdir(dirname(w.path), { recursive: true, mode: 0o700 });
    await writeFileAtomic(fs, w.path, w.content);
  }
  for (const r of journal.renameOnComplete) {
    if (await exists(fs, r.from)) await fs.rename(r.from, r.to);
  }
  for (const dir of journal.cleanup) await fs.rm(dir, { recursive: true, force: true });
}

export async function removeJournal(fs: FileSystem, stateRoot: string, context: string): Promise<void> {
  await fs.rm(journalPath(stateRoot, context), { force: true });
  await fs.sync(dirname(journalPath(stateRoot, context))).catch(() => undefined);
}

export interface RecoveryResult {
  context: string;
  operation: SwapJournal["operation"];
  /** completed: the new state was already live and the rest of the swap was done; undone: the old state was put back */
  action: "completed" | "undone";
  /** the phase the interrupted operation was in */
  phase: string;
  ticket: string;
  vault: string | null;
  incidentFile: string | null;
  message: string;
}

/**
 * Finish or undo a swap that a crash interrupted (issue 9 §1). Every command that touches a
 * context calls this first, holding the context's lock. Returns null when there was nothing to do.
 *
 * Before the pivot rename ran, the swap is undone: every rename already made is reversed (newest
 * first) and the staging folder removed, so the context is exactly as before. From the pivot on,
 * it is completed: the renames left (the vault and the files the restore keeps) are made. A
 * completed restore carries the block marker staged with it, so the context stays blocked until
 * `doctor` passes and `unblock` (or `rollback`) is run. Either way an incident record says so.
 */
export interface RecoverOptions {
  fs: FileSystem;
  stateRoot: string;
  backupRoot: string;
  context: string;
  clock: () => Date;
  operator?: string;
  /** signs the recovery's incident record */
  signer?: SigningKey;
  /**
   * undo even past the pivot: `rollback` of a restore whose swap stopped part way returns to the
   * previous contents rather than completing it (the renames made are reversed, newest first; the
   * staged folder the restored contents go back to is kept, not removed)
   */
  undo?: boolean;
  /** the event lines the caller carried into the contents this recovery leaves live, named in its record */
  eventLines?: EventLines[];
}

/**
 * Finish or undo a swap a crash interrupted. Steps: read the journal (dropping a torn write of
 * it) → past the pivot, complete the remaining renames; before it, reverse those made → record
 * the recovery as an incident → remove the journal, last, so a crash anywhere before resumes here.
 */
export async function recoverContext(options: RecoverOptions): Promise<RecoveryResult | null> {
  const { fs, stateRoot } = options;
  const context = validateContextName(options.context);
  const journal = await readJournal(fs, stateRoot, context);
  // a journal write a crash cut short never took effect: only its temporary file is left
  const partial = join(workDir(stateRoot), "journal", `.${context}.json.tmp.partial`);
  if (await exists(fs, partial)) await fs.rm(partial, { force: true });
  if (!journal) return null;
  const startedAt = options.clock();
  const pivot = journal.steps[journal.pivot];
  const forcedUndo = options.undo === true && journal.operation === "restore";
  const pivotDone =
    !forcedUndo &&
    (journal.next > journal.pivot ||
      (pivot !== undefined && journal.next === journal.pivot && (await stepDone(fs, pivot))));
  let action: RecoveryResult["action"];
  try {
    if (pivotDone) {
      await completeSwap(fs, journal);
      action = "completed";
    } else {
      await undoSwap(fs, journal, forcedUndo);
      action = "undone";
    }
  } catch (err) {
    if (err instanceof PaasBackupError) throw err;
    throw recoveryFailed(journal, stateRoot, context, err);
  }
  const live = contextDir(stateRoot, context);
  const vault = (await exists(fs, join(live, "vault"))) ? join(live, "vault") : null;
  const blocked = await exists(fs, join(live, BLOCK_FILE));
  const message = recoveryMessage(journal, context, action, blocked);
  const record = newIncidentRecord({
    kind: "recovery",
    ticket: journal.ticket,
    context,
    stateRoot,
    operator: options.operator ?? journal.operator,
    startedAt: startedAt.toISOString(),
    outcome: "recovered",
    ...(options.eventLines?.length ? { eventLines: options.eventLines } : {}),
  });
  record.endedAt = options.clock().toISOString();
  record.vault = { at: vault };
  record.recovery = {
    operation: journal.operation,
    action,
    phase: journal.phase,
    interruptedAt: journal.startedAt,
    message,
  };
  const incidentFile = await writeIncident(fs, options.backupRoot, record, "incidents", options.signer).catch(
    () => null,
  );
  await removeJournal(fs, stateRoot, context);
  return {
    context,
    operation: journal.operation,
    action,
    phase: journal.phase,
    ticket: journal.ticket,
    vault,
    incidentFile,
    message,
  };
}

/**
 * Only the step in flight can be half known; those before it ran, those after it did not
 * (existence alone is ambiguous: a later step's source may not exist yet while its target does).
 */
function stepInFlight(journal: SwapJournal): number {
  return Math.min(journal.next, journal.steps.length - 1);
}

/**
 * Past the pivot: the renames from the one in flight on are made (those whose source is still
 * there), flushed, then the swap's own finish (or, once validation began, only its clean-up).
 */
async function completeSwap(fs: FileSystem, journal: SwapJournal): Promise<void> {
  for (const step of journal.steps.slice(Math.max(stepInFlight(journal), 0))) {
    if (await exists(fs, step.from)) await renameStep(fs, step.from, step.to);
  }
  await syncFolders(
    fs,
    journal.steps.flatMap((s) => [s.from, s.to]),
  );
  if (!journal.phase.startsWith("validate") && !journal.phase.startsWith("record"))
    await finishComplete(fs, journal);
  else for (const dir of journal.cleanup) await fs.rm(dir, { recursive: true, force: true });
}

/**
 * Before the pivot (or a forced undo): the renames made are reversed, newest first, and flushed;
 * the clean-up runs unless the staged folder is to be kept (a forced undo goes back to it).
 */
async function undoSwap(fs: FileSystem, journal: SwapJournal, forcedUndo: boolean): Promise<void> {
  for (const step of journal.steps.slice(0, stepInFlight(journal) + 1).reverse()) {
    if (await stepDone(fs, step)) await renameStep(fs, step.to, step.from);
  }
  await syncFolders(
    fs,
    journal.steps.flatMap((s) => [s.from, s.to]),
  );
  if (!forcedUndo) for (const dir of journal.cleanup) await fs.rm(dir, { recursive: true, force: true });
}

/** A recovery that failed keeps its journal: the next command on the context resumes it. */
function recoveryFailed(journal: SwapJournal, stateRoot: string, context: string, err: unknown): SafetyError {
  return new SafetyError(
    "PAAS_BACKUP_RECOVERY_FAILED",
    `could not finish the interrupted ${journal.operation} of ${context} (${(err as Error).message}); the journal ${journalPath(stateRoot, context)} is kept`,
    {
      path: journalPath(stateRoot, context),
      remediation:
        "Fix the filesystem problem named here, then rerun any paas-backup command on this context: it resumes the recovery.",
      stage: "recover",
      cause: err,
    },
  );
}

/** What the operator is told: undone, or completed (a restore's still blocked when its validation did not finish). */
function recoveryMessage(
  journal: SwapJournal,
  context: string,
  action: RecoveryResult["action"],
  blocked: boolean,
): string {
  return action === "undone"
    ? `an interrupted ${journal.operation} of ${context} (${journal.phase}) was undone: the context is as it was before it`
    : journal.operation === "restore"
      ? blocked
        ? `an interrupted restore of ${context} (${journal.phase}) was completed; its validation did not finish, so the context stays blocked: run doctor, then unblock, or rollback`
        : `an interrupted restore of ${context} (${journal.phase}) was completed; its validation had passed`
      : `an interrupted rollback of ${context} (${journal.phase}) was completed`;
}

/** The contexts that have an unfinished journal (even when a swap left them missing from contexts/). */
export async function contextsWithJournal(fs: FileSystem, stateRoot: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdirOrEmpty(fs, join(workDir(stateRoot), "journal"))) {
    if (e.kind === "file" && e.name.endsWith(".json") && !e.name.startsWith("."))
      out.push(e.name.slice(0, -".json".length));
  }
  return out.sort();
}

export async function hasJournal(fs: FileSystem, stateRoot: string, context: string): Promise<boolean> {
  return exists(fs, journalPath(stateRoot, context));
}
