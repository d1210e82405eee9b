import type { FileSystem } from "../fs/types.js";
import { IntegrityError, UsageError, isNotFound, type ErrorCode } from "../errors.js";
import type { Manifest } from "../manifest/schema.js";
import { parseManifest } from "../manifest/io.js";
import type { ObjectStorage, StoredObject } from "./storage.js";
import { LocalStorage } from "./drivers/local.js";
import { compareSnapshotIds, parseSnapshotId } from "./ids.js";
import { futureSnapshots, presentSnapshots } from "./timeline.js";

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
  /** payloadSha256: the parent's plaintext .tar.gz, which a rotation never changes (newer incrementals record it) */
  parent?: { id: string; sha256: string; payloadSha256?: string };
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

export async function readSmallObject(
  storage: ObjectStorage,
  key: string,
  limit = 64 * 1024 * 1024,
): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of await storage.get(key)) {
    chunks.push(c as Buffer);
    size += (c as Buffer).length;
    if (size > limit)
      throw new IntegrityError(
        "PAAS_BACKUP_OBJECT_TOO_LARGE",
        `${storage.locate(key)} is larger than ${limit} bytes`,
        {
          path: storage.locate(key),
          remediation:
            "This file is not one paas-backup wrote (a manifest or checksum is small): remove or replace it, then run `paas-backup verify`.",
          stage: "storage",
        },
      );
  }
  return Buffer.concat(chunks).toString("utf8");
}

/**
 * A snapshot whose sidecar manifest cannot be read (torn, edited, from an unknown version). It is
 * kept out of the usable list, so one bad manifest never stops tick, prune, offsite or restores of
 * other snapshots (issue 9 §5); `list` and `verify` show it with its own error state.
 */
export interface DamagedSnapshot {
  id: string;
  context: string;
  time: Date;
  encrypted: boolean;
  artifactName: string;
  artifactKey: string;
  artifactPath: string;
  checksumKey: string;
  manifestPath: string;
  bytes: number;
  artifact: StoredObject;
  checksum: StoredObject | null;
  storage: ObjectStorage;
  error: { code: ErrorCode; message: string; remediation: string };
}

/** Every snapshot of a context at a storage target, oldest first, and those whose manifest is damaged. */
async function scanIn(
  storage: ObjectStorage,
  context: string,
): Promise<{ snapshots: SnapshotRef[]; damaged: DamagedSnapshot[] }> {
  const objects = new Map<string, StoredObject>();
  for await (const o of storage.list(`${context}/`, { shallow: true })) objects.set(o.key, o);
  const refs: SnapshotRef[] = [];
  const damaged: DamagedSnapshot[] = [];
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
    let manifest: Manifest | null = null;
    if (objects.has(manifestKey)) {
      try {
        manifest = parseManifest(await readSmallObject(storage, manifestKey), storage.locate(manifestKey));
        if (manifest.id !== id) {
          throw new IntegrityError(
            "PAAS_BACKUP_MANIFEST_INVALID",
            `manifest in ${storage.locate(manifestKey)} describes snapshot ${manifest.id}, not ${id}`,
            {
              path: storage.locate(manifestKey),
              remediation: "The snapshot's metadata is damaged: restore an older snapshot.",
              stage: "manifest",
            },
          );
        }
      } catch (err) {
        // Damage is what the manifest's bytes say (not JSON, wrong shape, wrong id, absurd size) or a
        // manifest gone between listing and reading; an I/O or storage failure is not damage and stops
        // the listing as before, so an unreachable target never makes snapshots look broken.
        const e = err instanceof IntegrityError ? err : null;
        if (!e && !isNotFound(err)) throw err;
        damaged.push({
          id,
          context,
          time: parsedId.time,
          encrypted,
          artifactName: names.artifactName,
          artifactKey: key,
          artifactPath: storage.locate(key),
          checksumKey,
          manifestPath: storage.locate(manifestKey),
          bytes: artifact.size,
          artifact,
          checksum: objects.get(checksumKey) ?? null,
          storage,
          error: {
            code: e?.code ?? "PAAS_BACKUP_MANIFEST_INVALID",
            message:
              e?.message ??
              `manifest in ${storage.locate(manifestKey)} cannot be read: ${(err as Error).message}`,
            remediation: `Snapshot ${id} cannot be used; other snapshots are unaffected. Restore another one (see \`paas-backup list --context ${context}\`), and move the damaged files aside once you have looked at them.`,
          },
        });
        continue;
      }
    }
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
  return {
    snapshots: refs.sort((a, b) => compareSnapshotIds(a.id, b.id)),
    damaged: damaged.sort((a, b) => compareSnapshotIds(a.id, b.id)),
  };
}

/**
 * One repository (issue 19 §2): the snapshots of every context in one storage, whatever the
 * driver (the backup root's folder, memory, a bucket). Listing, finding, chains and deletes are
 * written once here; callers hold a Repository rather than a backup root path.
 */
export interface Repository {
  readonly storage: ObjectStorage;
  /** the usable snapshots of a context, oldest first (those with a damaged manifest left out) */
  snapshots(context: string): Promise<SnapshotRef[]>;
  /** usable and damaged snapshots, for `list` and `verify`, which show the damaged ones */
  scan(context: string): Promise<{ snapshots: SnapshotRef[]; damaged: DamagedSnapshot[] }>;
  /** `latest` or an exact id; a clear error naming what exists otherwise */
  find(context: string, selector: string, now?: Date): Promise<FoundSnapshot>;
  /** the snapshots an incremental needs, the full first, ending with itself; `missing` names a gap */
  chain(
    snapshot: SnapshotRef,
    all?: readonly SnapshotRef[],
  ): Promise<{ chain: SnapshotRef[]; missing: string | null }>;
  /** the artifact first (then nothing lists it), then its checksum and manifest */
  delete(snapshot: SnapshotRef): Promise<void>;
}

export function openRepository(storage: ObjectStorage): Repository {
  return {
    storage,
    snapshots: async (context) => (await scanIn(storage, context)).snapshots,
    scan: (context) => scanIn(storage, context),
    find: (context, selector, now) => findIn(storage, context, selector, now),
    chain: async (snapshot, all) =>
      chainOf(snapshot, all ?? (await scanIn(storage, snapshot.context)).snapshots),
    delete: (snapshot) => deleteSnapshot(snapshot),
  };
}

/** @deprecated use openRepository(storage).scan(context) */
export async function scanSnapshotsIn(
  storage: ObjectStorage,
  context: string,
): Promise<{ snapshots: SnapshotRef[]; damaged: DamagedSnapshot[] }> {
  return scanIn(storage, context);
}

/** @deprecated use openRepository(storage).snapshots(context) */
export async function listSnapshotsIn(storage: ObjectStorage, context: string): Promise<SnapshotRef[]> {
  return openRepository(storage).snapshots(context);
}

/** @deprecated use openRepository(backupRootStorage(fs, backupRoot)).scan(context) */
export async function scanSnapshots(
  fs: FileSystem,
  backupRoot: string,
  context: string,
): Promise<{ snapshots: SnapshotRef[]; damaged: DamagedSnapshot[] }> {
  return openRepository(backupRootStorage(fs, backupRoot)).scan(context);
}

/** @deprecated use openRepository(backupRootStorage(fs, backupRoot)).snapshots(context) */
export async function listSnapshots(
  fs: FileSystem,
  backupRoot: string,
  context: string,
): Promise<SnapshotRef[]> {
  return openRepository(backupRootStorage(fs, backupRoot)).snapshots(context);
}

/** What `find` resolved a selector to. */
export interface FoundSnapshot {
  snapshot: SnapshotRef;
  all: SnapshotRef[];
  /** for `latest` and `tag:` with a clock: the snapshots from the future it passed over (futureSkippedWarning says so) */
  skippedFuture: SnapshotRef[];
}

/** Every snapshot is from the future (the clock was corrected backwards): none is latest. */
export function noLatestInTheFuture(context: string, dir: string, now: Date, newest: string): UsageError {
  return new UsageError(
    "PAAS_BACKUP_NO_SNAPSHOTS",
    `every snapshot of context ${context} in ${dir} is from the future (ahead of the clock, ${now.toISOString()}), so none is latest`,
    {
      path: dir,
      remediation: `Check the host's clock; to restore one anyway, name it: --snapshot ${newest}.`,
      stage: "select",
    },
  );
}

/** @deprecated use openRepository(backupRootStorage(fs, backupRoot)).find(context, selector, now) */
export async function findSnapshot(
  fs: FileSystem,
  backupRoot: string,
  context: string,
  selector: string,
  now?: Date,
): Promise<FoundSnapshot> {
  return findIn(backupRootStorage(fs, backupRoot), context, selector, now);
}

/**
 * `latest` or an exact id; a clear error listing what exists otherwise. With `now`, `latest` is
 * the newest snapshot the clock has reached: one from the future is restorable by its id only.
 */
async function findIn(
  storage: ObjectStorage,
  context: string,
  selector: string,
  now?: Date,
): Promise<FoundSnapshot> {
  const scanned = await scanIn(storage, context);
  const all = scanned.snapshots;
  const ahead = now ? futureSnapshots(all, now) : [];
  const present = now ? presentSnapshots(all, now) : all;
  const damaged = now && selector === "latest" ? presentSnapshots(scanned.damaged, now) : scanned.damaged;
  const dir = storage.locate(context);
  // The one asked for (or the newest, for latest) has a damaged manifest: say so, name what is usable.
  const newestDamaged = damaged[damaged.length - 1];
  const brokenPick =
    selector === "latest"
      ? newestDamaged &&
        (present.length === 0 || compareSnapshotIds(newestDamaged.id, present[present.length - 1]!.id) > 0)
        ? newestDamaged
        : undefined
      : damaged.find((d) => d.id === selector);
  if (brokenPick) {
    const usable = present[present.length - 1];
    throw new IntegrityError(
      brokenPick.error.code,
      `snapshot ${brokenPick.id} of context ${context} cannot be used: ${brokenPick.error.message}`,
      {
        path: brokenPick.manifestPath,
        remediation: usable
          ? `Restore an older snapshot, e.g. --snapshot ${usable.id} (newest usable), or add --fallback where the command has it.`
          : "No usable snapshot is left here: fetch one from the offsite target (restore --from-offsite).",
        stage: "manifest",
        data: { fallback: usable?.id ?? null },
      },
    );
  }
  if (all.length === 0) {
    throw new UsageError("PAAS_BACKUP_NO_SNAPSHOTS", `no snapshots of context ${context} in ${dir}`, {
      path: dir,
      remediation:
        "Check --backup-root and --context, or take one with `paas-backup snapshot --context <name>`.",
      stage: "select",
    });
  }
  if (selector === "latest" && present.length === 0)
    throw noLatestInTheFuture(context, dir, now!, ahead[ahead.length - 1]!.id);
  // tag:NAME is the newest snapshot whose manifest carries that tag (snapshot --tag NAME); like
  // latest, never one from the future.
  const tag = selector.startsWith("tag:") ? selector.slice(4) : null;
  const snapshot =
    selector === "latest"
      ? present[present.length - 1]
      : tag !== null
        ? [...present].reverse().find((s) => s.manifest?.tags?.includes(tag))
        : all.find((s) => s.id === selector);
  if (!snapshot) {
    throw new UsageError(
      "PAAS_BACKUP_SNAPSHOT_NOT_FOUND",
      `snapshot ${selector} of context ${context} not found in ${dir}`,
      {
        path: dir,
        remediation: `Pick an id${tag !== null ? " or a tag" : ""} from \`paas-backup list --context ${context}\` (newest: ${all[all.length - 1]!.id}) or pass latest.`,
        stage: "select",
      },
    );
  }
  const skippedFuture =
    selector === "latest" ? ahead : tag !== null ? ahead.filter((s) => s.manifest?.tags?.includes(tag)) : [];
  return { snapshot, all, skippedFuture };
}

/** Delete a snapshot: the artifact first (then nothing lists it), then its checksum and manifest. */
export async function deleteSnapshot(s: SnapshotRef): Promise<void> {
  await s.storage.delete(s.artifactKey);
  await s.storage.delete(s.checksumKey);
  await s.storage.delete(s.manifestKey);
  // signatures (issue 24): named here, not imported, so the repository stays below signing/
  await s.storage.delete(`${s.checksumKey}.sig`);
  await s.storage.delete(`${s.manifestKey}.sig`);
}

/**
 * What the records say against `link` being the parent `child` was built on (null: nothing): the
 * child names the parent's artifact sha256 (`actual`, what its checksum file names or its bytes
 * hash to) and, since issue 24, its plaintext's `payloadSha256`, which no rotation changes. A
 * parent replaced by another valid artifact, with the child's parent.sha256 rewritten to match,
 * still shows by its payload. (The payload's bytes are hashed where the chain is read: restore.)
 */
export function parentLinkProblem(
  link: SnapshotRef,
  actual: string | null | undefined,
  child: SnapshotRef | undefined,
): string | null {
  if (!child?.parent) return null;
  if (child.parent.sha256 !== actual) return `link ${link.id} is not the artifact ${child.id} was built on`;
  const payload = child.parent.payloadSha256;
  if (payload && link.manifest?.payloadSha256 && link.manifest.payloadSha256 !== payload)
    return `link ${link.id} is not the payload ${child.id} was built on (payloadSha256 ${link.manifest.payloadSha256}, ${child.id} names ${payload})`;
  return null;
}

/** The snapshots an incremental needs, oldest (the full) first, ending with itself. */
export function chainOf(
  snapshot: SnapshotRef,
  all: readonly SnapshotRef[],
): { chain: SnapshotRef[]; missing: string | null } {
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
