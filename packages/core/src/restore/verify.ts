import { assertIdentityLocation } from "../policy/work-tree.js";
import {
  checkSnapshotSignature,
  readSigningRecord,
  requireTrustedSnapshot,
  type SignaturePolicy,
  type SnapshotSignature,
} from "../signing/verify.js";
import type { FileSystem } from "../fs/types.js";
import { ExitCode, PaasBackupError, UsageError } from "../errors.js";
import type { ArtifactDecryptor } from "../archive/encryption.js";
import { checkSnapshotChecksum, type ChecksumState } from "../repository/checksum.js";
import {
  chainOf,
  parentLinkProblem,
  noLatestInTheFuture,
  openRepository,
  scanSnapshots,
  type SnapshotRef,
  type DamagedSnapshot,
} from "../repository/repository.js";
import { futureSkippedWarning, futureSnapshots, presentSnapshots } from "../repository/timeline.js";
import type { ObjectStorage } from "../repository/storage.js";
import { compareSnapshotIds } from "../repository/ids.js";
import { materializeChain } from "./materialize.js";

export interface SnapshotVerification {
  id: string;
  /** "unknown" when the manifest is damaged */
  kind: "full" | "incremental" | "unknown";
  /** the snapshot's own error when its sidecar manifest cannot be read; null otherwise */
  manifestError: { code: string; message: string } | null;
  checksum: ChecksumState;
  sha256: string;
  expected: string | null;
  /** the chain back to its full, oldest first */
  chain: string[];
  chainOk: boolean;
  chainProblem: string | null;
  deep: {
    ok: boolean;
    files: number;
    bytes: number;
    error: { code: string; message: string; exitCode: number } | null;
  } | null;
  /** artifact readable by group or others, or owned by another user */
  access: string[];
  /**
   * who signed it (issue 24 §2): `signed` by an allowed signer (principal, fingerprint),
   * `unsigned`, `untrusted` (a key outside the allowed signers) or `bad` (changed after signing);
   * `refusal` is the error a restore would refuse it with, or null
   */
  signature: SnapshotSignature & { refusal: { code: string; message: string } | null };
  ok: boolean;
}

/** Checksum of one snapshot and of every link it needs, memoised across calls. */
export async function checkChain(
  snapshot: SnapshotRef,
  all: readonly SnapshotRef[],
  cache: Map<string, { state: ChecksumState; actual: string; expected: string | null }> = new Map(),
): Promise<{
  chain: SnapshotRef[];
  problem: string | null;
  self: { state: ChecksumState; actual: string; expected: string | null };
}> {
  const { chain, missing } = chainOf(snapshot, all);
  const check = async (s: SnapshotRef) => {
    let c = cache.get(s.id);
    if (!c) {
      const r = await checkSnapshotChecksum(s);
      c = { state: r.state, actual: r.actual, expected: r.expected };
      cache.set(s.id, c);
    }
    return c;
  };
  const self = await check(snapshot);
  if (missing) return { chain, problem: `link ${missing} of its chain is missing`, self };
  for (const link of chain) {
    const c = await check(link);
    if (c.state !== "verified") return { chain, problem: `link ${link.id}: ${c.state}`, self };
    const problem = parentLinkProblem(link, c.actual, chain[chain.indexOf(link) + 1]);
    if (problem) return { chain, problem, self };
  }
  return { chain, problem: null, self };
}

/** The newest snapshot older than `before` whose whole chain verifies: the policy's "previous verified snapshot". */
export async function findFallback(
  all: readonly SnapshotRef[],
  before: SnapshotRef,
  cache?: Map<string, { state: ChecksumState; actual: string; expected: string | null }>,
): Promise<SnapshotRef | null> {
  const memo = cache ?? new Map();
  for (let i = all.indexOf(before) - 1; i >= 0; i--) {
    const candidate = all[i]!;
    const { problem } = await checkChain(candidate, all, memo);
    if (!problem) return candidate;
  }
  return null;
}

export interface VerifyOptions {
  fs: FileSystem;
  backupRoot: string;
  /** where the snapshots are; by default the backup root through the local driver (a bucket: the CLI's s3:// root) */
  repository?: ObjectStorage;
  context: string;
  /** an id, "latest", or "all" */
  snapshot: string;
  deep?: boolean;
  decryptor?: ArtifactDecryptor;
  currentUid?: number;
  /** for archives with no manifest: refuse past this many times the artifact's size (default 200) */
  maxExpansion?: number;
  /** the allowed signers; default none (a signed snapshot is then `untrusted`) */
  signatures?: SignaturePolicy;
  /** with a clock, `latest` is what restore would pick: never a snapshot from the future */
  clock?: () => Date;
  /** told when `latest` passed over snapshots from the future (the warning restore gives) */
  onWarning?: (message: string) => void;
}

/**
 * Verify the selected snapshots of a context: each one's checksum, its chain, its access, its
 * signature and (deep) its replayed contents. Steps: scan → select → verify each (damaged ones get
 * their own error and never fail the others).
 */
export async function verifySnapshots(options: VerifyOptions): Promise<SnapshotVerification[]> {
  const { fs } = options;
  if (options.decryptor?.identityFile)
    await assertIdentityLocation(fs, options.decryptor.identityFile, options.backupRoot);
  const { snapshots: all, damaged } = options.repository
    ? await openRepository(options.repository).scan(options.context)
    : await scanSnapshots(fs, options.backupRoot, options.context);
  // Damaged snapshots are verified too, each with its own error; they never fail the others.
  const everything: (SnapshotRef | DamagedSnapshot)[] = [...all, ...damaged].sort((a, b) =>
    compareSnapshotIds(a.id, b.id),
  );
  const selected = selectToVerify(options, everything);
  const run: VerifyRun = {
    options,
    all,
    cache: new Map(),
    damagedIds: new Set(damaged.map((d) => d.id)),
    signaturePolicy: options.signatures ?? { allowedSigners: [] },
    signingRecord: all[0] ? await readSigningRecord(all[0].storage) : null,
  };
  const results: SnapshotVerification[] = [];
  for (const snapshot of selected) {
    if ("error" in snapshot) results.push(await verifyDamaged(snapshot, options.deep === true));
    else results.push(await verifyIntact(run, snapshot));
  }
  return results;
}

/** What every snapshot of one verify run is checked against, read once. */
interface VerifyRun {
  options: VerifyOptions;
  all: SnapshotRef[];
  /** checksums already read, shared by the chains that have links in common */
  cache: Map<string, { state: ChecksumState; actual: string; expected: string | null }>;
  damagedIds: Set<string>;
  signaturePolicy: SignaturePolicy;
  signingRecord: Awaited<ReturnType<typeof readSigningRecord>>;
}

/**
 * The snapshots `options.snapshot` names: "all", one id, or "latest" (with a clock, what restore
 * would pick: never one from the future, with the same warning). None is a usage error.
 */
function selectToVerify<S extends SnapshotRef | DamagedSnapshot>(
  options: VerifyOptions,
  everything: S[],
): S[] {
  const now = options.clock?.();
  const present = now ? presentSnapshots(everything, now) : everything;
  const selected =
    options.snapshot === "all"
      ? everything
      : options.snapshot === "latest"
        ? present.slice(-1)
        : everything.filter((s) => s.id === options.snapshot);
  if (now && options.snapshot === "latest" && present.length === 0 && everything.length > 0)
    throw noLatestInTheFuture(
      options.context,
      options.backupRoot,
      now,
      everything[everything.length - 1]!.id,
    );
  if (now && options.snapshot === "latest" && selected[0]) {
    const warning = futureSkippedWarning(futureSnapshots(everything, now), selected[0].id, now);
    if (warning) options.onWarning?.(warning);
  }
  if (selected.length === 0) {
    throw new UsageError(
      "PAAS_BACKUP_SNAPSHOT_NOT_FOUND",
      `no snapshot ${options.snapshot} of context ${options.context} in ${options.repository?.url ?? options.backupRoot}`,
      {
        path: options.repository?.url ?? options.backupRoot,
        remediation: "List what exists with `paas-backup list --context <name>`.",
        stage: "select",
      },
    );
  }
  return selected;
}

/** A snapshot whose sidecar manifest cannot be read: its checksum is still reported, and it fails with its own error. */
async function verifyDamaged(snapshot: DamagedSnapshot, deep: boolean): Promise<SnapshotVerification> {
  const c = await checkSnapshotChecksum(snapshot);
  return {
    id: snapshot.id,
    kind: "unknown",
    manifestError: { code: snapshot.error.code, message: snapshot.error.message },
    checksum: c.state,
    sha256: c.actual,
    expected: c.expected,
    chain: [],
    chainOk: false,
    chainProblem: `its manifest is damaged: ${snapshot.error.message}`,
    deep: deep
      ? {
          ok: false,
          files: 0,
          bytes: 0,
          error: { code: snapshot.error.code, message: snapshot.error.message, exitCode: 3 },
        }
      : null,
    access: [],
    signature: { state: "unsigned", refusal: null },
    ok: false,
  };
}

/** One readable snapshot: chain, access, (deep) contents and signature, in that order. */
async function verifyIntact(run: VerifyRun, snapshot: SnapshotRef): Promise<SnapshotVerification> {
  const { options, all } = run;
  const checked = await checkChain(snapshot, all, run.cache);
  const { chain, self } = checked;
  const missingLink = chainOf(snapshot, all).missing;
  // a link that is there but unreadable is named as damaged, not as missing
  const problem =
    checked.problem && missingLink && run.damagedIds.has(missingLink)
      ? `link ${missingLink} of its chain has a damaged manifest`
      : checked.problem;
  const access = accessProblems(snapshot, options.currentUid);
  const deep = options.deep ? await verifyContents(options, chain, problem) : null;
  const signature = await signatureOf(snapshot, run.signaturePolicy, run.signingRecord);
  return {
    id: snapshot.id,
    kind: snapshot.kind,
    manifestError: null,
    checksum: self.state,
    sha256: self.actual,
    expected: self.expected,
    chain: chain.map((c) => c.id),
    chainOk: problem === null,
    chainProblem: problem,
    deep,
    access,
    signature,
    ok:
      self.state === "verified" &&
      problem === null &&
      (deep?.ok ?? true) &&
      access.length === 0 &&
      signature.refusal === null,
  };
}

/** An artifact others can read, or owned by another user. Only a backend with modes and owners (a folder) has them to check: a bucket's access is its policy. */
function accessProblems(snapshot: SnapshotRef, currentUid: number | undefined): string[] {
  const access: string[] = [];
  const owned = snapshot.storage.flags.permissions;
  if (owned && snapshot.mode & 0o077)
    access.push(`artifact mode ${snapshot.mode.toString(8)} lets others read it (want 600)`);
  if (owned && currentUid !== undefined && snapshot.uid !== currentUid)
    access.push(`artifact owned by uid ${snapshot.uid}, not ${currentUid}`);
  return access;
}

/** --deep: replay the chain without writing; a broken chain is not replayed, and any refusal is reported, not thrown. */
async function verifyContents(
  options: VerifyOptions,
  chain: SnapshotRef[],
  problem: string | null,
): Promise<NonNullable<SnapshotVerification["deep"]>> {
  if (problem)
    return {
      ok: false,
      files: 0,
      bytes: 0,
      error: { code: "PAAS_BACKUP_CHAIN_BROKEN", message: problem, exitCode: ExitCode.integrity },
    };
  try {
    const r = await materializeChain({
      fs: options.fs,
      chain,
      target: null,
      ...(options.decryptor ? { decryptor: options.decryptor } : {}),
      ...(options.maxExpansion ? { maxExpansion: options.maxExpansion } : {}),
    });
    return { ok: true, files: r.files.length, bytes: r.bytes, error: null };
  } catch (err) {
    if (!(err instanceof PaasBackupError)) throw err;
    return {
      ok: false,
      files: 0,
      bytes: 0,
      error: { code: err.code, message: err.message, exitCode: err.exitCode },
    };
  }
}

/** Who signed it, and the error a restore would refuse it with (null when a restore accepts it). */
async function signatureOf(
  snapshot: SnapshotRef,
  policy: SignaturePolicy,
  record: VerifyRun["signingRecord"],
): Promise<SnapshotVerification["signature"]> {
  try {
    return { ...(await requireTrustedSnapshot(snapshot, policy, record)), refusal: null };
  } catch (err) {
    if (!(err instanceof PaasBackupError)) throw err;
    return {
      ...(await checkSnapshotSignature(snapshot, policy.allowedSigners)),
      refusal: { code: err.code, message: err.message },
    };
  }
}
