import { posix } from "node:path";
import { createHash } from "node:crypto";
import { gunzipSync } from "node:zlib";
import { EVENT_LOGS } from "@paas-backup/core/policy";
import { PaasBackupError, ExitCode } from "@paas-backup/core/errors";
import { planRetention } from "@paas-backup/core/retention";
import { hasJournal } from "@paas-backup/core/context";
import { parseSnapshotId } from "@paas-backup/core/repository";
import { readBlock } from "@paas-backup/core/records";
import type { ContextStatus } from "@paas-backup/core/governance";
import { BACKUP_ROOT, KEEP_TAGS, STATE_ROOT, World, type EventLog } from "./world.js";
import type { Observation } from "./actors.js";

/**
 * The invariants of issue 20, each a named function over the world as it is after a step, what
 * the step's actors observed, and the world as it was before. "Truth" is computed here from the
 * bytes themselves (hashes, chains, the target's objects), never from what paas-backup recorded.
 */

/** "From the future": a snapshot whose time is ahead of the clock by more than this. */
export const FUTURE_TOLERANCE_MS = 5 * 60_000;
const FULL_MAX_AGE_MS = 26 * 3600_000;
const OFFSITE_GRACE_MS = 2 * 3600_000;

export interface SnapshotTruth {
  id: string;
  time: number;
  kind: "full" | "incremental";
  parent: { id: string; sha256: string } | null;
  /** the artifact's bytes hash to what its .sha256 file says */
  intact: boolean;
  hasChecksum: boolean;
  sha256: string;
  /** every link back to the full is there, intact, and the bytes its child was built on */
  restorable: boolean;
  fromFuture: boolean;
  /** the manifest's tags */
  tags: string[];
}

export interface ContextTruth {
  context: string;
  folder: "directory" | "missing" | "symlink" | "other";
  snapshots: SnapshotTruth[];
  /** the newest restorable snapshot whose time is not ahead of the clock */
  newestRestorable: SnapshotTruth | null;
  /** the newest full (not from the future), intact or not */
  newestFull: SnapshotTruth | null;
  /** the newest snapshot not from the future */
  newest: SnapshotTruth | null;
  blocked: boolean;
}

export interface Truth {
  now: number;
  contexts: Map<string, ContextTruth>;
}

function sha256(data: Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

async function readText(world: World, path: string): Promise<string | null> {
  try {
    return Buffer.from(await world.mem.readFile(path)).toString("utf8");
  } catch {
    return null;
  }
}

/** The truth about one context, from its files. */
async function contextTruth(world: World, context: string, now: number): Promise<ContextTruth> {
  const dir = posix.join(BACKUP_ROOT, context);
  const names = (await world.mem.readdir(dir).catch(() => [])).map((e) => e.name);
  const snaps: SnapshotTruth[] = [];
  for (const name of names) {
    const m = /^(.+)\.tar\.gz(\.age)?$/.exec(name);
    if (!m) continue;
    const id = m[1]!;
    const parsed = parseSnapshotId(id);
    if (!parsed) continue;
    const bytes = await world.mem.readFile(posix.join(dir, name));
    const actual = sha256(bytes);
    const sumText = await readText(world, posix.join(dir, `${name}.sha256`));
    const expected = sumText ? (/^([0-9a-f]{64})\b/.exec(sumText.trim())?.[1] ?? null) : null;
    const manifestText = await readText(world, posix.join(dir, `${id}.manifest.json`));
    let manifest: {
      kind?: string;
      createdAt?: string;
      parent?: { id: string; sha256: string };
      tags?: string[];
    } | null = null;
    try {
      manifest = manifestText ? JSON.parse(manifestText) : null;
    } catch {
      continue; // a damaged manifest: not a usable snapshot (no fault of the simulation writes one)
    }
    const time = manifest?.createdAt ? Date.parse(manifest.createdAt) : parsed.time.getTime();
    snaps.push({
      id,
      time,
      kind: manifest?.kind === "incremental" ? "incremental" : "full",
      parent: manifest?.parent ?? null,
      intact: expected !== null && expected === actual,
      hasChecksum: expected !== null,
      sha256: actual,
      restorable: false,
      fromFuture: time > now + FUTURE_TOLERANCE_MS,
      tags: manifest?.tags ?? [],
    });
  }
  snaps.sort((a, b) => a.time - b.time || (a.id < b.id ? -1 : 1));
  const byId = new Map(snaps.map((s) => [s.id, s]));
  for (const s of snaps) {
    let cur: SnapshotTruth | undefined = s;
    let ok = true;
    const seen = new Set<string>();
    while (cur) {
      if (!cur.intact || seen.has(cur.id)) {
        ok = false;
        break;
      }
      seen.add(cur.id);
      if (cur.kind === "full") break;
      const parent: SnapshotTruth | undefined = cur.parent ? byId.get(cur.parent.id) : undefined;
      if (!parent || parent.sha256 !== cur.parent!.sha256) {
        ok = false;
        break;
      }
      cur = parent;
    }
    s.restorable = ok;
  }
  const present = snaps.filter((s) => !s.fromFuture);
  const folderKind = await world.mem
    .lstat(world.contextDir(context))
    .then((st) => st.kind)
    .catch(() => "missing" as const);
  return {
    context,
    folder:
      folderKind === "directory" || folderKind === "missing" || folderKind === "symlink"
        ? folderKind
        : "other",
    snapshots: snaps,
    newestRestorable: [...present].reverse().find((s) => s.restorable) ?? null,
    newestFull: [...present].reverse().find((s) => s.kind === "full") ?? null,
    newest: present[present.length - 1] ?? null,
    blocked: (await readBlock(world.mem, STATE_ROOT, context).catch(() => ({}))) !== null,
  };
}

export async function observeTruth(world: World): Promise<Truth> {
  const now = world.clock().getTime();
  const contexts = new Map<string, ContextTruth>();
  for (const c of world.contexts) contexts.set(c, await contextTruth(world, c, now));
  return { now, contexts };
}

export interface Violation {
  invariant: string;
  detail: string;
}

export interface StepView {
  world: World;
  before: Truth;
  after: Truth;
  observations: Observation[];
  status: ContextStatus[] | { error: unknown };
}

type Invariant = (view: StepView) => Promise<string[]> | string[];

function statusOf(view: StepView, context: string): ContextStatus | null | "error" {
  if (!Array.isArray(view.status)) return "error";
  return view.status.find((s) => s.context === context) ?? null;
}

const hours = (ms: number) => `${Math.round(ms / 3600_000)} h`;

/** 1. A restorable snapshot no older than the schedule allows exists for every context, or status says it needs attention and why. */
export function freshRestorePoint(view: StepView): string[] {
  const out: string[] = [];
  const { now } = view.after;
  for (const t of view.after.contexts.values()) {
    const r = t.newestRestorable;
    const fresh = r !== null && now - r.time <= FULL_MAX_AGE_MS;
    const st = statusOf(view, t.context);
    if (st === null && t.folder === "missing" && t.snapshots.length === 0) continue; // no trace of it anywhere
    if (!fresh && (st === null || (st !== "error" && st.ok)))
      out.push(
        `${t.context}: ${r ? `newest restorable snapshot ${r.id} is ${hours(now - r.time)} old` : "no restorable snapshot"}, and status ${st === null ? "does not list the context" : "says ok"}`,
      );
  }
  // A tick that says it did its job for a context leaves a snapshot under an hour old, and what it
  // took restores (an incremental on a chain that no longer verifies restores nothing). A context
  // tick names vanished (no folder in the state root) claims no snapshot: status is what says so.
  for (const o of view.observations) {
    if (o.actor !== "tick" || !o.run.result) continue;
    for (const outcome of o.run.result.outcomes) {
      if (!outcome.ok || outcome.vanished) continue;
      const t = view.after.contexts.get(outcome.context);
      if (!t) continue;
      const newest = t.newest;
      if (!newest || now - newest.time > 60 * 60_000)
        out.push(
          `${outcome.context}: tick said ok (${outcome.action}: ${outcome.reason}) but the newest snapshot is ${newest ? `${newest.id}, ${Math.round((now - newest.time) / 60_000)} min old` : "none"}`,
        );
      const taken = outcome.snapshot ? t.snapshots.find((s) => s.id === outcome.snapshot!.id) : undefined;
      if (taken && !taken.restorable && taken.intact)
        out.push(
          `${outcome.context}: tick took ${outcome.action} ${taken.id}, which does not restore: the chain it extends is damaged`,
        );
    }
  }
  return out;
}

/** What truly needs attention for one context. */
function attentionTruth(view: StepView, t: ContextTruth): string[] {
  const { now } = view.after;
  const reasons: string[] = [];
  if (t.folder !== "directory") reasons.push(`context folder is ${t.folder}`);
  if (!t.newestFull) reasons.push("no full snapshot");
  else {
    if (!t.newestFull.intact)
      reasons.push(
        `newest full ${t.newestFull.id} is damaged${t.newestFull.hasChecksum ? "" : " (no .sha256)"}`,
      );
    if (now - t.newestFull.time > FULL_MAX_AGE_MS)
      reasons.push(`newest full is ${hours(now - t.newestFull.time)} old`);
  }
  if (t.newest && !t.newest.restorable) reasons.push(`newest snapshot ${t.newest.id} is not restorable`);
  if (t.snapshots.some((s) => s.fromFuture)) reasons.push("snapshots from the future");
  if (t.blocked) reasons.push("blocked");
  // offsite: the newest intact full, past the grace tick needs to push it, is at the target
  const full = t.newestFull;
  if (full && full.intact && now - full.time > OFFSITE_GRACE_MS) {
    const there = [...view.world.storage.objects.keys()].some((k) =>
      k.endsWith(`/${t.context}/${full.id}.tar.gz`),
    );
    if (!there) reasons.push(`offsite short: ${full.id} is not at the target`);
  }
  return reasons;
}

/** 2. status tells the truth: attention exactly when something is wrong (and never ok when it is). */
export function statusTellsTruth(view: StepView): string[] {
  if (!Array.isArray(view.status)) return [`status failed: ${(view.status.error as Error)?.message}`];
  const out: string[] = [];
  for (const t of view.after.contexts.values()) {
    const st = statusOf(view, t.context) as ContextStatus | null;
    const truth = attentionTruth(view, t);
    if (!st) {
      // A context that vanished before anything was written for it leaves no trace to list.
      if (t.folder !== "missing" || t.snapshots.length > 0)
        out.push(
          `${t.context}: status does not list the context${truth.length ? ` (${truth.join("; ")})` : ""}`,
        );
      continue;
    }
    if (st.ok && truth.length > 0) out.push(`${t.context}: status says ok, but ${truth.join("; ")}`);
    if (!st.chain.ok && t.newest?.restorable && t.folder === "directory")
      out.push(
        `${t.context}: status says the chain is broken (${st.chain.detail}) but ${t.newest.id} restores`,
      );
  }
  return out;
}

/** 3. Retention never loses the newest restore point, nor a link a kept snapshot needs. */
export function retentionKeepsRestorePoints(view: StepView): string[] {
  const out: string[] = [];
  const damaged = new Set(
    view.observations.flatMap((o) => (o.actor === "damage" && o.context ? [o.context] : [])),
  );
  const restored = new Set(view.observations.flatMap((o) => (o.actor === "restore" ? [o.context] : [])));
  for (const [context, before] of view.before.contexts) {
    if (damaged.has(context) || restored.has(context)) continue;
    const after = view.after.contexts.get(context)!;
    const afterById = new Map(after.snapshots.map((s) => [s.id, s]));
    const prev = before.newestRestorable;
    if (prev && !afterById.get(prev.id)?.restorable) {
      const newer = after.snapshots.find((s) => s.restorable && s.time >= prev.time && !s.fromFuture);
      if (!newer)
        out.push(
          `${context}: the newest restore point ${prev.id} was ${afterById.has(prev.id) ? "made unrestorable" : "deleted"} and nothing newer restores`,
        );
    }
    for (const s of before.snapshots) {
      const a = afterById.get(s.id);
      if (s.restorable && a && !a.restorable)
        out.push(`${context}: ${s.id} is still kept but a link it needs was deleted`);
      // keepTags keeps a tagged snapshot (and its chain) beyond the policy's slots
      if (s.tags.some((t) => KEEP_TAGS.includes(t)) && !a)
        out.push(
          `${context}: ${s.id} tagged ${s.tags.join(",")} was deleted although retention.keepTags keeps it`,
        );
    }
  }
  return out;
}

/** 4. Offsite holds the policy's set: after a tick that pushed, nothing past the target's retention remains, per context and root. */
export function offsiteWithinRetention(view: StepView): string[] {
  const out: string[] = [];
  const ticked = view.observations.some(
    (o) => o.actor === "tick" && o.run.result && !o.run.error && o.run.result.outcomes.every((x) => x.ok),
  );
  if (!ticked) return out;
  const groups = new Map<string, string[]>();
  for (const key of view.world.storage.objects.keys()) {
    const m = /^(?:roots\/([^/]+)\/)?([^/]+)\/([^/]+)\.tar\.gz(?:\.age)?$/.exec(key);
    if (!m) continue;
    const group = `${m[1] ?? "(legacy)"}/${m[2]}`;
    groups.set(group, [...(groups.get(group) ?? []), m[3]!]);
  }
  const now = view.after.now;
  for (const [group, ids] of groups) {
    const present = ids.filter((id) => parseSnapshotId(id)!.time.getTime() <= now + FUTURE_TOLERANCE_MS);
    const plan = planRetention({
      snapshots: present.map((id) => ({ id, time: parseSnapshotId(id)!.time, kind: "full" as const })),
      policy: view.world.target.retention ?? {},
    });
    if (plan.remove.length > 0)
      out.push(
        `${group}: the target holds ${ids.length} copies; its retention (7/4/3) keeps ${plan.keep.length}: ${plan.remove.length} past retention (${plan.remove
          .slice(0, 3)
          .map((r) => r.id)
          .join(", ")}${plan.remove.length > 3 ? ", …" : ""})`,
      );
  }
  return out;
}

/**
 * 5. A restore loses nothing: every event line ever appended is in the live logs, or kept in a
 * file of the backup root (the incident's kept lines; moved-aside/ does not count, as no backup
 * covers it). Checked after every step, not only after restores, so that a rollback, a recovery
 * or a crashed restore that drops lines is named at the step it happened.
 */
export async function restoreLosesNothing(view: StepView): Promise<string[]> {
  const out: string[] = [];
  const { world } = view;
  const actors = view.observations
    .map((o) => (o.actor === "damage" ? `fault: ${o.what}` : "run" in o ? o.run.command : o.actor))
    .join("; ");
  for (const context of world.contexts) {
    if (world.movedAway.has(context)) continue; // si cannot write there; nothing was appended
    if (view.after.contexts.get(context)!.folder !== "directory") continue;
    if (await hasJournal(world.mem, STATE_ROOT, context)) continue; // mid-swap until recovered
    let kept: string | null = null;
    for (const log of EVENT_LOGS as readonly EventLog[]) {
      const liveLines = await world.liveLines(context, log);
      const live = new Set(liveLines);
      const missing = world.appended
        .get(context)!
        .get(log)!
        .filter((l) => !live.has(l));
      if (missing.length === 0) continue;
      kept ??= await backupRootText(world, context);
      const lost = missing.filter((l) => !kept!.includes(l));
      // Reported once: from here on the live log is what later steps are judged against.
      world.appended.get(context)!.set(log, liveLines);
      if (lost.length > 0)
        out.push(
          `${context}: ${lost.length} line(s) of ${log} are neither live nor kept in the backup root, after: ${actors}`,
        );
    }
  }
  return out;
}

/** 5b. The context is old-or-new with its vault: the same folder (inode), whatever a restore or a crash did. */
export async function vaultStaysInPlace(view: StepView): Promise<string[]> {
  const out: string[] = [];
  const { world } = view;
  for (const context of world.contexts) {
    // A folder a fault moved away took its vault along; one restored in its place has none to keep.
    if (world.movedAway.has(context)) continue;
    // A swap a crash interrupted is mid-way until the next run under the lock finishes or undoes it
    // (its journal says which); the vault is judged once that has happened.
    if (await hasJournal(world.mem, STATE_ROOT, context)) continue;
    const ino = world.vaultIno.get(context);
    const st = await world.mem.lstat(posix.join(world.contextDir(context), "vault")).catch(() => null);
    const folder = view.after.contexts.get(context)!.folder;
    if (folder === "directory" && (!st || st.ino !== ino))
      out.push(
        `${context}: the vault is ${st ? "a different folder" : "gone"} (inode ${st?.ino ?? "-"}, was ${ino})`,
      );
  }
  return out;
}

async function backupRootText(world: World, context: string): Promise<string> {
  const parts: string[] = [];
  for (const f of world.mem.files(posix.join(BACKUP_ROOT, context)))
    if (!/\.tar\.gz/.test(f)) parts.push(Buffer.from(await world.mem.readFile(f)).toString("utf8"));
  return parts.join("\n");
}

/** 6. No two lock holders: once every process ended, no lock names a live process; a dead holder never stops the next run. */
export async function oneLockHolder(view: StepView): Promise<string[]> {
  const out: string[] = [];
  for (const context of view.world.contexts) {
    const text = await readText(view.world, posix.join(BACKUP_ROOT, context, ".lock"));
    if (!text) continue;
    try {
      const pid = (JSON.parse(text) as { pid?: number }).pid;
      if (pid !== undefined && view.world.live.has(pid))
        out.push(`${context}: lock held by live pid ${pid} after every run ended`);
    } catch {
      // a torn lock of a crashed run: judged by its age, not a second holder
    }
  }
  for (const run of runsOf(view.observations))
    if (!run.crashed && run.error instanceof PaasBackupError && run.error.code === "PAAS_BACKUP_LOCKED")
      out.push(`${run.command}: refused as locked, but no other process was running (${run.error.message})`);
  return out;
}

function runsOf(observations: Observation[]) {
  return observations.flatMap((o) => ("runs" in o ? o.runs : "run" in o ? [o.run] : []));
}

/** per world (its planted markers are its own): the digests already scanned */
const scannedBy = new WeakMap<World, Map<string, boolean>>();

/** 7a. Nothing secret stored: no planted secret in any file of the backup root or object at the target (artifacts read decompressed). */
export async function nothingSecretStored(view: StepView): Promise<string[]> {
  const out: string[] = [];
  const { world } = view;
  const markers = world.planted.map((p) => p.marker);
  const scanned = scannedBy.get(world) ?? new Map<string, boolean>();
  scannedBy.set(world, scanned);
  const blobs: [string, Uint8Array][] = [];
  for (const f of world.mem.files(BACKUP_ROOT)) blobs.push([f, await world.mem.readFile(f)]);
  for (const [key, o] of world.storage.objects) blobs.push([`offsite:${key}`, o.data]);
  for (const [where, data] of blobs) {
    const digest = sha256(data);
    if (scanned.has(digest)) continue;
    let text = Buffer.from(data).toString("latin1");
    if (/\.tar\.gz$/.test(where)) {
      try {
        text = gunzipSync(data).toString("latin1");
      } catch {
        // damaged by a simulated fault: its raw bytes were scanned when it was whole
      }
    }
    const leaked = markers.filter((m) => text.includes(m));
    scanned.set(digest, leaked.length > 0);
    if (leaked.length) out.push(`${where} holds a planted secret (${leaked.length} marker(s))`);
  }
  return out;
}

/** 7b. Every exit code is the documented one for its condition: exit 1 (PAAS_BACKUP_UNEXPECTED) only for a bug, never for what the machine refused; every error a core call throws is typed. */
export function documentedExitCodes(view: StepView): string[] {
  const out: string[] = [];
  for (const run of runsOf(view.observations)) {
    if (run.crashed) continue;
    const err = run.error;
    // Core names the machine's errno errors itself (exit 10): a raw one, even EACCES or ENOSPC
    // that the CLI would name at its top level, is a core entry point an SDK caller meets untyped.
    if (err && (!(err instanceof PaasBackupError) || err.exitCode === ExitCode.unexpected))
      out.push(
        `${run.command}: exit 1 (a bug) for ${err instanceof PaasBackupError ? err.code : (err as Error)?.message}`,
      );
  }
  for (const o of view.observations) {
    if (o.actor !== "tick" || !o.run.result || o.run.crashed) continue;
    for (const outcome of o.run.result.outcomes)
      if (outcome.error?.code === "PAAS_BACKUP_UNEXPECTED")
        out.push(
          `tick: ${outcome.context} failed as PAAS_BACKUP_UNEXPECTED (exit 1 class): ${outcome.error.message}`,
        );
  }
  return out;
}

export const INVARIANTS: Record<string, Invariant> = {
  freshRestorePoint,
  statusTellsTruth,
  retentionKeepsRestorePoints,
  offsiteWithinRetention,
  restoreLosesNothing,
  vaultStaysInPlace,
  oneLockHolder,
  nothingSecretStored,
  documentedExitCodes,
};

export async function checkInvariants(view: StepView, only?: readonly string[]): Promise<Violation[]> {
  const out: Violation[] = [];
  for (const [name, check] of Object.entries(INVARIANTS)) {
    if (only && !only.includes(name)) continue;
    for (const detail of await check(view)) out.push({ invariant: name, detail });
  }
  return out;
}
