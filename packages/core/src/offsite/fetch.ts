import { randomUUID } from "node:crypto";
import { pipeline } from "node:stream/promises";
import type { ArtifactDecryptor } from "../archive/encryption.js";
import { IntegrityError, UsageError, isNotFound } from "../errors.js";
import type { FileSystem } from "../fs/types.js";
import { inContext, type ContextCallOptions } from "../context/session.js";
import { validateContextName } from "../policy/context.js";
import { checkSnapshotChecksum, expectedChecksum, formatChecksumLine } from "../repository/checksum.js";
import { readRepositoryIdentity } from "../repository/identity.js";
import { compareSnapshotIds } from "../repository/ids.js";
import { futureSkippedWarning, futureSnapshots, presentSnapshots } from "../repository/timeline.js";
import {
  artifactNames,
  noLatestInTheFuture,
  listSnapshots,
  listSnapshotsIn,
  readSmallObject,
  type SnapshotRef,
} from "../repository/repository.js";
import type { ObjectStorage } from "../repository/storage.js";
import { writeFileAtomic } from "../util/atomic.js";
import { HashingStream } from "../util/hash.js";
import { contextBackupDir, join } from "../util/paths.js";
import { rootsHoldingContext, rootView } from "./roots.js";
import type { OffsiteTarget } from "./types.js";

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
  /**
   * the other backup root whose copies were used: named by --offsite-root, or (after a lost disk)
   * the only root at the target that holds what was asked; null for this root's own copies
   */
  root: { id: string; host: string | null; why: string } | null;
  /** `latest` passed over snapshots from the future: the warning every reader gives */
  warnings: string[];
}

/**
 * restore --from-offsite: the newest restorable state. Whatever the asked snapshot's chain needs
 * and the backup root lacks (or holds damaged) is fetched from the target (fulls live there);
 * the incrementals on top are replayed from home. An older snapshot than asked is restored only
 * with `fallback`, and the plan says so.
 */
export interface FetchFromOffsiteOptions extends ContextCallOptions {
  fs: FileSystem;
  backupRoot: string;
  context: string;
  target: OffsiteTarget;
  snapshot: string;
  clock: () => Date;
  fallback?: boolean;
  root?: string;
  /**
   * The identity of the restore: a copy encrypted on push (issue 21 §5; plaintext at home, its
   * manifest says so) comes home decrypted, as it was, so the incrementals made on it still name
   * it as their parent. Without one it comes home as the age file, and restore asks for --identity.
   */
  decryptor?: ArtifactDecryptor;
}

/** Fetch the chain a restore needs into the backup root, in the context's session (locked). */
export async function fetchChainFromOffsite(options: FetchFromOffsiteOptions): Promise<OffsiteRestorePlan> {
  return inContext({ ...options, command: "offsite fetch" }, () => fetchChainInSession(options));
}

/** One link of the chain a restore needs, and where it comes from. */
type ChainLink = { id: string; from: "local" | "remote" };
type ChainPlan = { links: ChainLink[]; problem: string | null };

/** What is asked, resolved over home and the target together, as restore resolves it. */
interface Resolved {
  ids: string[];
  /** snapshots from the future (`latest` passes over them) */
  ahead: SnapshotRef[];
  asked: string | undefined;
}

/**
 * The fetch as its steps: resolve what is asked over home and the target, fall back on another
 * root's copies after a lost disk, refuse what is nowhere, plan the chain (or an older one with
 * --fallback), fetch what home lacks.
 */
async function fetchChainInSession(options: FetchFromOffsiteOptions): Promise<OffsiteRestorePlan> {
  const { fs, target } = options;
  const context = validateContextName(options.context);
  let remote = await remoteSnapshots(fs, options.backupRoot, context, target.storage, options.root);
  const localList = await listSnapshots(fs, options.backupRoot, context);
  const local = new Map(localList.map((s) => [s.id, s]));
  // latest as restore resolves it: the newest the clock has reached, never one from the future
  const now = options.clock();
  let resolved = resolveAsked(options.snapshot, local, remote, now);
  let root: OffsiteRestorePlan["root"] = options.root
    ? { id: options.root, host: null, why: "named by --offsite-root" }
    : null;
  if (!resolved.asked && !options.root && !(options.snapshot === "latest" && resolved.ahead.length > 0)) {
    const other = await onlyOtherRootHolding(options, context, now);
    if (other) {
      remote = other.remote;
      resolved = resolveAsked(options.snapshot, local, remote, now);
      root = other.root;
    }
  }
  const { ids, ahead } = resolved;
  const asked = askedOrRefuse(options, context, resolved, now);
  const { chosen, plan, fallback } = await restorableChain(options, context, asked, ids, local, remote);
  const fetched: string[] = [];
  for (const link of plan.links) {
    if (link.from !== "remote") continue;
    await fetchOne(fs, options.backupRoot, context, remote.get(link.id)!, options.decryptor);
    fetched.push(link.id);
  }
  const futureWarning = options.snapshot === "latest" ? futureSkippedWarning(ahead, asked, now) : null;
  return {
    asked,
    chosen,
    fetched,
    root,
    warnings: futureWarning ? [futureWarning] : [],
    local: plan.links.filter((l) => l.from === "local").map((l) => l.id),
    fallback,
  };
}

/** `latest` is the newest the clock has reached over home and the target; an id is found as it is. */
function resolveAsked(
  snapshot: string,
  local: Map<string, SnapshotRef>,
  remote: Map<string, SnapshotRef>,
  now: Date,
): Resolved {
  const ids = [...new Set([...local.keys(), ...remote.keys()])].sort(compareSnapshotIds);
  const refs = ids.map((id) => (local.get(id) ?? remote.get(id))!);
  const present = presentSnapshots(refs, now);
  return {
    ids,
    ahead: futureSnapshots(refs, now),
    asked: snapshot === "latest" ? present[present.length - 1]?.id : ids.find((id) => id === snapshot),
  };
}

/**
 * After a lost disk the fresh backup root has a new identity, and the copies the lost one
 * pushed sit under its id: when this root (and the legacy layout) has nothing to restore, the
 * other roots at the target are asked. One that holds it is used; several are named (exit 2).
 */
async function onlyOtherRootHolding(
  options: FetchFromOffsiteOptions,
  context: string,
  now: Date,
): Promise<{ remote: Map<string, SnapshotRef>; root: NonNullable<OffsiteRestorePlan["root"]> } | null> {
  const { fs, target } = options;
  const identity = await readRepositoryIdentity(fs, options.backupRoot);
  const holders = (await rootsHoldingContext(target.storage, context, identity?.id ?? null))
    .map((r) => ({
      ...r,
      holds:
        options.snapshot === "latest"
          ? presentSnapshots(r.snapshots, now).at(-1)?.id
          : r.snapshots.find((x) => x.id === options.snapshot)?.id,
    }))
    .filter((r) => r.holds !== undefined);
  if (holders.length > 1) {
    const what =
      options.snapshot === "latest" ? `copies of ${context}` : `snapshot ${options.snapshot} of ${context}`;
    throw new UsageError(
      "PAAS_BACKUP_OFFSITE_ROOT_AMBIGUOUS",
      `this backup root has no ${what} at ${target.storage.url}, and ${holders.length} other backup roots there do: ${holders
        .map(
          (r) =>
            `${r.id}${r.host ? ` (host ${r.host})` : ""}${options.snapshot === "latest" ? `, newest ${r.holds}` : ""}`,
        )
        .join("; ")}`,
      {
        path: target.storage.url,
        remediation: `Pick the root whose copy to restore with --offsite-root <root id> (e.g. --offsite-root ${holders[0]!.id}); see each root's copies with \`paas-backup offsite list --context ${context} --offsite-root <root id>\`.`,
        stage: "fetch",
        data: { roots: holders.map((r) => ({ id: r.id, host: r.host, snapshot: r.holds })) },
      },
    );
  }
  const only = holders[0];
  if (!only) return null;
  return {
    remote: new Map(only.snapshots.map((x) => [x.id, x])),
    root: {
      id: only.id,
      host: only.host,
      why: `this backup root has no copy of it; ${only.id} is the only backup root at the target that holds it`,
    },
  };
}

/** Nothing to restore: `latest` found only snapshots from the future, or the id is nowhere. */
function askedOrRefuse(
  options: FetchFromOffsiteOptions,
  context: string,
  { asked, ahead }: Resolved,
  now: Date,
): string {
  const { target } = options;
  if (options.snapshot === "latest" && !asked && ahead.length > 0)
    throw noLatestInTheFuture(context, target.storage.url, now, ahead[ahead.length - 1]!.id);
  if (!asked) {
    throw new UsageError(
      "PAAS_BACKUP_SNAPSHOT_NOT_FOUND",
      `snapshot ${options.snapshot} of ${context} is neither in the backup root nor at ${target.storage.url}${options.root ? ` under backup root ${options.root}` : " (under this backup root or any other)"}`,
      {
        path: target.storage.url,
        remediation: `See what is there with \`paas-backup offsite list --context ${context} --all-roots\` and \`paas-backup list --context ${context}\`.`,
        stage: "fetch",
      },
    );
  }
  return asked;
}

/**
 * The chain of a snapshot, newest first walked and returned full first: each link from home when
 * it verifies there, else from the target; the problem names the first link found nowhere. Home's
 * checksums are checked once per run, however many chains share a link.
 */
function chainPlanner(
  local: Map<string, SnapshotRef>,
  remote: Map<string, SnapshotRef>,
  targetUrl: string,
): (id: string) => Promise<ChainPlan> {
  const verifiedLocal = new Map<string, boolean>();
  const localOk = async (s: SnapshotRef) => {
    if (!verifiedLocal.has(s.id))
      verifiedLocal.set(s.id, (await checkSnapshotChecksum(s)).state === "verified");
    return verifiedLocal.get(s.id)!;
  };
  return async (id) => {
    const links: ChainLink[] = [];
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
            ? `${cur} does not verify in the backup root and is not at ${targetUrl}`
            : `${cur}${cur === id ? "" : `, which ${id} needs,`} is neither in the backup root nor at ${targetUrl}`,
        };
      }
      if (ref.kind === "full") return { links: links.reverse(), problem: null };
      cur = ref.parent?.id;
      if (!cur) return { links, problem: `incremental ${ref.id} does not name its parent` };
    }
    return { links, problem: `the chain of ${id} has no full` };
  };
}

/**
 * The asked snapshot's chain, or, when it is broken, the newest older one that is whole: used only
 * with --fallback (and the plan says so); without it the refusal names it (exit 3).
 */
async function restorableChain(
  options: FetchFromOffsiteOptions,
  context: string,
  asked: string,
  ids: string[],
  local: Map<string, SnapshotRef>,
  remote: Map<string, SnapshotRef>,
): Promise<{ chosen: string; plan: ChainPlan; fallback: OffsiteRestorePlan["fallback"] }> {
  const { target } = options;
  const planFor = chainPlanner(local, remote, target.storage.url);
  const plan = await planFor(asked);
  if (!plan.problem) return { chosen: asked, plan, fallback: null };
  let older: { id: string; plan: ChainPlan } | null = null;
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
  return { chosen: older.id, plan: older.plan, fallback: { from: asked, reason: plan.problem } };
}

/** Fetch one snapshot's artifact and sidecars into the backup root (temporary name, then rename) and check its checksum. */
async function fetchOne(
  fs: FileSystem,
  backupRoot: string,
  context: string,
  chosen: SnapshotRef,
  decryptor: ArtifactDecryptor | undefined,
): Promise<void> {
  const dir = contextBackupDir(backupRoot, context);
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  const decrypt = chosen.encrypted && chosen.manifest?.encryption.type === "none" ? decryptor : undefined;
  const names = artifactNames(chosen.id, chosen.encrypted && !decrypt);
  const nonce = randomUUID().slice(0, 8);
  const tmp = join(dir, `.${names.artifactName}.${nonce}.partial`);
  const hashing = new HashingStream();
  const plain = new HashingStream();
  try {
    // The copy's bytes are checked against its own checksum file whether or not they are decrypted on the way.
    await pipeline(
      await chosen.storage.get(chosen.artifactKey),
      hashing,
      ...(decrypt ? [decrypt.decrypt(), plain] : []),
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
      decrypt
        ? formatChecksumLine(plain.digest(), names.artifactName)
        : await readSmallObject(chosen.storage, chosen.checksumKey),
      0o600,
      nonce,
    );
    await fs.sync(tmp);
    // An encrypted-on-push copy (issue 21 §5) comes home as <id>.tar.gz.age beside a damaged
    // <id>.tar.gz of the same snapshot: that one is moved aside (kept, never listed), so one id
    // never has two artifacts.
    const other = artifactNames(chosen.id, !names.artifactName.endsWith(".age"));
    for (const name of [other.artifactName, other.checksumName])
      try {
        await fs.rename(join(dir, name), join(dir, `${name}.replaced-${nonce}`));
      } catch (err) {
        if (!isNotFound(err)) throw err;
      }
    await fs.rename(tmp, join(dir, names.artifactName));
  } finally {
    await fs.rm(tmp, { force: true });
  }
}

/** restore --from-offsite of one snapshot (kept for SDK callers): fetched when the local copy is gone or does not verify. */
export async function fetchFromOffsite(
  options: Omit<FetchFromOffsiteOptions, "fallback" | "root">,
): Promise<{ id: string; fetched: boolean; reason: string }> {
  const plan = await fetchChainFromOffsite(options);
  const hadLocal = plan.local.includes(plan.chosen);
  return {
    id: plan.chosen,
    fetched: plan.fetched.length > 0,
    reason: hadLocal ? "the local copy verifies" : "no local copy that verifies",
  };
}
