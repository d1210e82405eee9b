import type { FileSystem } from "../fs/types.js";
import { IntegrityError, isNotFound, UsageError } from "../errors.js";
import { validateContextName } from "../policy/context.js";
import { listSnapshots, listSnapshotsIn, artifactNames, deleteSnapshot, readSmallObject, type SnapshotRef } from "../repository/repository.js";
import { checkSnapshotChecksum, expectedChecksum } from "../repository/checksum.js";
import type { ObjectStorage, PutResult, StoredObject, Immutability } from "../repository/storage.js";
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
 * Layout at a target: <prefix>/<context>/<id>.tar.gz[.age], .sha256 and <id>.manifest.json, as at home.
 */
export interface OffsiteTarget {
  name: string;
  storage: ObjectStorage;
  objectLock?: { mode: "COMPLIANCE" | "GOVERNANCE"; days: number };
  retention?: Partial<RetentionPolicy>;
}

export interface OffsiteCopy {
  id: string;
  artifact: string;
  sha256: string;
  size: number;
  confirmedBy: PutResult["confirmedBy"];
  multipart: boolean;
  confirmedAt: string;
  retainUntil: string | null;
  lockMode: string | null;
  immutable: boolean;
}

interface OffsiteRecord {
  schema: "paas-backup/offsite@1";
  target: string;
  copies: Record<string, OffsiteCopy>;
}

export const DEFAULT_OFFSITE_RETENTION: RetentionPolicy = { hourly: 0, daily: 7, weekly: 4, monthly: 3 };

function recordPath(backupRoot: string, context: string, target: string): string {
  return join(contextBackupDir(backupRoot, context), "offsite", `${target.replace(/[^A-Za-z0-9._-]/g, "_")}.json`);
}

async function readRecord(fs: FileSystem, backupRoot: string, context: string, target: OffsiteTarget): Promise<OffsiteRecord> {
  try {
    const r = JSON.parse(Buffer.from(await fs.readFile(recordPath(backupRoot, context, target.name))).toString("utf8")) as OffsiteRecord;
    return { schema: "paas-backup/offsite@1", target: target.storage.url, copies: r.copies ?? {} };
  } catch (err) {
    if (isNotFound(err)) return { schema: "paas-backup/offsite@1", target: target.storage.url, copies: {} };
    throw err;
  }
}

async function writeRecord(fs: FileSystem, backupRoot: string, context: string, target: OffsiteTarget, record: OffsiteRecord): Promise<void> {
  const path = recordPath(backupRoot, context, target.name);
  await fs.mkdir(join(contextBackupDir(backupRoot, context), "offsite"), { recursive: true, mode: 0o700 });
  await writeFileAtomic(fs, path, `${JSON.stringify(record, null, 2)}\n`, 0o600, randomUUID().slice(0, 8));
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

export interface PushResult {
  context: string;
  target: string;
  immutability: Immutability;
  pushed: OffsiteCopy[];
  alreadyThere: string[];
  problems: { id: string; problem: string }[];
}

/** Copy every full snapshot not yet confirmed at the target; safe to run again after an interruption. */
export async function pushOffsite(options: { fs: FileSystem; backupRoot: string; context: string; target: OffsiteTarget; clock: () => Date }): Promise<PushResult> {
  const { fs, target } = options;
  const context = validateContextName(options.context);
  const storage = target.storage;
  const immutability = await storage.immutability();
  const record = await readRecord(fs, options.backupRoot, context, target);
  const fulls = (await listSnapshots(fs, options.backupRoot, context)).filter((s) => s.kind === "full");
  const result: PushResult = { context, target: storage.url, immutability, pushed: [], alreadyThere: [], problems: [] };
  for (const snap of fulls) {
    const known = record.copies[snap.id];
    // Copies already confirmed are matched by the checksum file alone: tick runs this every hour,
    // and re-hashing every full each time would cost a read of the whole backup root.
    if (known && known.sha256 === (await expectedChecksum(snap))) {
      result.alreadyThere.push(snap.id);
      continue;
    }
    const check = await checkSnapshotChecksum(snap);
    if (check.state !== "verified") {
      result.problems.push({ id: snap.id, problem: `local artifact ${check.state}; not copied (a corrupt snapshot must not become the offsite copy)` });
      continue;
    }
    const lock = target.objectLock ? { mode: target.objectLock.mode, retainUntil: new Date(options.clock().getTime() + target.objectLock.days * 86_400_000) } : undefined;
    // The target has the same layout as the backup root: the same keys. The sidecars go first and
    // the artifact is the commit, as at home: a push cut short never leaves a snapshot listed at
    // the target without its checksum (issue 9 §7); leftover sidecars are overwritten next time.
    for (const key of [snap.checksumKey, ...(snap.manifest ? [snap.manifestKey] : [])]) {
      const data = Buffer.from(await readSmallObject(snap.storage, key), "utf8");
      const sha256 = createHash("sha256").update(data).digest("hex");
      // Landed already by a push that was cut short: not re-sent (a locked object cannot be replaced).
      if ((await storage.head(key))?.sha256 === sha256) continue;
      await storage.put(key, Readable.from([data]), { sha256, size: data.length, ...(lock ? { lock } : {}) });
    }
    const existing = await storage.head(snap.artifactKey);
    let put: PutResult;
    if (existing && existing.size === check.bytes && existing.sha256 === check.actual && (await hashObject(storage, snap.artifactKey)).sha256 === check.actual) {
      // An earlier, interrupted push landed it already: confirmed by its bytes, not re-sent.
      put = { key: snap.artifactKey, size: existing.size, sha256: check.actual, confirmedBy: "reread", multipart: false };
    } else {
      put = await storage.put(snap.artifactKey, await snap.storage.get(snap.artifactKey), { sha256: check.actual, size: check.bytes, ...(lock ? { lock } : {}) });
    }
    if (put.sha256 !== check.actual || put.size !== check.bytes) {
      result.problems.push({ id: snap.id, problem: `copy at ${storage.locate(snap.artifactKey)} does not match (sha256 ${put.sha256}, ${put.size} bytes); not recorded` });
      continue;
    }
    const head = await storage.head(snap.artifactKey);
    const copy: OffsiteCopy = {
      id: snap.id,
      artifact: snap.artifactKey,
      sha256: check.actual,
      size: check.bytes,
      confirmedBy: put.confirmedBy,
      multipart: put.multipart,
      confirmedAt: options.clock().toISOString(),
      retainUntil: head?.retainUntil ?? lock?.retainUntil.toISOString() ?? null,
      lockMode: head?.lockMode ?? lock?.mode ?? null,
      // Immutable only when the bucket enforces it: a lock header the server ignores is not a lock.
      immutable: immutability.enabled && lock !== undefined,
    };
    record.copies[snap.id] = copy;
    await writeRecord(fs, options.backupRoot, context, target, record);
    result.pushed.push(copy);
  }
  return result;
}

export interface OffsiteEntry {
  id: string;
  /** the snapshot as it stands at the target; null when only our record remembers it */
  snapshot: SnapshotRef | null;
  artifact: StoredObject | null;
  checksum: StoredObject | null;
  recorded: OffsiteCopy | null;
  confirmed: boolean;
  immutable: boolean;
  immutableUntil: string | null;
}

export async function listOffsite(options: { fs: FileSystem; backupRoot: string; context: string; target: OffsiteTarget; clock: () => Date }): Promise<{ entries: OffsiteEntry[]; immutability: Immutability }> {
  const context = validateContextName(options.context);
  const record = await readRecord(options.fs, options.backupRoot, context, options.target);
  const immutability = await options.target.storage.immutability();
  const now = options.clock().getTime();
  const entries: OffsiteEntry[] = [];
  const seen = new Set<string>();
  for (const snap of await listSnapshotsIn(options.target.storage, context)) {
    seen.add(snap.id);
    entries.push(entryFor(snap.id, snap, record.copies[snap.id] ?? null));
  }
  for (const [id, copy] of Object.entries(record.copies)) if (!seen.has(id)) entries.push(entryFor(id, null, copy));
  function entryFor(id: string, snap: SnapshotRef | null, recorded: OffsiteCopy | null): OffsiteEntry {
    const artifact = snap?.artifact ?? null;
    const immutableUntil = artifact?.retainUntil ?? recorded?.retainUntil ?? null;
    return {
      id,
      snapshot: snap,
      artifact,
      checksum: snap?.checksum ?? null,
      recorded,
      confirmed: recorded !== null && artifact !== null && artifact.sha256 === recorded.sha256 && artifact.size === recorded.size,
      immutable: immutability.enabled && immutableUntil !== null && Date.parse(immutableUntil) > now,
      immutableUntil,
    };
  }
  return { entries: entries.sort((a, b) => compareSnapshotIds(a.id, b.id)), immutability };
}

export interface OffsiteVerification {
  id: string;
  ok: boolean;
  problems: string[];
  immutable: boolean;
  immutableUntil: string | null;
}

/** What is at the target, checked against what we recorded: removed, truncated or changed copies. */
export async function verifyOffsite(options: { fs: FileSystem; backupRoot: string; context: string; target: OffsiteTarget; clock: () => Date; deep?: boolean }): Promise<{ results: OffsiteVerification[]; immutability: Immutability }> {
  const { entries, immutability } = await listOffsite(options);
  const storage = options.target.storage;
  const results: OffsiteVerification[] = [];
  for (const e of entries) {
    const problems: string[] = [];
    const rec = e.recorded;
    if (!e.snapshot || !e.artifact) problems.push(rec ? `artifact ${rec.artifact} was removed from the target` : "no artifact at the target");
    else {
      if (rec && e.artifact.size !== rec.size) problems.push(`artifact is ${e.artifact.size} bytes, ${rec.size} were copied (${e.artifact.size < rec.size ? "truncated" : "changed"})`);
      if (!e.checksum) problems.push("checksum file missing at the target");
      else if (rec && (await expectedChecksum(e.snapshot)) !== rec.sha256) problems.push("checksum file at the target does not name the copied sha256");
      // A directory target is cheap to read: always check its bytes. Object stores: metadata, or bytes with --deep.
      if (options.deep || !rec || storage.flags.cheapReads) {
        const actual = await hashObject(storage, e.artifact.key);
        const expected = rec?.sha256 ?? e.artifact.sha256;
        if (actual.sha256 !== expected) problems.push(`artifact bytes hash to ${actual.sha256}, expected ${expected} (changed behind our back)`);
      } else if (e.artifact.sha256 !== rec.sha256) problems.push("artifact's sha256 metadata differs from the copy we made");
    }
    if (!rec) problems.push("not recorded as a confirmed copy (push it again)");
    results.push({ id: e.id, ok: problems.length === 0, problems, immutable: e.immutable, immutableUntil: e.immutableUntil });
  }
  return { results, immutability };
}

/** Offsite retention: its own policy over fulls; never deletes what is still under retention. */
export async function pruneOffsite(options: { fs: FileSystem; backupRoot: string; context: string; target: OffsiteTarget; clock: () => Date; dryRun?: boolean }): Promise<{ keep: { id: string; reasons: string[] }[]; remove: string[]; heldByLock: string[] }> {
  const { entries } = await listOffsite(options);
  const present = entries.filter((e): e is OffsiteEntry & { snapshot: SnapshotRef } => e.snapshot !== null);
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

/**
 * restore --from-offsite: when the local copy is gone or does not verify, fetch the artifact and
 * its sidecars into the backup root (temporary name, then rename) and check the checksum.
 */
export async function fetchFromOffsite(options: { fs: FileSystem; backupRoot: string; context: string; target: OffsiteTarget; snapshot: string; clock: () => Date }): Promise<{ id: string; fetched: boolean; reason: string }> {
  const { fs, target } = options;
  const context = validateContextName(options.context);
  const available = (await listSnapshotsIn(target.storage, context)).filter((s) => s.checksum);
  const chosen = options.snapshot === "latest" ? available[available.length - 1] : available.find((s) => s.id === options.snapshot);
  if (!chosen) {
    throw new UsageError("PAAS_BACKUP_SNAPSHOT_NOT_FOUND", `snapshot ${options.snapshot} of ${context} is not at ${target.storage.url}`, {
      path: target.storage.url,
      remediation: `See what is there with \`paas-backup offsite list --context ${context}\`.`,
      stage: "fetch",
    });
  }
  const local = (await listSnapshots(fs, options.backupRoot, context)).find((s) => s.id === chosen.id);
  if (local && (await checkSnapshotChecksum(local)).state === "verified") return { id: chosen.id, fetched: false, reason: "the local copy verifies" };
  const dir = contextBackupDir(options.backupRoot, context);
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  const names = artifactNames(chosen.id, chosen.encrypted);
  const nonce = randomUUID().slice(0, 8);
  const tmp = join(dir, `.${names.artifactName}.${nonce}.partial`);
  const hashing = new HashingStream();
  try {
    await pipeline(await target.storage.get(chosen.artifactKey), hashing, fs.createWriteStream(tmp, { mode: 0o600, exclusive: true }));
    const expected = await expectedChecksum(chosen);
    if (expected !== hashing.digest()) {
      throw new IntegrityError("PAAS_BACKUP_CHECKSUM_MISMATCH", `offsite copy ${chosen.artifactPath} does not match its checksum file`, {
        path: chosen.artifactPath,
        remediation: "The offsite copy is damaged too: fetch an older snapshot (offsite list) and escalate.",
        stage: "fetch",
      });
    }
    if (chosen.manifest) await writeFileAtomic(fs, join(dir, names.manifestName), await readSmallObject(target.storage, chosen.manifestKey), 0o600, nonce);
    await writeFileAtomic(fs, join(dir, names.checksumName), await readSmallObject(target.storage, chosen.checksumKey), 0o600, nonce);
    await fs.sync(tmp);
    await fs.rename(tmp, join(dir, names.artifactName));
    return { id: chosen.id, fetched: true, reason: local ? "the local copy does not verify" : "no local copy" };
  } finally {
    await fs.rm(tmp, { force: true });
  }
}
