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

export interface ListOffsiteOptions extends OffsiteRecordsOptions {
  context: string;
  target: OffsiteTarget;
  clock: () => Date;
  allRoots?: boolean;
  /** only this backup root's copies (another host's, or a lost disk's), as restore --offsite-root reads them */
  root?: string;
}

export interface OffsiteListing {
  entries: OffsiteEntry[];
  immutability: Immutability;
  root: string | null;
  roots: { id: string; host: string | null }[];
  /**
   * when this backup root has no copy of the context at the target (a fresh root after a lost
   * disk) and neither allRoots nor root was asked: the other roots that hold copies of it
   */
  otherRoots: { id: string; host: string | null; copies: number; newest: string }[];
}

/**
 * The copies of a context at an offsite target. Steps: read this root's record and identity →
 * another root's copies alone (options.root) or: our own copies, legacy ones, those only our
 * record remembers, other roots' (allRoots) → when we have none, the roots that do → sorted.
 */
export async function listOffsite(options: ListOffsiteOptions): Promise<OffsiteListing> {
  const context = validateContextName(options.context);
  const storage = options.target.storage;
  const record = await readRecordIn(recordStoreOf(options), context, options.target);
  // the repository's identity names its copies: the bucket's when the repository is one
  const identity = options.repository
    ? await readIdentityIn(options.repository)
    : await readRepositoryIdentity(options.fs, options.backupRoot);
  const at: EntryClock = { immutability: await storage.immutability(), now: options.clock().getTime() };
  if (options.root && options.root !== identity?.id) {
    const roots = (await rootsAt(storage)).filter((r) => r.id === options.root);
    const entries = await copiesOfRoot(storage, context, options.root, at);
    return { entries, immutability: at.immutability, root: identity?.id ?? null, roots, otherRoots: [] };
  }
  const entries = await ownCopies(storage, context, identity?.id ?? null, record, at);
  const roots = options.allRoots ? await rootsAt(storage) : [];
  for (const r of roots) {
    if (r.id === identity?.id) continue;
    entries.push(...(await copiesOfRoot(storage, context, r.id, at)));
  }
  const otherRoots =
    entries.length === 0 && !options.allRoots && !options.root
      ? await otherRootsHolding(storage, context, identity?.id ?? null)
      : [];
  return {
    entries: entries.sort((a, b) => compareSnapshotIds(a.id, b.id) || (a.own === b.own ? 0 : a.own ? -1 : 1)),
    immutability: at.immutability,
    root: identity?.id ?? null,
    roots,
    otherRoots,
  };
}

/** What an entry's immutability is judged by: the target's lock settings and the time of the listing. */
interface EntryClock {
  immutability: Immutability;
  now: number;
}

type OffsiteRecord = Awaited<ReturnType<typeof readRecordIn>>;

/** Another backup root's copies at the target: never ours, never in our record. */
async function copiesOfRoot(
  storage: OffsiteTarget["storage"],
  context: string,
  root: string,
  at: EntryClock,
): Promise<OffsiteEntry[]> {
  return (await listSnapshotsIn(rootView(storage, root), context)).map((snap) =>
    entryFor(at, snap.id, root, false, snap, null),
  );
}

/**
 * This root's copies: under its own prefix, then legacy ones (made before identities: they belong
 * to whoever recorded them, or to everyone), then those only our record remembers (gone at the target).
 * A copy is matched to its record only when the record names that very object.
 */
async function ownCopies(
  storage: OffsiteTarget["storage"],
  context: string,
  identity: string | null,
  record: OffsiteRecord,
  at: EntryClock,
): Promise<OffsiteEntry[]> {
  const entries: OffsiteEntry[] = [];
  const ownPrefix = identity ? `${ROOTS}/${identity}/` : null;
  const own = identity ? await listSnapshotsIn(rootView(storage, identity), context) : [];
  const legacy = await listSnapshotsIn(storage, context);
  const seen = new Set<string>();
  const recordedAt = (id: string) => record.copies[id]?.artifact;
  for (const snap of own) {
    seen.add(snap.id);
    const recorded = recordedAt(snap.id) === ownPrefix + snap.artifactKey ? record.copies[snap.id]! : null;
    entries.push(entryFor(at, snap.id, identity, true, snap, recorded));
  }
  for (const snap of legacy) {
    if (seen.has(snap.id)) continue;
    seen.add(snap.id);
    const recorded = recordedAt(snap.id) === snap.artifactKey ? record.copies[snap.id]! : null;
    entries.push(entryFor(at, snap.id, null, true, snap, recorded));
  }
  for (const [id, copy] of Object.entries(record.copies))
    if (!seen.has(id)) {
      const root = copy.artifact.startsWith(`${ROOTS}/`) ? copy.artifact.split("/")[1]! : null;
      entries.push(entryFor(at, id, root, true, null, copy));
    }
  return entries;
}

/** A fresh root after a lost disk has no copies: name the roots that hold the context, so the operator can pick one. */
async function otherRootsHolding(
  storage: OffsiteTarget["storage"],
  context: string,
  identity: string | null,
): Promise<OffsiteListing["otherRoots"]> {
  return (await rootsHoldingContext(storage, context, identity)).map((r) => ({
    id: r.id,
    host: r.host,
    copies: r.snapshots.length,
    newest: r.snapshots[r.snapshots.length - 1]!.id,
  }));
}

/** One copy as listed: confirmed when the target holds exactly what the record says was pushed. */
function entryFor(
  at: EntryClock,
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
    immutable: at.immutability.enabled && immutableUntil !== null && Date.parse(immutableUntil) > at.now,
    immutableUntil,
    encryptedOnPush:
      recorded?.encryptedOnPush === true ||
      (snap !== null && snap.encrypted && snap.manifest?.encryption.type === "none"),
  };
}
