import { randomUUID } from "node:crypto";
import type { FileSystem } from "../fs/types.js";
import { inContext, type ContextCallOptions } from "../context/session.js";
import { isNotFound, UsageError } from "../errors.js";
import { validateContextName } from "../policy/context.js";
import { contextDir, join } from "../util/paths.js";
import { exists } from "../util/optional-reads.js";
import { newIncidentRecord, writeIncident } from "../records/incident.js";
import {
  JOURNAL_SCHEMA,
  readJournal,
  recoverContext,
  removeJournal,
  runSwap,
  workDir,
  type SwapJournal,
} from "../context/journal.js";
import { lastRestorePath } from "./restore.js";
import { EVENT_LOGS } from "../policy/selection.js";
import { hashFile } from "../util/hash.js";
import { lstatOrNull } from "../util/optional-reads.js";
import {
  applyEventLines,
  catchUpEventLines,
  planEventLines,
  type EventLines,
  type SnapshotLog,
} from "./event-tails.js";

export interface RollbackResult {
  context: string;
  restoredFrom: string;
  /** the contents that were live before the rollback, kept (never deleted) */
  movedAsideTo: string;
  /** what stayed in place because the restore had not touched it (vault/ among them) */
  kept: string[];
  incidentFile: string;
  /**
   * the event lines si wrote since the restore, carried into the contents put back: appended to
   * each log they extend, or kept in a file of the incident (issue 20)
   */
  eventLines: EventLines[];
}

interface LastRestore {
  aside: string | null;
  ticket: string;
  /** entries the restore kept from the old contents; older pointers (before issue 10) have none but vault */
  kept?: string[];
  /** what the restore made live in each event log (older pointers have none) */
  restoredLogs?: Record<string, SnapshotLog>;
}

function restoredLogsOf(pointer: Pick<LastRestore, "restoredLogs"> | null): Map<string, SnapshotLog> {
  return new Map(Object.entries(pointer?.restoredLogs ?? {}));
}

/** A restore whose journal is still in its swap: the renames it made, where the old and restored contents are. */
async function unfinishedRestore(
  fs: FileSystem,
  stateRoot: string,
  context: string,
): Promise<{ aside: string | null; staged: string; journal: SwapJournal } | null> {
  const journal = await readJournal(fs, stateRoot, context);
  if (!journal || journal.operation !== "restore" || !journal.phase.startsWith("swap")) return null;
  const aside = journal.steps.find((s) => s.name === "live-aside")?.to ?? null;
  const staged = journal.steps.find((s) => s.name === "staged-live")?.from;
  return staged ? { aside, staged, journal } : null;
}

/**
 * The undo of a restore whose swap stopped past the pivot: the restored contents were live, and si
 * may have written event lines into them since. Undoing the renames takes those contents back to
 * staging, so the lines are carried first (issue 20 §1 invariant 5): appended to the logs the
 * previous contents come back with when the live log extends them, else kept in a file of the
 * incident in the backup root. A log that travels back with the previous contents (a kept entry
 * already moved into the restored folder) needs nothing. Written before the undo, into the previous
 * contents (still aside): a kill leaves the lines there as well as in the restored folder.
 */
async function carryLinesOfPartialSwap(
  options: RollbackOptions,
  context: string,
  unfinished: { aside: string | null; staged: string; journal: SwapJournal },
  stem: string,
): Promise<{ planned: Awaited<ReturnType<typeof planEventLines>>; eventLines: EventLines[] }> {
  const { fs, stateRoot } = options;
  const live = contextDir(stateRoot, context);
  const none = { planned: [], eventLines: [] };
  // before the pivot the live folder is the previous contents (or gone): nothing was written elsewhere
  if ((await exists(fs, unfinished.staged)) || (await lstatOrNull(fs, live))?.kind !== "directory")
    return none;
  const travelsBack = unfinished.journal.steps
    .filter((s) => s.name.startsWith("keep ") && s.to.startsWith(`${live}/`))
    .map((s) => s.to.slice(live.length + 1));
  const movedBack: string[] = [];
  for (const p of travelsBack) if (await exists(fs, join(live, p))) movedBack.push(p);
  const pointerEntry = unfinished.journal.writeOnComplete.find(
    (w) => w.path === lastRestorePath(stateRoot, context),
  );
  let pointer: LastRestore | null = null;
  try {
    pointer = pointerEntry ? (JSON.parse(pointerEntry.content) as LastRestore) : null;
  } catch {
    pointer = null;
  }
  const previous = unfinished.aside;
  const planned = (
    await planEventLines({
      fs,
      live,
      replaced: (path) => !movedBack.some((p) => path === p || path.startsWith(`${p}/`)),
      snapshotLogs: previous ? await logsOf(fs, previous) : new Map(),
      // with no previous contents nothing is appended: every line is kept in the incident
      stagedContext: previous ?? join(live, ".no-previous-contents"),
      exact: false,
      restoredLogs: restoredLogsOf(pointer),
    })
  ).map((p) => ({
    ...p,
    record: {
      ...p.record,
      reason: `written while the restore stood part way: ${rollbackReason(p.record.action, p.record.reason)}`,
    },
  }));
  const eventLines = await applyEventLines({
    fs,
    planned,
    stagedContext: previous ?? join(live, ".no-previous-contents"),
    backupRoot: options.backupRoot,
    context,
    stem,
  });
  return { planned, eventLines };
}

export interface RollbackOptions extends ContextCallOptions {
  fs: FileSystem;
  stateRoot: string;
  backupRoot: string;
  context: string;
  ticket: string;
  operator: string;
  clock: () => Date;
  allowRepoState?: boolean;
}

export async function rollbackRestore(options: RollbackOptions): Promise<RollbackResult> {
  // In the context's session: locked, and a swap a crash interrupted finished or undone first.
  // In the context's session, opened without its recovery: an unfinished restore is undone here
  // (put back), not completed; otherwise rollback recovers as every session does, under the lock.
  const { stateRoot: _own, ...lockOnly } = options;
  return inContext({ ...lockOnly, command: "rollback", guardStateRoot: false }, () =>
    rollbackInSession(options),
  );
}

/**
 * Put back what the last restore moved aside. Journaled like the restore's swap: the restored
 * contents are moved aside (never deleted), the old contents come back (the pivot), then the
 * entries the restore had kept (vault/ first) go back into them, by rename. The steps: undo an
 * unfinished restore's swap, else find the last restore's previous contents, choose what stays,
 * carry the event lines written since, swap, record the incident.
 */
async function rollbackInSession(options: RollbackOptions): Promise<RollbackResult> {
  const { fs, stateRoot, clock } = options;
  const context = validateContextName(options.context);
  const unfinished = await unfinishedRestore(fs, stateRoot, context);
  if (unfinished) return undoUnfinishedRestore(options, context, unfinished);
  await recoverSession(options, context);
  const { pointer, pointerPath, aside } = await lastRestoreToUndo(fs, stateRoot, context);
  const startedAt = clock();
  const live = contextDir(stateRoot, context);
  const stamp = startedAt
    .toISOString()
    .replace(/[-:]/g, "")
    .replace(/\.\d+Z$/, "Z");
  const movedAside = join(
    workDir(stateRoot),
    "moved-aside",
    `${context}.${stamp}.rolled-back.${randomUUID().slice(0, 8)}`,
  );
  await fs.mkdir(join(workDir(stateRoot), "moved-aside"), { recursive: true, mode: 0o700 });
  const liveExists = await exists(fs, live);
  const kept = liveExists ? await keptFromLive(fs, live, aside, pointer.kept ?? []) : [];
  const { lines, eventLines } = await carryEventLines(options, context, {
    live,
    liveExists,
    aside,
    kept,
    stamp,
    restoredLogs: restoredLogsOf(pointer),
  });
  const journal: SwapJournal = {
    schema: JOURNAL_SCHEMA,
    operation: "rollback",
    context,
    ticket: options.ticket,
    operator: options.operator,
    startedAt: startedAt.toISOString(),
    phase: "swap",
    next: 0,
    steps: [
      ...(liveExists ? [{ name: "live-aside", from: live, to: movedAside }] : []),
      { name: "previous-live", from: aside, to: live },
      ...kept.map((p) => ({ name: `keep ${p}`, from: join(movedAside, p), to: join(live, p) })),
    ],
    pivot: liveExists ? 1 : 0,
    vault: null,
    cleanup: [],
    writeOnComplete: [],
    renameOnComplete: [{ from: pointerPath, to: `${pointerPath}.rolled-back.${stamp}` }],
  };
  try {
    await runSwap(fs, stateRoot, journal, kept.includes("vault") ? join(live, "vault") : null, "record");
  } catch (err) {
    // Undo (before the pivot) or finish (after it) right away when the filesystem lets us; else the next command does.
    await recoverSession(options, context).catch(() => undefined);
    throw err;
  }
  // lines si appended between the read and the swap went aside with the live contents: carried too
  if (lines.some((p) => p.record.action === "append"))
    eventLines.push(...(await catchUpEventLines({ fs, planned: lines, aside: movedAside, live })));
  const record = newIncidentRecord({
    kind: "rollback",
    ticket: options.ticket,
    context,
    stateRoot,
    operator: options.operator,
    startedAt: startedAt.toISOString(),
    movedAsideTo: movedAside,
    outcome: "rolled-back",
    ...(eventLines.length ? { eventLines } : {}),
  });
  record.endedAt = clock().toISOString();
  const incidentFile = await writeIncident(fs, options.backupRoot, record, "incidents", options.signer);
  await removeJournal(fs, stateRoot, context);
  return { context, restoredFrom: aside, movedAsideTo: movedAside, kept, incidentFile, eventLines };
}

/** The session's recovery, run by rollback itself (its session is opened without it); `undo` reverses a swap. */
function recoverSession(options: RollbackOptions, context: string, undo?: true, eventLines?: EventLines[]) {
  return recoverContext({
    fs: options.fs,
    stateRoot: options.stateRoot,
    backupRoot: options.backupRoot,
    context,
    clock: options.clock,
    operator: options.operator,
    ...(options.signer ? { signer: options.signer } : {}),
    ...(undo ? { undo } : {}),
    ...(eventLines?.length ? { eventLines } : {}),
  });
}

/**
 * The restore's swap stopped part way (its error named rollback): put the previous contents
 * back by reversing the renames it made, rather than completing a swap that cannot complete,
 * carrying the event lines written into the restored contents meanwhile.
 */
async function undoUnfinishedRestore(
  options: RollbackOptions,
  context: string,
  unfinished: { aside: string | null; staged: string; journal: SwapJournal },
): Promise<RollbackResult> {
  const stamp = options
    .clock()
    .toISOString()
    .replace(/[-:]/g, "")
    .replace(/\.\d+Z$/, "Z");
  const carried = await carryLinesOfPartialSwap(
    options,
    context,
    unfinished,
    `${stamp}-rollback-${randomUUID().slice(0, 8)}`,
  );
  const recovered = await recoverSession(options, context, true, carried.eventLines);
  const eventLines = [...carried.eventLines];
  // lines si appended between the read and the undo went back to staging with the restored contents
  if (carried.planned.some((p) => p.record.action === "append"))
    eventLines.push(
      ...(await catchUpEventLines({
        fs: options.fs,
        planned: carried.planned,
        aside: unfinished.staged,
        live: contextDir(options.stateRoot, context),
      })),
    );
  return {
    context,
    restoredFrom: unfinished.aside ?? contextDir(options.stateRoot, context),
    movedAsideTo: unfinished.staged,
    kept: [],
    incidentFile: recovered?.incidentFile ?? "",
    eventLines,
  };
}

/**
 * The last restore's pointer and the previous contents it moved aside, refused (exit 2, nothing
 * changed) when there is no restore, nothing was aside, or what was aside is not a folder.
 */
async function lastRestoreToUndo(
  fs: FileSystem,
  stateRoot: string,
  context: string,
): Promise<{ pointer: LastRestore; pointerPath: string; aside: string }> {
  const pointerPath = lastRestorePath(stateRoot, context);
  let pointer: LastRestore;
  try {
    pointer = JSON.parse(Buffer.from(await fs.readFile(pointerPath)).toString("utf8")) as LastRestore;
  } catch (err) {
    if (!isNotFound(err)) throw err;
    throw new UsageError(
      "PAAS_BACKUP_NOTHING_TO_ROLL_BACK",
      `no restore of ${context} to roll back (${pointerPath} does not exist)`,
      {
        path: pointerPath,
        remediation:
          "Rollback undoes the last restore only; earlier contents are under <state_root>/.paas-backup/moved-aside/.",
        stage: "rollback",
      },
    );
  }
  if (!pointer.aside || !(await exists(fs, pointer.aside))) {
    throw new UsageError(
      "PAAS_BACKUP_NOTHING_TO_ROLL_BACK",
      `the last restore of ${context} had no previous contents to put back`,
      {
        path: pointerPath,
        remediation: "The context did not exist before that restore; nothing to return to.",
        stage: "rollback",
      },
    );
  }
  const previous = await lstatOrNull(fs, pointer.aside);
  if (previous && previous.kind !== "directory") {
    // The restore replaced a context folder that was a symbolic link (or a file): putting that
    // back would make the context a link again, and the vault's move back would go through it.
    throw new UsageError(
      "PAAS_BACKUP_CONTEXT_NOT_A_FOLDER",
      `the last restore of ${context} replaced a ${previous.kind === "symlink" ? "symbolic link" : previous.kind}, not a folder (kept at ${pointer.aside}): rollback does not put it back as the context; nothing was changed`,
      {
        path: pointer.aside,
        remediation: `The restored context stays live at ${contextDir(stateRoot, context)}. paas-backup never reads or writes through symbolic links: to return to the folder the link pointed to, move the restored context aside and that folder into its place by hand.`,
        stage: "rollback",
      },
    );
  }
  return { pointer, pointerPath, aside: pointer.aside };
}

/**
 * What the restore kept from the old contents (vault/ always) stays in place: only what is live
 * now and not already in the previous contents.
 */
async function keptFromLive(fs: FileSystem, live: string, aside: string, restoreKept: string[]) {
  const kept: string[] = [];
  for (const p of [...new Set(["vault", ...restoreKept])]) {
    if ((await exists(fs, join(live, p))) && !(await exists(fs, join(aside, p)))) kept.push(p);
  }
  return kept;
}

/**
 * The event lines si wrote since the restore must survive its undoing, as a restore keeps the
 * lines written since its snapshot (issue 20; the fleet simulation found a rollback dropping
 * them): a log the previous contents come back with is extended with them when the live log
 * extends it, else they are kept in a file of the incident. Written before the swap, into the
 * previous contents (still aside): a kill leaves them there as well as live, never nowhere.
 */
async function carryEventLines(
  options: RollbackOptions,
  context: string,
  at: {
    live: string;
    liveExists: boolean;
    aside: string;
    kept: string[];
    stamp: string;
    /** what the restore made live in each log: its lines are the snapshot's, not kept again */
    restoredLogs: Map<string, SnapshotLog>;
  },
) {
  const { fs } = options;
  const { live, aside, kept } = at;
  const lines = at.liveExists
    ? (
        await planEventLines({
          fs,
          live,
          replaced: (path) => !kept.some((p) => path === p || path.startsWith(`${p}/`)),
          snapshotLogs: await logsOf(fs, aside),
          stagedContext: aside,
          exact: false,
          restoredLogs: at.restoredLogs,
        })
      ).map((p) => ({
        ...p,
        record: { ...p.record, reason: rollbackReason(p.record.action, p.record.reason) },
      }))
    : [];
  const eventLines = await applyEventLines({
    fs,
    planned: lines,
    stagedContext: aside,
    backupRoot: options.backupRoot,
    context,
    stem: `${at.stamp}-rollback-${randomUUID().slice(0, 8)}`,
  });
  return { lines, eventLines };
}

/** Each event log of the previous contents as a restore's snapshot log: what a live log that extends it starts with. */
async function logsOf(fs: FileSystem, contents: string): Promise<Map<string, SnapshotLog>> {
  const out = new Map<string, SnapshotLog>();
  for (const path of EVENT_LOGS) {
    const st = await lstatOrNull(fs, join(contents, path));
    if (st?.kind !== "file") continue;
    const h = await hashFile(fs, join(contents, path));
    out.set(path, { size: h.bytes, sha256: h.sha256 });
  }
  return out;
}

function rollbackReason(action: EventLines["action"], reason: string): string {
  if (action === "append")
    return "the live log extends the previous contents' log: the lines written since the restore are appended to it";
  return reason.startsWith("the snapshot has no such log")
    ? "the previous contents have no such log: the live lines are kept in the incident"
    : "the live log does not extend the previous contents' log: its lines that log does not hold are kept in the incident";
}
