import type { FileSystem } from "../fs/types.js";
import { readTextOrNull } from "../util/optional-reads.js";
import { errorCodeOf, IntegrityError, PaasBackupError, UsageError } from "../errors.js";
import { validateContextName } from "../policy/context.js";
import {
  listSnapshots,
  listSnapshotsIn,
  artifactNames,
  deleteSnapshot,
  readSmallObject,
  type SnapshotRef,
} from "../repository/repository.js";
import { checkSnapshotChecksum, expectedChecksum } from "../repository/checksum.js";
import type { ObjectStorage, PutResult, StoredObject, Immutability } from "../repository/storage.js";
import { ensureRepositoryIdentity, readRepositoryIdentity } from "../repository/identity.js";
import { planRetention, type RetentionPolicy } from "../retention/plan.js";
import { contextBackupDir, join } from "../util/paths.js";
import { writeFileAtomic } from "../util/atomic.js";
import { HashingStream } from "../util/hash.js";
import { pipeline } from "node:stream/promises";
import { createHash, randomUUID } from "node:crypto";
import { parseSnapshotId, compareSnapshotIds } from "../repository/ids.js";
import { Readable } from "node:stream";

/**
 * Policy §4.4: an immutable, offsite copy of every daily full. The logic here is written once over
 * the ObjectStorage interface; the drivers (directory, memory, S3) only move bytes.
 * Layout at a target: roots/<root id>/<context>/<id>.tar.gz[.age], .sha256 and <id>.manifest.json,
 * as at home below the backup root's identity, and roots/<root id>.json naming the root. Copies
 * made before backup roots had identities sit at <context>/<id>... (the "legacy" layout): they are
 * still listed, verified, restored and pruned, and a push that must replace one writes it anew
 * under the root's own prefix.
 */
export interface OffsiteTarget {
  name: string;
  storage: ObjectStorage;
  objectLock?: { mode: "COMPLIANCE" | "GOVERNANCE"; days: number };
  retention?: Partial<RetentionPolicy>;
}

export interface OffsiteCopy {
  id: string;
  /** the artifact's key at the target (roots/<root>/<context>/… or, for old copies, <context>/…) */
  artifact: string;
  sha256: string;
  size: number;
  confirmedBy: PutResult["confirmedBy"];
  multipart: boolean;
  confirmedAt: string;
  retainUntil: string | null;
  lockMode: string | null;
  immutable: boolean;
  /** set by a deep verify that read other bytes than we copied, or a push that found the copy gone; cleared when it is put back */
  problem?: string | null;
  problemSeenAt?: string | null;
}

interface OffsiteRecord {
  schema: "paas-backup/offsite@1";
  target: string;
  copies: Record<string, OffsiteCopy>;
  /** the rotation of `offsite verify --read-data-subset`: which copies the current cycle has read */
  dataSubset?: { cycle: number; startedAt: string; read: string[] };
}

export const DEFAULT_OFFSITE_RETENTION: RetentionPolicy = { hourly: 0, daily: 7, weekly: 4, monthly: 3 };

const ROOTS = "roots";

/** The keys of one backup root at a target: the same layout as at home, below roots/<id>/. */
export function rootView(storage: ObjectStorage, rootId: string): ObjectStorage {
  const prefix = `${ROOTS}/${rootId}/`;
  const view: ObjectStorage = {
    kind: storage.kind,
    flags: storage.flags,
    url: storage.url,
    put: (key, body, options) => storage.put(prefix + key, body, options).then((r) => ({ ...r, key })),
    stage: async (key) => {
      const staged = await storage.stage(prefix + key);
      return {
        stream: staged.stream,
        commit: async (expect) => ({ ...(await staged.commit(expect)), key }),
        abort: () => staged.abort(),
      };
    },
    get: (key) => storage.get(prefix + key),
    head: async (key) => {
      const h = await storage.head(prefix + key);
      return h ? { ...h, key } : null;
    },
    list: async function* (p, options) {
      for await (const o of storage.list(prefix + p, options))
        yield { ...o, key: o.key.slice(prefix.length) };
    },
    delete: (key) => storage.delete(prefix + key),
    sweepStaged: async (p, olderThan) =>
      (await storage.sweepStaged(prefix + p, olderThan)).map((k) => k.slice(prefix.length)),
    immutability: () => storage.immutability(),
    locate: (key) => storage.locate(prefix + key),
    ...(storage.extendLock
      ? {
          extendLock: (key: string, lock: { mode: "COMPLIANCE" | "GOVERNANCE"; retainUntil: Date }) =>
            storage.extendLock!(prefix + key, lock),
        }
      : {}),
  };
  return view;
}

/** How long the offsite retention policy may keep a copy, in days (the monthly rule reaches furthest). */
export function retentionHorizonDays(policy: Partial<RetentionPolicy> | undefined): number {
  const p = { ...DEFAULT_OFFSITE_RETENTION, ...(policy ?? {}) };
  return Math.max(p.daily, p.weekly * 7, p.monthly * 31);
}

/** Warnings about a target's configuration that an operator should act on. */
export function targetWarnings(target: OffsiteTarget): string[] {
  const horizon = retentionHorizonDays(target.retention);
  // Only where a lock can hold at all: a directory target has no retention to extend.
  if (target.objectLock && target.storage.flags.retention && target.objectLock.days < horizon) {
    return [
      `Object Lock at ${target.storage.url} holds copies ${target.objectLock.days} days, but offsite retention keeps them up to ${horizon} days: ` +
        "push extends the lock of every copy retention still keeps (offsite extend-locks); run it at least every " +
        `${Math.max(1, Math.floor(target.objectLock.days / 2))} days, or raise lock days to ${horizon}.`,
    ];
  }
  return [];
}

function recordFileName(name: string): string {
  return `${name.replace(/[^A-Za-z0-9._-]/g, "_")}.json`;
}

function recordPath(backupRoot: string, context: string, name: string): string {
  return join(contextBackupDir(backupRoot, context), "offsite", recordFileName(name));
}

async function readRecordFile(fs: FileSystem, path: string): Promise<OffsiteRecord | null> {
  const text = await readTextOrNull(fs, path);
  return text === null ? null : (JSON.parse(text) as OffsiteRecord);
}

/**
 * The record of what we copied to a target. A target is one record whether it was named in the
 * config or given by URL: copies pushed with --to URL (recorded under the URL) belong to the
 * configured target with that URL, and are read from there until the next write merges them.
 */
async function readRecord(
  fs: FileSystem,
  backupRoot: string,
  context: string,
  target: OffsiteTarget,
): Promise<OffsiteRecord> {
  const names = [...new Set([target.name, target.storage.url])];
  const record: OffsiteRecord = { schema: "paas-backup/offsite@1", target: target.storage.url, copies: {} };
  for (const name of names.reverse()) {
    const r = await readRecordFile(fs, recordPath(backupRoot, context, name));
    if (!r) continue;
    Object.assign(record.copies, r.copies ?? {});
    if (r.dataSubset) record.dataSubset = r.dataSubset;
  }
  return record;
}

async function writeRecord(
  fs: FileSystem,
  backupRoot: string,
  context: string,
  target: OffsiteTarget,
  record: OffsiteRecord,
): Promise<void> {
  const path = recordPath(backupRoot, context, target.name);
  await fs.mkdir(join(contextBackupDir(backupRoot, context), "offsite"), { recursive: true, mode: 0o700 });
  await writeFileAtomic(fs, path, `${JSON.stringify(record, null, 2)}\n`, 0o600, randomUUID().slice(0, 8));
  // The URL-named record (from --to) is merged into this one now: leave one record per target.
  if (target.name !== target.storage.url)
    await fs.rm(recordPath(backupRoot, context, target.storage.url), { force: true });
}

async function hashObject(storage: ObjectStorage, key: string): Promise<{ sha256: string; size: number }> {
  const hash = createHash("sha256");
  let size = 0;
  for await (const c of await storage.get(key)) {
    hash.update(c as Buffer);
    size += (c as Buffer).length;
  }
  return { sha256: hash.digest("hex"), size };
}

function isLockRefusal(err: unknown): boolean {
  const code = errorCodeOf(err) ?? "";
  const cause =
    err instanceof PaasBackupError ? (err.cause as { name?: string; code?: string } | undefined) : undefined;
  return /AccessDenied|locked|ObjectLocked/i.test(
    `${code} ${cause?.name ?? ""} ${cause?.code ?? ""} ${(err as Error)?.message ?? ""}`,
  );
}

/** The cheap check of one copy (HEAD, or stat for a directory): present, size and sha256 as copied, sidecar there, not found damaged. */
async function cheapCheck(storage: ObjectStorage, copy: OffsiteCopy): Promise<string | null> {
  if (copy.problem) return copy.problem;
  const head = await storage.head(copy.artifact);
  if (!head) return `${copy.artifact} is missing at the target`;
  if (head.size !== copy.size) return `${copy.artifact} is ${head.size} bytes, ${copy.size} were copied`;
  if (head.sha256 !== null && head.sha256 !== copy.sha256)
    return `${copy.artifact} carries sha256 ${head.sha256}, ${copy.sha256} was copied`;
  if (!(await storage.head(`${copy.artifact}.sha256`)))
    return `the checksum file of ${copy.artifact} is missing at the target`;
  return null;
}

export interface PushResult {
  context: string;
  target: string;
  /** this backup root's identity: the prefix of its copies at the target */
  root: string;
  immutability: Immutability;
  pushed: OffsiteCopy[];
  alreadyThere: string[];
  /** copies that were missing or wrong at the target and were put back by this push */
  repaired: { id: string; reason: string }[];
  problems: { id: string; problem: string }[];
  /** every copy recorded at the target after this push, for --require-immutable */
  copies: { id: string; ok: boolean; immutable: boolean; immutableUntil: string | null }[];
  /** Object Lock retention moved later by this push (extend-locks) */
  extended: { id: string; retainUntil: string }[];
  warnings: string[];
}

async function ensureRootMarker(
  storage: ObjectStorage,
  rootId: string,
  host: string | null,
  createdAt: string,
): Promise<void> {
  const key = `${ROOTS}/${rootId}.json`;
  if (await storage.head(key)) return;
  const data = Buffer.from(
    `${JSON.stringify({ schema: "paas-backup/root@1", id: rootId, host, createdAt })}\n`,
  );
  await storage.put(key, Readable.from([data]), {
    sha256: createHash("sha256").update(data).digest("hex"),
    size: data.length,
  });
}

/**
 * Copy every full snapshot not yet at the target, and put back what went missing or wrong there:
 * each recorded copy is checked cheaply (HEAD: present, size, sha256 metadata; a copy the last deep
 * verify found damaged counts as wrong) and uploaded again from home. Safe to run again after an
 * interruption. A differing object at one of this root's keys is refused, never replaced.
 */
export async function pushOffsite(options: {
  fs: FileSystem;
  backupRoot: string;
  context: string;
  target: OffsiteTarget;
  clock: () => Date;
  host?: string | null;
}): Promise<PushResult> {
  const { fs, target } = options;
  const context = validateContextName(options.context);
  const storage = target.storage;
  const identity = await ensureRepositoryIdentity(
    fs,
    options.backupRoot,
    options.clock,
    options.host ?? null,
  );
  const view = rootView(storage, identity.id);
  const immutability = await storage.immutability();
  const record = await readRecord(fs, options.backupRoot, context, target);
  const fulls = (await listSnapshots(fs, options.backupRoot, context)).filter((s) => s.kind === "full");
  const result: PushResult = {
    context,
    target: storage.url,
    root: identity.id,
    immutability,
    pushed: [],
    alreadyThere: [],
    repaired: [],
    problems: [],
    copies: [],
    extended: [],
    warnings: targetWarnings(target),
  };
  await ensureRootMarker(storage, identity.id, identity.host, identity.createdAt);
  const now = options.clock();
  let dirty = false;
  const localIds = new Set(fulls.map((s) => s.id));
  for (const snap of fulls) {
    const known = record.copies[snap.id];
    let healing: string | null = null;
    // Copies already confirmed are matched by the checksum file alone (no re-hash of the local full
    // every hour) and checked at the target by HEAD: cheap enough for every tick.
    if (known && known.sha256 === (await expectedChecksum(snap))) {
      healing = await cheapCheck(storage, known);
      if (!healing) {
        result.alreadyThere.push(snap.id);
        continue;
      }
    }
    const check = await checkSnapshotChecksum(snap);
    if (check.state !== "verified") {
      result.problems.push({
        id: snap.id,
        problem: `local artifact ${check.state}; not copied (a corrupt snapshot must not become the offsite copy)`,
      });
      continue;
    }
    const lock = target.objectLock
      ? {
          mode: target.objectLock.mode,
          retainUntil: new Date(now.getTime() + target.objectLock.days * 86_400_000),
        }
      : undefined;
    const existing = await view.head(snap.artifactKey);
    if (existing && existing.sha256 !== null && existing.sha256 !== check.actual) {
      // Not ours: another backup root sharing this identity (a copied root) wrote it. Never replace it.
      result.problems.push({
        id: snap.id,
        problem: `a different object is at ${view.locate(snap.artifactKey)} (sha256 ${existing.sha256}, ours ${check.actual}); not replaced. Was this backup root copied from another host? Give one of them a new identity.`,
      });
      continue;
    }
    // The target has the same layout as the backup root, below the root's prefix. The sidecars go
    // first and the artifact is the commit, as at home: a push cut short never leaves a snapshot
    // listed at the target without its checksum (issue 9 §7); leftover sidecars are overwritten next time.
    for (const key of [snap.checksumKey, ...(snap.manifest ? [snap.manifestKey] : [])]) {
      const data = Buffer.from(await readSmallObject(snap.storage, key), "utf8");
      const sha256 = createHash("sha256").update(data).digest("hex");
      // Landed already by a push that was cut short: not re-sent (a locked object cannot be replaced).
      const there = await view.head(key);
      if (there?.sha256 === sha256 && there.size === data.length) continue;
      await view.put(key, Readable.from([data]), { sha256, size: data.length, ...(lock ? { lock } : {}) });
    }
    let put: PutResult | null = null;
    let note: string | null = null;
    if (existing) {
      const damagedHere = known?.artifact === `${ROOTS}/${identity.id}/${snap.artifactKey}` && known.problem;
      if (
        !damagedHere &&
        existing.size === check.bytes &&
        (await hashObject(view, snap.artifactKey)).sha256 === check.actual
      ) {
        // An earlier, interrupted push landed it already: confirmed by its bytes, not re-sent.
        put = {
          key: snap.artifactKey,
          size: existing.size,
          sha256: check.actual,
          confirmedBy: "reread",
          multipart: false,
        };
      } else if (existing.retainUntil && Date.parse(existing.retainUntil) > now.getTime()) {
        note = `the damaged copy is under Object Lock until ${existing.retainUntil}: the good copy is uploaded beside it (the bucket keeps the damaged one as an older version)`;
      }
    }
    if (!put) {
      try {
        put = await view.put(snap.artifactKey, await snap.storage.get(snap.artifactKey), {
          sha256: check.actual,
          size: check.bytes,
          ...(lock ? { lock } : {}),
        });
      } catch (err) {
        if (existing && isLockRefusal(err)) {
          result.problems.push({
            id: snap.id,
            problem: `the copy at ${view.locate(snap.artifactKey)} is wrong (${healing ?? "differs"}) but Object Lock forbids replacing it until ${existing.retainUntil ?? "its retention ends"}; both are kept: the damaged copy there, the good one at home`,
          });
          continue;
        }
        throw err;
      }
    }
    if (put.sha256 !== check.actual || put.size !== check.bytes) {
      result.problems.push({
        id: snap.id,
        problem: `copy at ${view.locate(snap.artifactKey)} does not match (sha256 ${put.sha256}, ${put.size} bytes); not recorded`,
      });
      continue;
    }
    const head = await view.head(snap.artifactKey);
    const copy: OffsiteCopy = {
      id: snap.id,
      artifact: `${ROOTS}/${identity.id}/${snap.artifactKey}`,
      sha256: check.actual,
      size: check.bytes,
      confirmedBy: put.confirmedBy,
      multipart: put.multipart,
      confirmedAt: now.toISOString(),
      retainUntil: head?.retainUntil ?? lock?.retainUntil.toISOString() ?? null,
      lockMode: head?.lockMode ?? lock?.mode ?? null,
      // Immutable only when the bucket enforces it: a lock header the server ignores is not a lock.
      immutable: immutability.enabled && lock !== undefined,
      problem: null,
      problemSeenAt: null,
    };
    record.copies[snap.id] = copy;
    await writeRecord(fs, options.backupRoot, context, target, record);
    dirty = false;
    result.pushed.push(copy);
    if (healing) result.repaired.push({ id: snap.id, reason: note ? `${healing}; ${note}` : healing });
  }
  // Recorded copies whose local full is gone (pruned at home): checked, but they cannot be put back.
  for (const copy of Object.values(record.copies)) {
    if (localIds.has(copy.id)) continue;
    const problem = await cheapCheck(storage, copy);
    if (problem) {
      result.problems.push({
        id: copy.id,
        problem: `${problem}; the local snapshot is gone, so it cannot be uploaded again`,
      });
      if (!copy.problem) {
        copy.problem = problem;
        copy.problemSeenAt = now.toISOString();
        dirty = true;
      }
    }
  }
  if (dirty) await writeRecord(fs, options.backupRoot, context, target, record);
  if (target.objectLock && immutability.enabled)
    result.extended = (await extendLocks({ ...options, context })).extended;
  const after = await readRecord(fs, options.backupRoot, context, target);
  result.copies = Object.values(after.copies)
    .sort((a, b) => compareSnapshotIds(a.id, b.id))
    .map((c) => ({
      id: c.id,
      ok: !c.problem && !result.problems.some((p) => p.id === c.id),
      immutable: immutability.enabled && c.retainUntil !== null && Date.parse(c.retainUntil) > now.getTime(),
      immutableUntil: c.retainUntil,
    }));
  return result;
}

/**
 * kopia's --extend-object-locks: every copy the offsite retention still keeps gets its retain-until
 * moved to now + lock days once less than half of that is left, so a copy kept three months is
 * never unlocked on day 36. Copies retention will drop are left to expire.
 */
export async function extendLocks(options: {
  fs: FileSystem;
  backupRoot: string;
  context: string;
  target: OffsiteTarget;
  clock: () => Date;
}): Promise<{ extended: { id: string; retainUntil: string }[]; skipped: string | null }> {
  const { target } = options;
  const context = validateContextName(options.context);
  if (!target.objectLock)
    return { extended: [], skipped: `target ${target.name} has no objectLock configured` };
  const storage = target.storage;
  if (!storage.extendLock)
    return { extended: [], skipped: `${storage.url} cannot hold Object Lock retention` };
  const immutability = await storage.immutability();
  if (!immutability.enabled) return { extended: [], skipped: immutability.detail };
  const record = await readRecord(options.fs, options.backupRoot, context, target);
  const now = options.clock();
  const copies = Object.values(record.copies).filter((c) => !c.problem);
  const plan = planRetention({
    snapshots: copies.map((c) => ({ id: c.id, time: parseSnapshotId(c.id)!.time, kind: "full" as const })),
    policy: { ...DEFAULT_OFFSITE_RETENTION, ...(target.retention ?? {}) },
  });
  const kept = new Set(plan.keep.map((k) => k.id));
  const lockMs = target.objectLock.days * 86_400_000;
  const extended: { id: string; retainUntil: string }[] = [];
  for (const copy of copies) {
    if (!kept.has(copy.id)) continue;
    const until = copy.retainUntil ? Date.parse(copy.retainUntil) : 0;
    if (until - now.getTime() >= lockMs / 2) continue;
    const retainUntil = new Date(now.getTime() + lockMs);
    const base = copy.artifact.replace(/\.tar\.gz(\.age)?$/, "");
    for (const key of [copy.artifact, `${copy.artifact}.sha256`, `${base}.manifest.json`]) {
      if (key !== copy.artifact && !(await storage.head(key))) continue;
      await storage.extendLock(key, { mode: target.objectLock.mode, retainUntil });
    }
    copy.retainUntil = retainUntil.toISOString();
    copy.lockMode = target.objectLock.mode;
    record.copies[copy.id] = copy;
    await writeRecord(options.fs, options.backupRoot, context, target, record);
    extended.push({ id: copy.id, retainUntil: copy.retainUntil });
  }
  return { extended, skipped: null };
}

export interface OffsiteEntry {
  id: string;
  /** the backup root whose copy this is; null for a copy in the shared layout made before roots had identities */
  root: string | null;
  /** this backup root's own copy (or a legacy one it recorded) */
  own: boolean;
  /** the snapshot as it stands at the target; null when only our record remembers it */
  snapshot: SnapshotRef | null;
  artifact: StoredObject | null;
  checksum: StoredObject | null;
  recorded: OffsiteCopy | null;
  confirmed: boolean;
  immutable: boolean;
  immutableUntil: string | null;
}

/** Other backup roots with copies at a target: roots/<id>.json markers. */
async function rootsAt(storage: ObjectStorage): Promise<{ id: string; host: string | null }[]> {
  const out: { id: string; host: string | null }[] = [];
  for await (const o of storage.list(`${ROOTS}/`, { shallow: true })) {
    const m = /^roots\/([0-9a-f]{16})\.json$/.exec(o.key);
    if (!m) continue;
    let host: string | null = null;
    try {
      host =
        (JSON.parse(await readSmallObject(storage, o.key, 64 * 1024)) as { host?: string | null }).host ??
        null;
    } catch {
      host = null;
    }
    out.push({ id: m[1]!, host });
  }
  return out;
}

export async function listOffsite(options: {
  fs: FileSystem;
  backupRoot: string;
  context: string;
  target: OffsiteTarget;
  clock: () => Date;
  allRoots?: boolean;
}): Promise<{
  entries: OffsiteEntry[];
  immutability: Immutability;
  root: string | null;
  roots: { id: string; host: string | null }[];
}> {
  const context = validateContextName(options.context);
  const storage = options.target.storage;
  const record = await readRecord(options.fs, options.backupRoot, context, options.target);
  const identity = await readRepositoryIdentity(options.fs, options.backupRoot);
  const immutability = await storage.immutability();
  const now = options.clock().getTime();
  const entries: OffsiteEntry[] = [];
  const ownPrefix = identity ? `${ROOTS}/${identity.id}/` : null;
  const own = identity ? await listSnapshotsIn(rootView(storage, identity.id), context) : [];
  const legacy = await listSnapshotsIn(storage, context);
  const seen = new Set<string>();
  const recordedAt = (id: string) => record.copies[id]?.artifact;
  // Our own copies, then legacy copies (made before identities: they belong to whoever recorded them, or to everyone)
  for (const snap of own) {
    seen.add(snap.id);
    entries.push(
      entryFor(
        snap.id,
        identity!.id,
        true,
        snap,
        recordedAt(snap.id) === ownPrefix + snap.artifactKey ? record.copies[snap.id]! : null,
      ),
    );
  }
  for (const snap of legacy) {
    if (seen.has(snap.id)) continue;
    seen.add(snap.id);
    entries.push(
      entryFor(
        snap.id,
        null,
        true,
        snap,
        recordedAt(snap.id) === snap.artifactKey ? record.copies[snap.id]! : null,
      ),
    );
  }
  for (const [id, copy] of Object.entries(record.copies))
    if (!seen.has(id))
      entries.push(
        entryFor(
          id,
          copy.artifact.startsWith(`${ROOTS}/`) ? copy.artifact.split("/")[1]! : null,
          true,
          null,
          copy,
        ),
      );
  const roots = options.allRoots ? await rootsAt(storage) : [];
  for (const r of roots) {
    if (r.id === identity?.id) continue;
    for (const snap of await listSnapshotsIn(rootView(storage, r.id), context))
      entries.push(entryFor(snap.id, r.id, false, snap, null));
  }
  function entryFor(
    id: string,
    root: string | null,
    isOwn: boolean,
    snap: SnapshotRef | null,
    recorded: OffsiteCopy | null,
  ): OffsiteEntry {
    const artifact = snap?.artifact ?? null;
    const immutableUntil = artifact?.retainUntil ?? recorded?.retainUntil ?? null;
    return {
      id,
      root,
      own: isOwn,
      snapshot: snap,
      artifact,
      checksum: snap?.checksum ?? null,
      recorded,
      confirmed:
        recorded !== null &&
        artifact !== null &&
        artifact.sha256 === recorded.sha256 &&
        artifact.size === recorded.size &&
        !recorded.problem,
      immutable: immutability.enabled && immutableUntil !== null && Date.parse(immutableUntil) > now,
      immutableUntil,
    };
  }
  return {
    entries: entries.sort((a, b) => compareSnapshotIds(a.id, b.id) || (a.own === b.own ? 0 : a.own ? -1 : 1)),
    immutability,
    root: identity?.id ?? null,
    roots,
  };
}

export interface OffsiteVerification {
  id: string;
  ok: boolean;
  problems: string[];
  immutable: boolean;
  immutableUntil: string | null;
  /** whether this run read and hashed the copy's bytes */
  readData: boolean;
}

/** `--read-data-subset`: a share of the copies (percent) or of their bytes (a size) per run. */
export type DataSubset = { percent: number } | { bytes: number };

/**
 * What is at the target, checked against what we recorded: removed, truncated or changed copies.
 * `deep` reads every copy's bytes; `readDataSubset` reads a rotating share per run, as restic's
 * check --read-data-subset does, so that successive runs cover every copy once per cycle; the
 * rotation lives in the offsite record in the backup root. A copy whose bytes are found wrong is
 * marked in the record, and the next push replaces it.
 */
export async function verifyOffsite(options: {
  fs: FileSystem;
  backupRoot: string;
  context: string;
  target: OffsiteTarget;
  clock: () => Date;
  deep?: boolean;
  readDataSubset?: DataSubset;
}): Promise<{
  results: OffsiteVerification[];
  immutability: Immutability;
  subset: { cycle: number; readThisRun: string[]; leftInCycle: number } | null;
}> {
  const { entries, immutability } = await listOffsite(options);
  const storage = options.target.storage;
  const results: OffsiteVerification[] = [];
  const record = await readRecord(options.fs, options.backupRoot, options.context, options.target);
  const now = options.clock();
  let recordChanged = false;
  // Which copies this run reads in full.
  const readable = entries.filter((e) => e.snapshot && e.artifact && e.recorded);
  let toRead = new Set<string>();
  let subsetInfo: { cycle: number; readThisRun: string[]; leftInCycle: number } | null = null;
  if (options.readDataSubset && !options.deep) {
    let state = record.dataSubset ?? { cycle: 1, startedAt: now.toISOString(), read: [] };
    let pending = readable.filter((e) => !state.read.includes(e.id));
    if (pending.length === 0 && readable.length > 0) {
      state = { cycle: state.cycle + 1, startedAt: now.toISOString(), read: [] };
      pending = readable;
    }
    const chosen: string[] = [];
    if ("percent" in options.readDataSubset) {
      const n = Math.max(1, Math.ceil((readable.length * options.readDataSubset.percent) / 100));
      chosen.push(...pending.slice(0, n).map((e) => e.id));
    } else {
      let budget = options.readDataSubset.bytes;
      for (const e of pending) {
        if (chosen.length > 0 && e.artifact!.size > budget) break;
        chosen.push(e.id);
        budget -= e.artifact!.size;
      }
    }
    toRead = new Set(chosen);
    state.read = [...state.read, ...chosen];
    record.dataSubset = state;
    recordChanged = true;
    subsetInfo = {
      cycle: state.cycle,
      readThisRun: chosen,
      leftInCycle: readable.filter((e) => !state.read.includes(e.id)).length,
    };
  }
  for (const e of entries) {
    if (!e.own) continue;
    const problems: string[] = [];
    const rec = e.recorded;
    let readData = false;
    if (!e.snapshot || !e.artifact)
      problems.push(
        rec ? `artifact ${rec.artifact} was removed from the target` : "no artifact at the target",
      );
    else {
      if (rec && e.artifact.size !== rec.size)
        problems.push(
          `artifact is ${e.artifact.size} bytes, ${rec.size} were copied (${e.artifact.size < rec.size ? "truncated" : "changed"})`,
        );
      if (!e.checksum) problems.push("checksum file missing at the target");
      else if (rec && (await expectedChecksum(e.snapshot)) !== rec.sha256)
        problems.push("checksum file at the target does not name the copied sha256");
      // A directory target is cheap to read: always check its bytes. Object stores: metadata, or bytes with --deep / the subset.
      if (options.deep || !rec || storage.flags.cheapReads || toRead.has(e.id)) {
        readData = true;
        const actual = await hashObject(e.snapshot.storage, e.snapshot.artifactKey);
        const expected = rec?.sha256 ?? e.artifact.sha256;
        if (actual.sha256 !== expected)
          problems.push(
            `artifact bytes hash to ${actual.sha256}, expected ${expected} (changed behind our back)`,
          );
      } else if (e.artifact.sha256 !== rec.sha256)
        problems.push("artifact's sha256 metadata differs from the copy we made");
    }
    if (!rec) problems.push("not recorded as a confirmed copy (push it again)");
    // Remember what was found (the next push puts it back), and forget it once a full read is clean.
    if (rec && record.copies[e.id]) {
      const copy = record.copies[e.id]!;
      if (problems.length > 0 && copy.problem !== problems.join("; ")) {
        copy.problem = problems.join("; ");
        copy.problemSeenAt = now.toISOString();
        recordChanged = true;
      } else if (problems.length === 0 && copy.problem && readData) {
        copy.problem = null;
        copy.problemSeenAt = null;
        recordChanged = true;
      }
    }
    results.push({
      id: e.id,
      ok: problems.length === 0,
      problems,
      immutable: e.immutable,
      immutableUntil: e.immutableUntil,
      readData,
    });
  }
  if (recordChanged)
    await writeRecord(options.fs, options.backupRoot, options.context, options.target, record);
  return { results, immutability, subset: subsetInfo };
}

/** What the backup root recorded about a target's copies, without asking the target (for status). */
export async function recordedCopies(options: {
  fs: FileSystem;
  backupRoot: string;
  context: string;
  target: OffsiteTarget;
}): Promise<OffsiteCopy[]> {
  const record = await readRecord(
    options.fs,
    options.backupRoot,
    validateContextName(options.context),
    options.target,
  );
  return Object.values(record.copies).sort((a, b) => compareSnapshotIds(a.id, b.id));
}

/** Offsite retention: its own policy over fulls; never deletes what is still under retention. */
export async function pruneOffsite(options: {
  fs: FileSystem;
  backupRoot: string;
  context: string;
  target: OffsiteTarget;
  clock: () => Date;
  dryRun?: boolean;
}): Promise<{ keep: { id: string; reasons: string[] }[]; remove: string[]; heldByLock: string[] }> {
  const { entries } = await listOffsite(options);
  // Only what is provably this root's: its own prefix, or old-layout copies it recorded. An
  // old-layout copy nobody here recorded may be another host's, and is left alone.
  const present = entries.filter(
    (e): e is OffsiteEntry & { snapshot: SnapshotRef } =>
      e.snapshot !== null && e.own && (e.root !== null || e.recorded !== null),
  );
  const plan = planRetention({
    snapshots: present.map((e) => ({ id: e.id, time: parseSnapshotId(e.id)!.time, kind: "full" as const })),
    policy: { ...DEFAULT_OFFSITE_RETENTION, ...(options.target.retention ?? {}) },
  });
  const now = options.clock().getTime();
  const remove: string[] = [];
  const heldByLock: string[] = [];
  const keep = [...plan.keep];
  const record = await readRecord(options.fs, options.backupRoot, options.context, options.target);
  for (const { id } of plan.remove) {
    const e = present.find((x) => x.id === id)!;
    if (e.immutableUntil && Date.parse(e.immutableUntil) > now) {
      heldByLock.push(id);
      keep.push({ id, reasons: [`retained until ${e.immutableUntil}`] });
      continue;
    }
    remove.push(id);
    if (!options.dryRun) {
      await deleteSnapshot(e.snapshot);
      delete record.copies[id];
      await writeRecord(options.fs, options.backupRoot, options.context, options.target, record);
    }
  }
  return { keep, remove, heldByLock };
}

/** Where restore --from-offsite looks: one named root, or this root's copies and the legacy layout. */
async function remoteSnapshots(
  fs: FileSystem,
  backupRoot: string,
  context: string,
  storage: ObjectStorage,
  root?: string,
): Promise<Map<string, SnapshotRef>> {
  const out = new Map<string, SnapshotRef>();
  if (root) {
    for (const s of await listSnapshotsIn(rootView(storage, root), context)) if (s.checksum) out.set(s.id, s);
    return out;
  }
  for (const s of await listSnapshotsIn(storage, context)) if (s.checksum) out.set(s.id, s);
  const identity = await readRepositoryIdentity(fs, backupRoot);
  if (identity)
    for (const s of await listSnapshotsIn(rootView(storage, identity.id), context))
      if (s.checksum) out.set(s.id, s);
  return out;
}

export interface OffsiteRestorePlan {
  /** what was asked, resolved (latest → the newest id here or there) */
  asked: string;
  /** what will be restored: `asked` unless the operator allowed a fallback */
  chosen: string;
  /** links fetched from the target into the backup root */
  fetched: string[];
  /** links the backup root already had, verified */
  local: string[];
  fallback: { from: string; reason: string } | null;
}

/**
 * restore --from-offsite: the newest restorable state. Whatever the asked snapshot's chain needs
 * and the backup root lacks (or holds damaged) is fetched from the target (fulls live there);
 * the incrementals on top are replayed from home. An older snapshot than asked is restored only
 * with `fallback`, and the plan says so.
 */
export async function fetchChainFromOffsite(options: {
  fs: FileSystem;
  backupRoot: string;
  context: string;
  target: OffsiteTarget;
  snapshot: string;
  clock: () => Date;
  fallback?: boolean;
  root?: string;
}): Promise<OffsiteRestorePlan> {
  const { fs, target } = options;
  const context = validateContextName(options.context);
  const remote = await remoteSnapshots(fs, options.backupRoot, context, target.storage, options.root);
  const localList = await listSnapshots(fs, options.backupRoot, context);
  const local = new Map(localList.map((s) => [s.id, s]));
  const ids = [...new Set([...local.keys(), ...remote.keys()])].sort(compareSnapshotIds);
  const asked =
    options.snapshot === "latest" ? ids[ids.length - 1] : ids.find((id) => id === options.snapshot);
  if (!asked) {
    throw new UsageError(
      "PAAS_BACKUP_SNAPSHOT_NOT_FOUND",
      `snapshot ${options.snapshot} of ${context} is neither in the backup root nor at ${target.storage.url}`,
      {
        path: target.storage.url,
        remediation: `See what is there with \`paas-backup offsite list --context ${context}${options.root ? " --all-roots" : ""}\` and \`paas-backup list --context ${context}\`.`,
        stage: "fetch",
      },
    );
  }
  const verifiedLocal = new Map<string, boolean>();
  const localOk = async (s: SnapshotRef) => {
    if (!verifiedLocal.has(s.id))
      verifiedLocal.set(s.id, (await checkSnapshotChecksum(s)).state === "verified");
    return verifiedLocal.get(s.id)!;
  };
  const planFor = async (
    id: string,
  ): Promise<{ links: { id: string; from: "local" | "remote" }[]; problem: string | null }> => {
    const links: { id: string; from: "local" | "remote" }[] = [];
    let cur: string | undefined = id;
    while (cur) {
      if (links.some((l) => l.id === cur)) return { links, problem: `the chain of ${id} loops at ${cur}` };
      const l = local.get(cur);
      const r = remote.get(cur);
      let ref: SnapshotRef;
      if (l && (await localOk(l))) {
        links.push({ id: cur, from: "local" });
        ref = l;
      } else if (r) {
        links.push({ id: cur, from: "remote" });
        ref = r;
      } else {
        return {
          links,
          problem: l
            ? `${cur} does not verify in the backup root and is not at ${target.storage.url}`
            : `${cur}${cur === id ? "" : `, which ${id} needs,`} is neither in the backup root nor at ${target.storage.url}`,
        };
      }
      if (ref.kind === "full") return { links: links.reverse(), problem: null };
      cur = ref.parent?.id;
      if (!cur) return { links, problem: `incremental ${ref.id} does not name its parent` };
    }
    return { links, problem: `the chain of ${id} has no full` };
  };
  let chosen = asked;
  let plan = await planFor(asked);
  let fallback: OffsiteRestorePlan["fallback"] = null;
  if (plan.problem) {
    let older: { id: string; plan: Awaited<ReturnType<typeof planFor>> } | null = null;
    for (const id of ids.filter((x) => compareSnapshotIds(x, asked) < 0).reverse()) {
      const p = await planFor(id);
      if (!p.problem) {
        older = { id, plan: p };
        break;
      }
    }
    if (!options.fallback || !older) {
      throw new IntegrityError(
        "PAAS_BACKUP_CHAIN_BROKEN",
        `cannot restore ${asked} of ${context} from here and ${target.storage.url}: ${plan.problem}`,
        {
          path: target.storage.url,
          remediation: older
            ? `The newest state that can be restored is ${older.id}: pass --snapshot ${older.id}, or add --fallback to restore it.`
            : "Nothing older can be restored either: check other targets (offsite list) or other backup roots (offsite list --all-roots).",
          stage: "fetch",
          data: { fallback: older?.id ?? null },
        },
      );
    }
    fallback = { from: asked, reason: plan.problem };
    chosen = older.id;
    plan = older.plan;
  }
  const fetched: string[] = [];
  for (const link of plan.links) {
    if (link.from !== "remote") continue;
    await fetchOne(fs, options.backupRoot, context, remote.get(link.id)!);
    fetched.push(link.id);
  }
  return {
    asked,
    chosen,
    fetched,
    local: plan.links.filter((l) => l.from === "local").map((l) => l.id),
    fallback,
  };
}

/** Fetch one snapshot's artifact and sidecars into the backup root (temporary name, then rename) and check its checksum. */
async function fetchOne(
  fs: FileSystem,
  backupRoot: string,
  context: string,
  chosen: SnapshotRef,
): Promise<void> {
  const dir = contextBackupDir(backupRoot, context);
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  const names = artifactNames(chosen.id, chosen.encrypted);
  const nonce = randomUUID().slice(0, 8);
  const tmp = join(dir, `.${names.artifactName}.${nonce}.partial`);
  const hashing = new HashingStream();
  try {
    await pipeline(
      await chosen.storage.get(chosen.artifactKey),
      hashing,
      fs.createWriteStream(tmp, { mode: 0o600, exclusive: true }),
    );
    const expected = await expectedChecksum(chosen);
    if (expected !== hashing.digest()) {
      throw new IntegrityError(
        "PAAS_BACKUP_CHECKSUM_MISMATCH",
        `offsite copy ${chosen.artifactPath} does not match its checksum file`,
        {
          path: chosen.artifactPath,
          remediation:
            "The offsite copy is damaged too: fetch an older snapshot (offsite list) and escalate.",
          stage: "fetch",
        },
      );
    }
    if (chosen.manifest)
      await writeFileAtomic(
        fs,
        join(dir, names.manifestName),
        await readSmallObject(chosen.storage, chosen.manifestKey),
        0o600,
        nonce,
      );
    await writeFileAtomic(
      fs,
      join(dir, names.checksumName),
      await readSmallObject(chosen.storage, chosen.checksumKey),
      0o600,
      nonce,
    );
    await fs.sync(tmp);
    await fs.rename(tmp, join(dir, names.artifactName));
  } finally {
    await fs.rm(tmp, { force: true });
  }
}

/** restore --from-offsite of one snapshot (kept for SDK callers): fetched when the local copy is gone or does not verify. */
export async function fetchFromOffsite(options: {
  fs: FileSystem;
  backupRoot: string;
  context: string;
  target: OffsiteTarget;
  snapshot: string;
  clock: () => Date;
}): Promise<{ id: string; fetched: boolean; reason: string }> {
  const plan = await fetchChainFromOffsite(options);
  const hadLocal = plan.local.includes(plan.chosen);
  return {
    id: plan.chosen,
    fetched: plan.fetched.length > 0,
    reason: hadLocal ? "the local copy verifies" : "no local copy that verifies",
  };
}
