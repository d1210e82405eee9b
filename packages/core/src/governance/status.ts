import type { FileSystem } from "../fs/types.js";
import { recordChainHead } from "../records/chain.js";
import { isNotFound } from "../errors.js";
import { validateContextName } from "../policy/context.js";
import { listSnapshots, chainOf, type SnapshotRef } from "../repository/repository.js";
import { futureSnapshots, presentSnapshots } from "../repository/timeline.js";
import { verifyChain } from "../repository/chain-check.js";
import { isContextFolderName } from "../policy/context.js";
import { recordedCopies, type OffsiteTarget } from "../offsite/offsite.js";
import { readBlock } from "../records/block.js";
import { drillStatus, type DrillStatus } from "./drill.js";
import { contextBackupDir, contextDir, join } from "../util/paths.js";
import { writeFileAtomic } from "../util/atomic.js";
import { randomUUID } from "node:crypto";
import { appendHistory } from "../repository/history.js";

/**
 * The fleet at a glance: per context, what an operator checks every morning, from what the backup
 * root and the state root already hold (no archive is read, no target is asked: status is cheap
 * enough for cron over hundreds of contexts). Tick outcomes are recorded in the backup root for it.
 */

/** A full older than this means the daily full was missed (24 h plus slack for a slow run). */
export const FULL_MAX_AGE_MS = 26 * 3600_000;
/** A full that tick took this long ago and that still has no copy at a configured target counts as missing there. */
export const OFFSITE_GRACE_MS = 2 * 3600_000;

export interface TickSnapshotRecord {
  id: string;
  at: string;
  bytes: number;
  storedBytes: number;
  durationSeconds: number;
}

export interface TickRecord {
  schema: "paas-backup/tick@1";
  context: string;
  at: string;
  ok: boolean;
  action: "full" | "incremental" | "none";
  reason: string;
  error: { code: string; message: string } | null;
  /** the last snapshot tick took of each kind, with how long it took */
  lastSnapshots: { full?: TickSnapshotRecord; incremental?: TickSnapshotRecord };
  lastSuccessAt: string | null;
  /** the newest incident or drill record when this tick ran (the records' hash chain head, issue 24) */
  recordsHead?: { file: string; sha256: string } | null;
}

function tickPath(backupRoot: string, context: string): string {
  return join(contextBackupDir(backupRoot, context), "tick.json");
}

export async function readTickRecord(
  fs: FileSystem,
  backupRoot: string,
  context: string,
): Promise<TickRecord | null> {
  try {
    return JSON.parse(
      Buffer.from(await fs.readFile(tickPath(backupRoot, context))).toString("utf8"),
    ) as TickRecord;
  } catch (err) {
    if (isNotFound(err) || err instanceof SyntaxError) return null;
    throw err;
  }
}

/** Record one tick's outcome (atomically; the previous record's per-kind snapshots are kept). */
export async function recordTickOutcome(
  fs: FileSystem,
  backupRoot: string,
  outcome: {
    context: string;
    at: Date;
    ok: boolean;
    action: TickRecord["action"];
    reason: string;
    error: { code: string; message: string } | null;
    snapshot: {
      id: string;
      kind: "full" | "incremental";
      bytes: number;
      storedBytes: number;
      durationSeconds: number;
    } | null;
  },
): Promise<TickRecord> {
  const context = validateContextName(outcome.context);
  const previous = await readTickRecord(fs, backupRoot, context);
  const lastSnapshots = { ...(previous?.lastSnapshots ?? {}) };
  if (outcome.snapshot) {
    const { kind, ...rest } = outcome.snapshot;
    lastSnapshots[kind] = { ...rest, at: outcome.at.toISOString() };
  }
  const record: TickRecord = {
    schema: "paas-backup/tick@1",
    context,
    at: outcome.at.toISOString(),
    ok: outcome.ok,
    action: outcome.action,
    reason: outcome.reason,
    error: outcome.error,
    lastSnapshots,
    lastSuccessAt: outcome.ok ? outcome.at.toISOString() : (previous?.lastSuccessAt ?? null),
    recordsHead: await recordChainHead(fs, backupRoot, context),
  };
  await fs.mkdir(contextBackupDir(backupRoot, context), { recursive: true, mode: 0o700 });
  // Every outcome is kept for audits (tick.json holds only the last one).
  await appendHistory(fs, backupRoot, context, "ticks", {
    schema: "paas-backup/history-tick@1",
    at: record.at,
    context,
    ok: record.ok,
    action: record.action,
    reason: record.reason,
    snapshot: outcome.snapshot ? { id: outcome.snapshot.id, kind: outcome.snapshot.kind } : null,
    error: record.error,
  });
  await writeFileAtomic(
    fs,
    tickPath(backupRoot, context),
    `${JSON.stringify(record, null, 2)}\n`,
    0o600,
    randomUUID().slice(0, 8),
  );
  return record;
}

export interface OffsiteTargetStatus {
  /** the target URL (never credentials: they are not part of target URLs) */
  target: string;
  name: string;
  confirmed: number;
  /** copies a push or deep verify found missing or damaged and not yet put back */
  problems: { id: string; problem: string }[];
  immutable: number;
  newestCopy: string | null;
  /** retain-until of the newest copy */
  immutableUntil: string | null;
  /** the newest full has no copy here (and is older than the grace a tick needs to push it) */
  newestFullMissing: boolean;
}

export interface ContextStatus {
  context: string;
  ok: boolean;
  /** why this context needs attention; empty when ok */
  attention: string[];
  /** `plaintext`: the snapshot is not encrypted at home (--insecure-plaintext, the policy's shell flow) */
  newestFull: { id: string; time: string; ageSeconds: number; bytes: number; plaintext: boolean } | null;
  newestIncremental: {
    id: string;
    time: string;
    ageSeconds: number;
    bytes: number;
    plaintext: boolean;
  } | null;
  /** the snapshots at home that are not encrypted (issue 21 §5): offsite push encrypts them on the way out */
  plaintext: string[];
  /** the newest snapshot's chain: ok, or which link is missing */
  chain: { ok: boolean; detail: string };
  drill: DrillStatus;
  blocked: { ticket: string; blockedAt: string; reason: string } | null;
  offsite: OffsiteTargetStatus[];
  lastTick: TickRecord | null;
}

function brief(s: SnapshotRef | undefined, now: Date) {
  return s
    ? {
        id: s.id,
        time: s.time.toISOString(),
        ageSeconds: Math.max(0, Math.round((now.getTime() - s.time.getTime()) / 1000)),
        bytes: s.bytes,
        plaintext: !s.encrypted,
      }
    : null;
}

/** Why the context's live folder cannot be backed up (gone, a link, not a folder), or null. */
async function contextFolderProblem(
  fs: FileSystem,
  stateRoot: string,
  context: string,
): Promise<string | null> {
  const dir = contextDir(stateRoot, context);
  let kind: string;
  try {
    kind = (await fs.lstat(dir)).kind;
  } catch (err) {
    if (!isNotFound(err)) throw err;
    return `context folder ${dir} is missing (vanished): nothing of it is being backed up (restore it, or remove its backups once it is retired); its copies offsite age out by each target's retention, which tick --all-contexts applies`;
  }
  if (kind === "directory") return null;
  return kind === "symlink"
    ? `context folder ${dir} is a symbolic link: paas-backup never reads through links, so it is not backed up; move the folder it points to into its place`
    : `context folder ${dir} is a ${kind}, not a folder: it is not backed up`;
}

/**
 * The contexts `status` reports: every folder (or symbolic link, which then needs attention)
 * with a context's name under the state root's contexts/, and every context the backup root has
 * a folder for (one whose live folder vanished still has backups to account for).
 */
export async function fleetContexts(
  fs: FileSystem,
  stateRoot: string,
  backupRoot: string,
): Promise<string[]> {
  const names = new Set<string>();
  for (const [dir, kinds] of [
    [join(stateRoot, "contexts"), ["directory", "symlink"]],
    [backupRoot, ["directory"]],
  ] as const) {
    try {
      for (const e of await fs.readdir(dir))
        if ((kinds as readonly string[]).includes(e.kind) && isContextFolderName(e.name)) names.add(e.name);
    } catch (err) {
      // a root that does not exist has no contexts; one that cannot be read is the caller's error
      if (!isNotFound(err)) throw err;
    }
  }
  return [...names].sort();
}

export async function contextStatus(options: {
  fs: FileSystem;
  backupRoot: string;
  stateRoot: string;
  context: string;
  now: Date;
  mandatoryDrills: readonly string[];
  targets: readonly OffsiteTarget[];
}): Promise<ContextStatus> {
  const { fs, now } = options;
  const context = validateContextName(options.context);
  const all = await listSnapshots(fs, options.backupRoot, context);
  // Snapshots from the future (a clock that jumped) are flagged, and never the newest or its age.
  const snaps = presentSnapshots(all, now);
  const incs = snaps.filter((s) => s.kind === "incremental");
  const fulls = snaps.filter((s) => s.kind === "full");
  const newestFull = fulls[fulls.length - 1];
  // Each part adds the reasons it finds, in this order: folder, snapshots, drill, block, offsite, tick.
  const attention: string[] = [];
  const folder = await contextFolderProblem(fs, options.stateRoot, context);
  if (folder) attention.push(folder);
  const chain = await snapshotHealth(all, now, attention);
  const [drill] = await drillStatus({
    fs,
    backupRoot: options.backupRoot,
    contexts: [context],
    mandatory: options.mandatoryDrills.includes(context) ? [context] : [],
    now,
  });
  if (drill!.mandatory && drill!.overdue)
    attention.push(`restore drill overdue (due ${drill!.nextDue.slice(0, 10)})`);
  const blocked = await blockedBy(fs, options.stateRoot, context);
  if (blocked)
    attention.push(
      `blocked since ${blocked.blockedAt || "an unknown time"} (ticket ${blocked.ticket}): ${blocked.reason}`,
    );
  const offsite: OffsiteTargetStatus[] = [];
  for (const target of options.targets) {
    const st = await offsiteTargetStatus(options, context, target, newestFull);
    offsite.push(st);
    if (st.newestFullMissing)
      attention.push(`offsite copy missing: ${newestFull!.id} is not at ${st.target}`);
    for (const p of st.problems) attention.push(`offsite copy ${p.id} at ${st.target}: ${p.problem}`);
  }
  const lastTick = await readTickRecord(fs, options.backupRoot, context);
  if (lastTick && !lastTick.ok)
    attention.push(`last tick failed at ${lastTick.at}: ${lastTick.error?.code ?? "error"}`);
  return {
    context,
    ok: attention.length === 0,
    attention,
    newestFull: brief(newestFull, now),
    newestIncremental: brief(incs[incs.length - 1], now),
    plaintext: all.filter((s) => !s.encrypted).map((s) => s.id),
    chain,
    drill: drill!,
    blocked,
    offsite,
    lastTick,
  };
}

/**
 * The snapshots' health: the newest restore point's chain (read, not assumed: a flipped byte keeps
 * size and mtime, and a lost .sha256 leaves nothing to check against, issue 20 §2), the newest
 * full's age and bytes, and snapshots from the future. Reasons go into `attention`.
 */
async function snapshotHealth(
  all: SnapshotRef[],
  now: Date,
  attention: string[],
): Promise<ContextStatus["chain"]> {
  const snaps = presentSnapshots(all, now);
  const ahead = futureSnapshots(all, now);
  const fulls = snaps.filter((s) => s.kind === "full");
  const newest = snaps[snaps.length - 1];
  const newestFull = fulls[fulls.length - 1];
  let chain = {
    ok: true,
    detail: newest ? "ok" : ahead.length ? "no snapshots the clock has reached" : "no snapshots",
  };
  if (newest) {
    const problem = await verifyChain(newest, all, { now });
    if (problem) chain = { ok: false, detail: `${newest.id}: ${problem}` };
  }
  if (!newestFull)
    attention.push(ahead.length ? "no full snapshot the clock has reached" : "no full snapshot");
  else {
    if (now.getTime() - newestFull.time.getTime() > FULL_MAX_AGE_MS)
      attention.push(
        `no full in ${Math.round((now.getTime() - newestFull.time.getTime()) / 3600_000)} h (more than 26 h)`,
      );
    if (!chainOf(newest!, snaps).chain.includes(newestFull)) {
      const problem = await verifyChain(newestFull, all, { now });
      if (problem) attention.push(`newest full ${newestFull.id} is damaged: ${problem}`);
    }
  }
  if (!chain.ok) attention.push(`chain broken: ${chain.detail}`);
  if (ahead.length)
    attention.push(
      `${ahead.length === all.length ? "every snapshot is" : `${ahead.length} snapshot(s) are`} from the future (ahead of the clock ${now.toISOString()}): ${ahead
        .slice(-3)
        .map((s) => s.id)
        .join(
          ", ",
        )}; check the host's clock (they are kept and restorable by id, never latest${ahead.length === all.length ? "; tick takes a new full" : ""})`,
    );
  return chain;
}

/** The post-restore block marker, if any; one that cannot be read still blocks (fail closed). */
async function blockedBy(
  fs: FileSystem,
  stateRoot: string,
  context: string,
): Promise<ContextStatus["blocked"]> {
  try {
    const b = await readBlock(fs, stateRoot, context);
    return b ? { ticket: b.ticket, blockedAt: b.blockedAt, reason: b.reason } : null;
  } catch {
    return { ticket: "unknown", blockedAt: "", reason: "unreadable block marker" };
  }
}

/** One target's recorded copies: confirmed, locked, with problems, and whether the newest full is there past the grace. */
async function offsiteTargetStatus(
  options: { fs: FileSystem; backupRoot: string; now: Date },
  context: string,
  target: OffsiteTarget,
  newestFull: SnapshotRef | undefined,
): Promise<OffsiteTargetStatus> {
  const { now } = options;
  const copies = await recordedCopies({ fs: options.fs, backupRoot: options.backupRoot, context, target });
  const good = copies.filter((c) => !c.problem);
  const newestCopy = copies[copies.length - 1] ?? null;
  const newestFullMissing =
    newestFull !== undefined &&
    now.getTime() - newestFull.time.getTime() > OFFSITE_GRACE_MS &&
    !good.some((c) => c.id === newestFull.id);
  return {
    target: target.storage.url,
    name: target.name,
    confirmed: good.length,
    problems: copies.filter((c) => c.problem).map((c) => ({ id: c.id, problem: c.problem! })),
    immutable: good.filter(
      (c) => c.immutable && c.retainUntil !== null && Date.parse(c.retainUntil) > now.getTime(),
    ).length,
    newestCopy: newestCopy?.id ?? null,
    immutableUntil: newestCopy?.retainUntil ?? null,
    newestFullMissing,
  };
}
