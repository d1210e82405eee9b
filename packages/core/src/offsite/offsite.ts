import type { FileSystem } from "../fs/types.js";
import { IntegrityError, isNotFound, UsageError } from "../errors.js";
import { validateContextName } from "../policy/context.js";
import { listSnapshots, artifactNames, type SnapshotRef } from "../repository/repository.js";
import { checkArtifactChecksum, parseChecksumFile } from "../repository/checksum.js";
import type { ObjectStorage, PutResult, StoredObject, Immutability } from "../repository/storage.js";
import { planRetention, type RetentionPolicy } from "../retention/plan.js";
import { contextBackupDir, join } from "../util/paths.js";
import { writeFileAtomic } from "../util/atomic.js";
import { HashingStream } from "../util/hash.js";
import { pipeline } from "node:stream/promises";
import { createHash, randomUUID } from "node:crypto";
import { parseSnapshotId, compareSnapshotIds } from "../repository/ids.js";

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
    const check = await checkArtifactChecksum(fs, snap.artifactPath, snap.checksumPath);
    if (check.state !== "verified") {
      result.problems.push({ id: snap.id, problem: `local artifact ${check.state}; not copied (a corrupt snapshot must not become the offsite copy)` });
      continue;
    }
    if (known && known.sha256 === check.actual) {
      result.alreadyThere.push(snap.id);
      continue;
    }
    const base = `${context}/`;
    const lock = target.objectLock ? { mode: target.objectLock.mode, retainUntil: new Date(options.clock().getTime() + target.objectLock.days * 86_400_000) } : undefined;
    // An earlier, interrupted push may have landed the artifact already: confirm it by its bytes.
    const existing = await storage.head(base + snap.artifactName);
    let put: PutResult;
    if (existing && existing.size === check.bytes && existing.sha256 === check.actual && (await hashObject(storage, base + snap.artifactName)).sha256 === check.actual) {
      put = { key: base + snap.artifactName, size: existing.size, sha256: check.actual, confirmedBy: "reread", multipart: false };
    } else {
      put = await storage.put(base + snap.artifactName, fs.createReadStream(snap.artifactPath), { sha256: check.actual, size: check.bytes, ...(lock ? { lock } : {}) });
    }
    if (put.sha256 !== check.actual || put.size !== check.bytes) {
      result.problems.push({ id: snap.id, problem: `copy at ${storage.url} does not match (sha256 ${put.sha256}, ${put.size} bytes); not recorded` });
      continue;
    }
    for (const side of [snap.checksumPath, snap.manifestPath]) {
      let data: Uint8Array;
      try {
        data = await fs.readFile(side);
      } catch (err) {
        if (isNotFound(err)) continue;
        throw err;
      }
      const name = side.slice(side.lastIndexOf("/") + 1);
      const { Readable } = await import("node:stream");
      await storage.put(base + name, Readable.from([Buffer.from(data)]), { sha256: createHash("sha256").update(data).digest("hex"), size: data.length, ...(lock ? { lock } : {}) });
    }
    const head = await storage.head(base + snap.artifactName);
    const copy: OffsiteCopy = {
      id: snap.id,
      artifact: base + snap.artifactName,
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
  artifact: StoredObject | null;
  checksum: StoredObject | null;
  manifest: StoredObject | null;
  recorded: OffsiteCopy | null;
  confirmed: boolean;
  immutable: boolean;
  immutableUntil: string | null;
}

export async function listOffsite(options: { fs: FileSystem; backupRoot: string; context: string; target: OffsiteTarget; clock: () => Date }): Promise<{ entries: OffsiteEntry[]; immutability: Immutability }> {
  const context = validateContextName(options.context);
  const record = await readRecord(options.fs, options.backupRoot, context, options.target);
  const immutability = await options.target.storage.immutability();
  const byId = new Map<string, OffsiteEntry>();
  const entry = (id: string) => {
    let e = byId.get(id);
    if (!e) {
      e = { id, artifact: null, checksum: null, manifest: null, recorded: record.copies[id] ?? null, confirmed: false, immutable: false, immutableUntil: null };
      byId.set(id, e);
    }
    return e;
  };
  for await (const o of options.target.storage.list(`${context}/`)) {
    const name = o.key.slice(context.length + 1);
    const m = /^(.+?)\.(tar\.gz(?:\.age)?\.sha256|tar\.gz(?:\.age)?|manifest\.json)$/.exec(name);
    if (!m || !parseSnapshotId(m[1]!)) continue;
    const e = entry(m[1]!);
    if (m[2]!.endsWith(".sha256")) e.checksum = o;
    else if (m[2] === "manifest.json") e.manifest = o;
    else e.artifact = o;
  }
  for (const id of Object.keys(record.copies)) entry(id);
  const now = options.clock().getTime();
  for (const e of byId.values()) {
    e.confirmed = e.recorded !== null && e.artifact !== null && e.artifact.sha256 === e.recorded.sha256 && e.artifact.size === e.recorded.size;
    e.immutableUntil = e.artifact?.retainUntil ?? e.recorded?.retainUntil ?? null;
    e.immutable = immutability.enabled && e.immutableUntil !== null && Date.parse(e.immutableUntil) > now;
  }
  return { entries: [...byId.values()].sort((a, b) => compareSnapshotIds(a.id, b.id)), immutability };
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
    if (!e.artifact) problems.push(rec ? `artifact ${rec.artifact} was removed from the target` : "no artifact at the target");
    else {
      if (rec && e.artifact.size !== rec.size) problems.push(`artifact is ${e.artifact.size} bytes, ${rec.size} were copied (${e.artifact.size < rec.size ? "truncated" : "changed"})`);
      if (!e.checksum) problems.push("checksum file missing at the target");
      else {
        const text = await readSmall(storage, e.checksum.key);
        const listed = parseChecksumFile(text, e.artifact.key.slice(e.artifact.key.lastIndexOf("/") + 1));
        if (rec && listed !== rec.sha256) problems.push("checksum file at the target does not name the copied sha256");
      }
      // A directory target is cheap to read: always check its bytes. Object stores: metadata, or bytes with --deep.
      if (options.deep || !rec || storage.kind === "file") {
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

async function readSmall(storage: ObjectStorage, key: string): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of await storage.get(key)) {
    chunks.push(c as Buffer);
    if (chunks.reduce((n, b) => n + b.length, 0) > 1_000_000) break;
  }
  return Buffer.concat(chunks).toString("utf8");
}

/** Offsite retention: its own policy over fulls; never deletes what is still under retention. */
export async function pruneOffsite(options: { fs: FileSystem; backupRoot: string; context: string; target: OffsiteTarget; clock: () => Date; dryRun?: boolean }): Promise<{ keep: { id: string; reasons: string[] }[]; remove: string[]; heldByLock: string[] }> {
  const { entries } = await listOffsite(options);
  const withArtifact = entries.filter((e) => e.artifact);
  const plan = planRetention({
    snapshots: withArtifact.map((e) => ({ id: e.id, time: parseSnapshotId(e.id)!.time, kind: "full" as const })),
    policy: { ...DEFAULT_OFFSITE_RETENTION, ...(options.target.retention ?? {}) },
  });
  const now = options.clock().getTime();
  const remove: string[] = [];
  const heldByLock: string[] = [];
  const keep = [...plan.keep];
  const record = await readRecord(options.fs, options.backupRoot, options.context, options.target);
  for (const { id } of plan.remove) {
    const e = withArtifact.find((x) => x.id === id)!;
    const until = e.artifact?.retainUntil ?? e.recorded?.retainUntil ?? null;
    if (until && Date.parse(until) > now) {
      heldByLock.push(id);
      keep.push({ id, reasons: [`retained until ${until}`] });
      continue;
    }
    remove.push(id);
    if (!options.dryRun) {
      for (const o of [e.artifact, e.checksum, e.manifest]) if (o) await options.target.storage.delete(o.key);
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
  const { entries } = await listOffsite({ fs, backupRoot: options.backupRoot, context, target, clock: options.clock });
  const available = entries.filter((e) => e.artifact && e.checksum);
  const chosen = options.snapshot === "latest" ? available[available.length - 1] : available.find((e) => e.id === options.snapshot);
  if (!chosen) {
    throw new UsageError("PAAS_BACKUP_SNAPSHOT_NOT_FOUND", `snapshot ${options.snapshot} of ${context} is not at ${target.storage.url}`, {
      path: target.storage.url,
      remediation: `See what is there with \`paas-backup offsite list --context ${context}\`.`,
      stage: "fetch",
    });
  }
  const local: SnapshotRef | undefined = (await listSnapshots(fs, options.backupRoot, context)).find((s) => s.id === chosen.id);
  if (local && (await checkArtifactChecksum(fs, local.artifactPath, local.checksumPath)).state === "verified") {
    return { id: chosen.id, fetched: false, reason: "the local copy verifies" };
  }
  const dir = contextBackupDir(options.backupRoot, context);
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  const artifactName = chosen.artifact!.key.slice(chosen.artifact!.key.lastIndexOf("/") + 1);
  const names = artifactNames(chosen.id, artifactName.endsWith(".age"));
  const nonce = randomUUID().slice(0, 8);
  const tmp = join(dir, `.${artifactName}.${nonce}.partial`);
  const hashing = new HashingStream();
  try {
    await pipeline(await target.storage.get(chosen.artifact!.key), hashing, fs.createWriteStream(tmp, { mode: 0o600, exclusive: true }));
    const checksumText = await readSmall(target.storage, chosen.checksum!.key);
    const expected = parseChecksumFile(checksumText, artifactName);
    const actual = hashing.digest();
    if (expected !== actual) {
      throw new IntegrityError("PAAS_BACKUP_CHECKSUM_MISMATCH", `offsite copy ${chosen.artifact!.key} at ${target.storage.url} does not match its checksum file`, {
        path: target.storage.url,
        remediation: "The offsite copy is damaged too: fetch an older snapshot (offsite list) and escalate.",
        stage: "fetch",
      });
    }
    if (chosen.manifest) await writeFileAtomic(fs, join(dir, names.manifestName), await readSmall(target.storage, chosen.manifest.key), 0o600, nonce);
    await writeFileAtomic(fs, join(dir, names.checksumName), checksumText, 0o600, nonce);
    await fs.sync(tmp);
    await fs.rename(tmp, join(dir, names.artifactName));
    return { id: chosen.id, fetched: true, reason: local ? "the local copy does not verify" : "no local copy" };
  } finally {
    await fs.rm(tmp, { force: true });
  }
}
