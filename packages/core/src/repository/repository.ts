import type { FileSystem } from "../fs/types.js";
import { IntegrityError, UsageError } from "../errors.js";
import type { Manifest } from "../manifest/schema.js";
import { parseManifest } from "../manifest/io.js";
import type { ObjectStorage, StoredObject } from "./storage.js";
import { LocalStorage } from "./drivers/local.js";
import { compareSnapshotIds, parseSnapshotId } from "./ids.js";
import { contextBackupDir } from "../util/paths.js";

/**
 * The layout of one context's snapshots, the same in the backup root and at every offsite target:
 *   <context>/<id>.tar.gz[.age]          the artifact
 *   <context>/<id>.tar.gz[.age].sha256   its checksum, sha256sum format
 *   <context>/<id>.manifest.json         the manifest (also inside the artifact)
 * Listing, checksums, opening and deleting snapshots are written once over ObjectStorage; the
 * backup root is the local directory driver. An artifact without our manifest (made by the
 * policy's reference shell flow) is a full snapshot.
 */
export interface SnapshotRef {
  id: string;
  context: string;
  time: Date;
  kind: "full" | "incremental";
  parent?: { id: string; sha256: string };
  encrypted: boolean;
  /** where the snapshot lives */
  storage: ObjectStorage;
  artifactName: string;
  artifactKey: string;
  checksumKey: string;
  manifestKey: string;
  /** for messages and output: a path in the backup root, a URL at a remote target */
  artifactPath: string;
  checksumPath: string;
  manifestPath: string;
  /** null for snapshots made by hand with the reference flow */
  manifest: Manifest | null;
  bytes: number;
  artifact: StoredObject;
  checksum: StoredObject | null;
  /** the mode bits and owner of the artifact, where the backend has them */
  mode: number;
  uid: number;
}

const ARTIFACT = /^(.+)\.tar\.gz(\.age)?$/;

export function artifactNames(id: string, encrypted: boolean) {
  const artifactName = `${id}.tar.gz${encrypted ? ".age" : ""}`;
  return { artifactName, checksumName: `${artifactName}.sha256`, manifestName: `${id}.manifest.json` };
}

/** The backup root as storage: writable, in the policy's own layout (no sidecar files of the driver's). */
export function backupRootStorage(fs: FileSystem, backupRoot: string): ObjectStorage {
  return new LocalStorage(fs, backupRoot, { readOnly: false });
}

export async function readSmallObject(storage: ObjectStorage, key: string, limit = 64 * 1024 * 1024): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of await storage.get(key)) {
    chunks.push(c as Buffer);
    size += (c as Buffer).length;
    if (size > limit)
      throw new IntegrityError("PAAS_BACKUP_OBJECT_TOO_LARGE", `${storage.locate(key)} is larger than ${limit} bytes`, {
        path: storage.locate(key),
        remediation: "This file is not one paas-backup wrote (a manifest or checksum is small): remove or replace it, then run `paas-backup verify`.",
        stage: "storage",
      });
  }
  return Buffer.concat(chunks).toString("utf8");
}

/** Every snapshot of a context at a storage target, oldest first. */
export async function listSnapshotsIn(storage: ObjectStorage, context: string): Promise<SnapshotRef[]> {
  const objects = new Map<string, StoredObject>();
  for await (const o of storage.list(`${context}/`, { shallow: true })) objects.set(o.key, o);
  const refs: SnapshotRef[] = [];
  for (const [key, artifact] of objects) {
    const name = key.slice(context.length + 1);
    const m = ARTIFACT.exec(name);
    if (!m) continue;
    const id = m[1]!;
    const parsedId = parseSnapshotId(id);
    if (!parsedId) continue;
    const encrypted = m[2] !== undefined;
    const names = artifactNames(id, encrypted);
    const manifestKey = `${context}/${names.manifestName}`;
    const checksumKey = `${context}/${names.checksumName}`;
    const manifest = objects.has(manifestKey) ? parseManifest(await readSmallObject(storage, manifestKey), storage.locate(manifestKey)) : null;
    refs.push({
      id,
      context,
      time: manifest ? new Date(manifest.createdAt) : parsedId.time,
      kind: manifest?.kind ?? "full",
      ...(manifest?.parent ? { parent: manifest.parent } : {}),
      encrypted,
      storage,
      artifactName: names.artifactName,
      artifactKey: key,
      checksumKey,
      manifestKey,
      artifactPath: storage.locate(key),
      checksumPath: storage.locate(checksumKey),
      manifestPath: storage.locate(manifestKey),
      manifest,
      bytes: artifact.size,
      artifact,
      checksum: objects.get(checksumKey) ?? null,
      mode: artifact.mode ?? 0o600,
      uid: artifact.uid ?? -1,
    });
  }
  return refs.sort((a, b) => compareSnapshotIds(a.id, b.id));
}

/** The snapshots in the backup root: the local driver over <backup_root>. */
export async function listSnapshots(fs: FileSystem, backupRoot: string, context: string): Promise<SnapshotRef[]> {
  return listSnapshotsIn(backupRootStorage(fs, backupRoot), context);
}

/** `latest` or an exact id; a clear error listing what exists otherwise. */
export async function findSnapshot(fs: FileSystem, backupRoot: string, context: string, selector: string): Promise<{ snapshot: SnapshotRef; all: SnapshotRef[] }> {
  const all = await listSnapshots(fs, backupRoot, context);
  const dir = contextBackupDir(backupRoot, context);
  if (all.length === 0) {
    throw new UsageError("PAAS_BACKUP_NO_SNAPSHOTS", `no snapshots of context ${context} in ${dir}`, {
      path: dir,
      remediation: "Check --backup-root and --context, or take one with `paas-backup snapshot --context <name>`.",
      stage: "select",
    });
  }
  const snapshot = selector === "latest" ? all[all.length - 1] : all.find((s) => s.id === selector);
  if (!snapshot) {
    throw new UsageError("PAAS_BACKUP_SNAPSHOT_NOT_FOUND", `snapshot ${selector} of context ${context} not found in ${dir}`, {
      path: dir,
      remediation: `Pick an id from \`paas-backup list --context ${context}\` (newest: ${all[all.length - 1]!.id}) or pass latest.`,
      stage: "select",
    });
  }
  return { snapshot, all };
}

/** Delete a snapshot: the artifact first (then nothing lists it), then its checksum and manifest. */
export async function deleteSnapshot(s: SnapshotRef): Promise<void> {
  await s.storage.delete(s.artifactKey);
  await s.storage.delete(s.checksumKey);
  await s.storage.delete(s.manifestKey);
}

/** The snapshots an incremental needs, oldest (the full) first, ending with itself. */
export function chainOf(snapshot: SnapshotRef, all: readonly SnapshotRef[]): { chain: SnapshotRef[]; missing: string | null } {
  const byId = new Map(all.map((s) => [s.id, s]));
  const chain: SnapshotRef[] = [snapshot];
  let cur = snapshot;
  while (cur.kind === "incremental") {
    const parentId = cur.parent?.id;
    const parent = parentId ? byId.get(parentId) : undefined;
    if (!parent) return { chain: chain.reverse(), missing: parentId ?? "(unnamed parent)" };
    if (chain.includes(parent)) return { chain: chain.reverse(), missing: parent.id };
    chain.push(parent);
    cur = parent;
  }
  return { chain: chain.reverse(), missing: null };
}
