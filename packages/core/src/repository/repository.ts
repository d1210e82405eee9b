import type { FileSystem } from "../fs/types.js";
import { isNotFound, UsageError } from "../errors.js";
import type { Manifest } from "../manifest/schema.js";
import { parseManifest } from "../manifest/io.js";
import { compareSnapshotIds, parseSnapshotId } from "./ids.js";
import { contextBackupDir, join } from "../util/paths.js";
import { readdirOrEmpty } from "../util/atomic.js";

/**
 * The layout of one context's snapshots in the backup root:
 *   <backup_root>/<context>/<id>.tar.gz[.age]     the artifact
 *   <backup_root>/<context>/<id>.tar.gz[.age].sha256  its checksum, sha256sum format
 *   <backup_root>/<context>/<id>.manifest.json    the manifest (also inside the artifact)
 *   <backup_root>/<context>/incidents/, drills/   governance records
 * An artifact without our manifest (made by the policy's reference shell flow) is a full snapshot.
 */
export interface SnapshotRef {
  id: string;
  context: string;
  time: Date;
  kind: "full" | "incremental";
  parent?: { id: string; sha256: string };
  encrypted: boolean;
  artifactName: string;
  artifactPath: string;
  checksumPath: string;
  manifestPath: string;
  /** null for snapshots made by hand with the reference flow */
  manifest: Manifest | null;
  bytes: number;
  /** the mode bits and owner of the artifact, for access checks */
  mode: number;
  uid: number;
}

const ARTIFACT = /^(.+)\.tar\.gz(\.age)?$/;

export function artifactNames(id: string, encrypted: boolean) {
  const artifactName = `${id}.tar.gz${encrypted ? ".age" : ""}`;
  return { artifactName, checksumName: `${artifactName}.sha256`, manifestName: `${id}.manifest.json` };
}

export async function listSnapshots(fs: FileSystem, backupRoot: string, context: string): Promise<SnapshotRef[]> {
  const dir = contextBackupDir(backupRoot, context);
  const entries = await readdirOrEmpty(fs, dir);
  const refs: SnapshotRef[] = [];
  for (const entry of entries) {
    if (entry.kind !== "file") continue;
    const m = ARTIFACT.exec(entry.name);
    if (!m) continue;
    const id = m[1]!;
    const parsedId = parseSnapshotId(id);
    if (!parsedId) continue;
    const encrypted = m[2] !== undefined;
    const names = artifactNames(id, encrypted);
    const artifactPath = join(dir, names.artifactName);
    const manifestPath = join(dir, names.manifestName);
    let manifest: Manifest | null = null;
    try {
      manifest = parseManifest(Buffer.from(await fs.readFile(manifestPath)).toString("utf8"), manifestPath);
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
    const stat = await fs.lstat(artifactPath);
    refs.push({
      id,
      context,
      time: manifest ? new Date(manifest.createdAt) : parsedId.time,
      kind: manifest?.kind ?? "full",
      ...(manifest?.parent ? { parent: manifest.parent } : {}),
      encrypted,
      artifactName: names.artifactName,
      artifactPath,
      checksumPath: join(dir, names.checksumName),
      manifestPath,
      manifest,
      bytes: stat.size,
      mode: stat.mode,
      uid: stat.uid,
    });
  }
  return refs.sort((a, b) => compareSnapshotIds(a.id, b.id));
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
