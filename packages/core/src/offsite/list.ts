import { validateContextName } from "../policy/context.js";
import { readIdentityIn, readRepositoryIdentity } from "../repository/identity.js";
import { compareSnapshotIds } from "../repository/ids.js";
import { listSnapshotsIn, type SnapshotRef } from "../repository/repository.js";
import type { Immutability, StoredObject } from "../repository/storage.js";
import { readRecordIn, recordStoreOf, type OffsiteRecordsOptions } from "./record.js";
import { rootsAt, rootsHoldingContext, rootView } from "./roots.js";
import { ROOTS, type OffsiteCopy, type OffsiteTarget } from "./types.js";

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
  /**
   * plaintext at home, encrypted on its way to the target (issue 21 §5): as recorded, or, for a
   * copy no record here names (another root's), an age artifact whose manifest says it holds no encryption
   */
  encryptedOnPush: boolean;
}

export async function listOffsite(
  options: OffsiteRecordsOptions & {
    context: string;
    target: OffsiteTarget;
    clock: () => Date;
    allRoots?: boolean;
    /** only this backup root's copies (another host's, or a lost disk's), as restore --offsite-root reads them */
    root?: string;
  },
): Promise<{
  entries: OffsiteEntry[];
  immutability: Immutability;
  root: string | null;
  roots: { id: string; host: string | null }[];
  /**
   * when this backup root has no copy of the context at the target (a fresh root after a lost
   * disk) and neither allRoots nor root was asked: the other roots that hold copies of it
   */
  otherRoots: { id: string; host: string | null; copies: number; newest: string }[];
}> {
  const context = validateContextName(options.context);
  const storage = options.target.storage;
  const record = await readRecordIn(recordStoreOf(options), context, options.target);
  // the repository's identity names its copies: the bucket's when the repository is one
  const identity = options.repository
    ? await readIdentityIn(options.repository)
    : await readRepositoryIdentity(options.fs, options.backupRoot);
  const immutability = await storage.immutability();
  const now = options.clock().getTime();
  const entries: OffsiteEntry[] = [];
  if (options.root && options.root !== identity?.id) {
    const roots = (await rootsAt(storage)).filter((r) => r.id === options.root);
    for (const snap of await listSnapshotsIn(rootView(storage, options.root), context))
      entries.push(entryFor(snap.id, options.root, false, snap, null));
    return { entries, immutability, root: identity?.id ?? null, roots, otherRoots: [] };
  }
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
      encryptedOnPush:
        recorded?.encryptedOnPush === true ||
        (snap !== null && snap.encrypted && snap.manifest?.encryption.type === "none"),
    };
  }
  const otherRoots =
    entries.length === 0 && !options.allRoots && !options.root
      ? (await rootsHoldingContext(storage, context, identity?.id ?? null)).map((r) => ({
          id: r.id,
          host: r.host,
          copies: r.snapshots.length,
          newest: r.snapshots[r.snapshots.length - 1]!.id,
        }))
      : [];
  return {
    entries: entries.sort((a, b) => compareSnapshotIds(a.id, b.id) || (a.own === b.own ? 0 : a.own ? -1 : 1)),
    immutability,
    root: identity?.id ?? null,
    roots,
    otherRoots,
  };
}
