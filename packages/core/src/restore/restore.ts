import { randomUUID } from "node:crypto";
import { readSigningRecord, requireTrustedSnapshot, type SignaturePolicy } from "../signing/verify.js";
import type { FileSystem } from "../fs/types.js";
import {
  environmentErrorOf,
  IntegrityError,
  PaasBackupError,
  UsageError,
  ValidationError,
  type ErrorCode,
} from "../errors.js";
import type { ArtifactDecryptor } from "../archive/encryption.js";
import { validateContextName } from "../policy/context.js";
import { assertIdentityLocation } from "../policy/work-tree.js";
import { inContext, type ContextCallOptions } from "../context/session.js";
import type { SecretAcknowledgement, SecretAllowance } from "../policy/secrets.js";
import {
  chainOf,
  findSnapshot,
  openRepository,
  parentLinkProblem,
  type SnapshotRef,
} from "../repository/repository.js";
import { futureSkippedWarning } from "../repository/timeline.js";
import type { ObjectStorage } from "../repository/storage.js";
import { checkSnapshotChecksum, expectedChecksum } from "../repository/checksum.js";
import { contextDir, dirname, join } from "../util/paths.js";
import { exists } from "../util/optional-reads.js";
import { runDoctor, type DoctorReport } from "../validate/doctor.js";
import { filesScannedAtSnapshot, type ScannedFiles } from "../validate/proven.js";
import { writeBlock, writeBlockIn, clearBlock } from "../records/block.js";
import { newIncidentRecord, writeIncident, type IncidentRecord } from "../records/incident.js";
import { appendAuditEvent } from "../records/audit.js";
import { findFallback } from "./verify.js";
import { materializeChain, type LiveComparison } from "./materialize.js";
import {
  applyEventLines,
  catchUpEventLines,
  planEventLines,
  type EventLines,
  type SnapshotLog,
} from "./event-tails.js";
import { EVENT_LOGS } from "../policy/selection.js";
import { inspectVault, type TrustStore, type VaultReport } from "./vault.js";
import {
  JOURNAL_SCHEMA,
  readJournal,
  recoverContext,
  removeJournal,
  runSwap,
  workDir,
  writeJournal,
  type SwapJournal,
  type SwapStep,
} from "../context/journal.js";
import {
  partitionLive,
  planChanges,
  restoreScope,
  scopeSelects,
  type RestoreChanges,
  type RestoreScope,
} from "./scope.js";

export { workDir } from "../context/journal.js";
export type { RestoreChanges } from "./scope.js";

export interface ExternalDoctorResult {
  command: string;
  ok: boolean;
  exitCode: number | null;
  detail: string;
}

export interface RestoreOptions extends ContextCallOptions {
  fs: FileSystem;
  stateRoot: string;
  backupRoot: string;
  /** where the snapshots are; by default the backup root through the local driver (a bucket: the CLI's s3:// root) */
  repository?: ObjectStorage;
  context: string;
  /** an id or "latest" */
  snapshot: string;
  ticket: string;
  operator: string;
  clock: () => Date;
  decryptor?: ArtifactDecryptor;
  /**
   * who may have made the snapshots restored (allowed signers), and whether unsigned ones dated
   * after the repository began signing are accepted; default: no signer is allowed, so a signed
   * repository needs its allowed signers
   */
  signatures?: SignaturePolicy;
  /** restore the newest older verified snapshot when the asked one fails its checksum */
  fallback?: boolean;
  dryRun?: boolean;
  secretAllow?: readonly SecretAllowance[];
  /** findings the operator acknowledged: the post-restore doctor does not fail on them */
  secretAcknowledged?: readonly SecretAcknowledgement[];
  allowRepoState?: boolean;
  trustStore?: TrustStore | null;
  /** runs `si paas doctor --json` or the like against the state root; the CLI supplies it */
  externalDoctor?: (stateRoot: string) => Promise<ExternalDoctorResult>;
  /** "restore" or "drill": the drill restores into a scratch root and records elsewhere */
  purpose?: "restore" | "drill";
  /** confirm (after checksum, before touching anything); false cancels */
  confirm?: (plan: RestorePlan) => Promise<boolean>;
  onBytes?: (n: number) => void;
  /** for archives with no manifest: refuse past this many times the artifact's size (default 200) */
  maxExpansion?: number;
  /** the external doctor's command line, recorded in the block marker so unblock can require it */
  externalDoctorCommand?: string;
  /** replace the whole context (only vault/ stays), as before issue 10 */
  exact?: boolean;
  /** restore only these files (or folders of an included optional folder); nothing else changes */
  paths?: readonly string[];
}

export interface RestorePlan {
  context: string;
  snapshot: { id: string; kind: string; time: string; sha256: string };
  fallback: { used: boolean; from?: string; reason?: string };
  /** snapshot: what the snapshot covers; exact: the whole context; paths: only --path */
  scope: { mode: RestoreScope["mode"]; paths: string[] };
  changes: RestoreChanges;
  /** the doctor over the staged state; computed for --dry-run and for the confirmation prompt */
  stagedDoctor: DoctorReport | null;
  /** what the snapshot recorded when taken, e.g. a state file that was not valid JSON (kept as is) */
  warnings: string[];
  /**
   * live event lines written since the snapshot that the replaced logs would lose: appended to the
   * restored log, or kept in a file of the incident (issue 20). Planned here; read again just
   * before the swap, so the result and the incident record name what was carried over.
   */
  eventLines: EventLines[];
}

export interface RestoreResult extends RestorePlan {
  ok: boolean;
  outcome: IncidentRecord["outcome"];
  dryRun: boolean;
  contextDir: string;
  movedAsideTo: string | null;
  doctor: DoctorReport | null;
  externalDoctor: ExternalDoctorResult | null;
  vault: VaultReport | null;
  notRestored: { path: string; reason: string }[];
  blockFile: string | null;
  incidentFile: string;
  startedAt: string;
  endedAt: string;
}

/** The whole plan of one restore, built step by step: each phase adds what it learned. */
interface RestoreRun {
  options: RestoreOptions;
  context: string;
  purpose: "restore" | "drill";
  live: string;
  stagedRoot: string;
  stagedContext: string;
  aside: string;
  /** the incident's name stem, e.g. 20261203T101739Z-restore-ab12cd34 (files kept from the live logs) */
  stem: string;
  record: IncidentRecord;
  /** renames the swap has made, how many it has in all, and the index of its pivot (staged -> live) */
  swap: { done: number; total: number; pivot: number };
}

type PlannedEventLines = Awaited<ReturnType<typeof planEventLines>>;

interface ChosenChain {
  snapshot: SnapshotRef;
  chain: SnapshotRef[];
  checksums: Map<string, string | null>;
}

interface Staged {
  files: { path: string; size: number; sha256: string }[];
  notRestored: { path: string; reason: string }[];
  scope: RestoreScope;
  split: { aside: string[]; keep: string[] };
  changes: RestoreChanges;
  /** what the snapshot read of each event log it holds */
  snapshotLogs: Map<string, SnapshotLog>;
  /** what staging found comparing the live logs with the restored ones (see liveLogsToCompare) */
  liveLogs: Map<string, LiveComparison>;
}

function checksumProblem(
  state: "missing-checksum" | "malformed-checksum" | "mismatch",
  snapshot?: SnapshotRef,
): { code: ErrorCode; why: string } {
  if (state === "malformed-checksum")
    return {
      code: "PAAS_BACKUP_CHECKSUM_MALFORMED",
      why: `its checksum file ${snapshot?.checksumPath ?? ""} is malformed (empty or truncated: it names no sha256 for the artifact)`,
    };
  return state === "missing-checksum"
    ? { code: "PAAS_BACKUP_CHECKSUM_MISSING", why: "its checksum file is missing" }
    : { code: "PAAS_BACKUP_CHECKSUM_MISMATCH", why: "its checksum does not match" };
}

/** plan: which snapshot, which chain, what each link's checksum file says (read, not yet compared). */
async function planRestore(run: RestoreRun): Promise<{
  asked: SnapshotRef;
  all: SnapshotRef[];
  chosen: ChosenChain;
  problem: { code: ErrorCode; why: string } | null;
  /** latest passed over snapshots from the future: the warning every reader gives */
  futureWarning: string | null;
}> {
  const { fs, backupRoot, repository } = run.options;
  const now = run.options.clock();
  const {
    snapshot: asked,
    all,
    skippedFuture,
  } = repository
    ? await openRepository(repository).find(run.context, run.options.snapshot, now)
    : await findSnapshot(fs, backupRoot, run.context, run.options.snapshot, now);
  run.record.snapshot = { id: asked.id, sha256: null, kind: asked.kind };
  const { chain, missing } = chainOf(asked, all);
  const checksums = new Map<string, string | null>();
  for (const link of chain) checksums.set(link.id, await expectedChecksum(link));
  return {
    asked,
    all,
    chosen: { snapshot: asked, chain, checksums },
    problem: verifyChainRecords(asked, chain, checksums, missing),
    futureWarning: futureSkippedWarning(skippedFuture, asked.id, now),
  };
}

/** verify (records): every link has a checksum file and each incremental names its parent's checksum. The bytes are checked while staging. */
function verifyChainRecords(
  asked: SnapshotRef,
  chain: readonly SnapshotRef[],
  checksums: ReadonlyMap<string, string | null>,
  missing: string | null,
): { code: ErrorCode; why: string } | null {
  // a checksum file that is there but names no sha256 (empty, truncated) is malformed, not missing
  if (!checksums.get(asked.id))
    return checksumProblem(asked.checksum ? "malformed-checksum" : "missing-checksum", asked);
  if (missing) return { code: "PAAS_BACKUP_CHAIN_BROKEN", why: `link ${missing} of its chain is missing` };
  for (let i = 0; i < chain.length; i++) {
    const link = chain[i]!;
    if (!checksums.get(link.id))
      return { code: "PAAS_BACKUP_CHAIN_BROKEN", why: `link ${link.id}: missing-checksum` };
    const problem = parentLinkProblem(link, checksums.get(link.id), chain[i + 1]);
    if (problem) return { code: "PAAS_BACKUP_CHAIN_BROKEN", why: problem };
  }
  return null;
}

/** The newest older snapshot whose chain verifies; this one hashes (it runs only when the asked one failed). */
async function useFallbackOrRefuse(
  run: RestoreRun,
  asked: SnapshotRef,
  all: SnapshotRef[],
  problem: { code: ErrorCode; why: string },
): Promise<ChosenChain> {
  const cache = new Map();
  const fallback = await findFallback(all, asked, cache);
  if (!run.options.fallback || !fallback) {
    run.record.outcome = "refused";
    throw new IntegrityError(
      problem.code,
      `refusing to restore snapshot ${asked.id} of ${run.context}: ${problem.why} (${asked.artifactPath})`,
      {
        path: asked.artifactPath,
        remediation: fallback
          ? `Nothing was changed. The newest older snapshot that verifies is ${fallback.id}: restore it with --snapshot ${fallback.id}, or add --fallback.`
          : "Nothing was changed. No older snapshot verifies either: fetch a copy from the offsite target (restore --from-offsite) and escalate.",
        stage: "checksum",
        data: { fallback: fallback?.id ?? null },
      },
    );
  }
  run.record.fallback = { used: true, from: asked.id, reason: problem.why };
  run.record.snapshot = { id: fallback.id, sha256: null, kind: fallback.kind };
  const { chain } = chainOf(fallback, all);
  const checksums = new Map<string, string | null>();
  for (const link of chain) checksums.set(link.id, await expectedChecksum(link));
  return { snapshot: fallback, chain, checksums };
}

/**
 * verify (authorship, issue 24 §2): every link of the chain is signed by an allowed signer, or is
 * unsigned and older than the repository's signing; otherwise nothing is touched (exit 4).
 */
async function requireTrustedChain(run: RestoreRun, chosen: ChosenChain): Promise<void> {
  const policy = run.options.signatures ?? { allowedSigners: [] };
  const record = await readSigningRecord(chosen.snapshot.storage);
  const found: NonNullable<IncidentRecord["signatures"]> = [];
  try {
    for (const link of chosen.chain) {
      const s = await requireTrustedSnapshot(link, policy, record);
      found.push({
        id: link.id,
        state: s.state,
        ...(s.state === "signed" ? { principal: s.principal, fingerprint: s.fingerprint } : {}),
      });
    }
  } catch (err) {
    run.record.outcome = "refused";
    throw err;
  } finally {
    run.record.signatures = found;
    if (policy.allowUnsigned) run.record.allowUnsigned = true;
  }
}

/** After staging failed: was it because an artifact is not the one its checksum file names? (a second read, on the failure path only) */
async function checksumFailureOf(
  chosen: ChosenChain,
  err: unknown,
): Promise<{ code: ErrorCode; why: string } | null> {
  if (
    err instanceof IntegrityError &&
    (err.code === "PAAS_BACKUP_CHECKSUM_MISMATCH" || err.code === "PAAS_BACKUP_CHECKSUM_MISSING")
  ) {
    const id = err.data.snapshot as string;
    return id === chosen.snapshot.id
      ? checksumProblem("mismatch")
      : { code: "PAAS_BACKUP_CHAIN_BROKEN", why: `link ${id}: mismatch` };
  }
  // a link whose plaintext is not the one the next link was built on (found while staging)
  if (err instanceof IntegrityError && err.code === "PAAS_BACKUP_CHAIN_BROKEN")
    return { code: err.code, why: typeof err.data.reason === "string" ? err.data.reason : err.message };
  if (!(err instanceof PaasBackupError)) return null;
  for (const link of chosen.chain) {
    const check = await checkSnapshotChecksum(link).catch(() => null);
    if (check && check.state !== "verified")
      return link === chosen.snapshot
        ? checksumProblem(check.state)
        : { code: "PAAS_BACKUP_CHAIN_BROKEN", why: `link ${link.id}: ${check.state}` };
  }
  // Bytes that match their checksum file and still do not read (the checksum was written after the
  // damage): as damaged as a mismatch, and the older snapshot that verifies is named the same way.
  if (err instanceof IntegrityError && err.code === "PAAS_BACKUP_ARCHIVE_CORRUPT") {
    const id = err.data.snapshot as string | undefined;
    const reason = typeof err.data.reason === "string" ? err.data.reason : err.message;
    if (id === undefined || id === chosen.snapshot.id)
      return { code: "PAAS_BACKUP_ARCHIVE_CORRUPT", why: `its artifact is corrupt (${reason})` };
    return { code: "PAAS_BACKUP_CHAIN_BROKEN", why: `link ${id} is corrupt (${reason})` };
  }
  return null;
}

/**
 * stage: read each artifact once, hashing it while it is decrypted, inflated and extracted into
 * the staging folder; compare with the checksum file; then lay out what the swap will do. The
 * staged context carries a block marker from the start, so if it goes live and validation never
 * finishes, the context is blocked, not trusted.
 */
async function stageRestore(run: RestoreRun, chosen: ChosenChain): Promise<Staged> {
  const { fs } = run.options;
  // Journaled from here: a kill while staging leaves a journal whose recovery removes the staging folder.
  if (!run.options.dryRun) await writeJournal(fs, run.options.stateRoot, stagingJournal(run));
  await fs.rm(run.stagedRoot, { recursive: true, force: true });
  await fs.mkdir(join(run.stagedRoot, "contexts"), { recursive: true, mode: 0o700 });
  await fs.mkdir(run.stagedContext, { mode: 0o700 });
  const newest = chosen.chain[chosen.chain.length - 1]!;
  // --path needs the snapshot's file list before writing: the manifest has it; a hand-made archive is staged whole.
  const listed = newest.manifest ? newest.manifest.files.map((f) => f.path) : null;
  let scope = listed
    ? restoreScope(newest.manifest, listed, {
        exact: run.options.exact ?? false,
        paths: run.options.paths ?? [],
      })
    : null;
  const result = await materializeChain({
    fs,
    chain: chosen.chain,
    target: run.stagedContext,
    checksums: chosen.checksums,
    compareWith: liveLogsToCompare(run, newest),
    ...(scope ? { select: (p: string) => scopeSelects(scope!, p) } : {}),
    ...(run.options.maxExpansion ? { maxExpansion: run.options.maxExpansion } : {}),
    ...(run.options.decryptor ? { decryptor: run.options.decryptor } : {}),
    ...(run.options.onBytes ? { onBytes: run.options.onBytes } : {}),
  });
  run.record.snapshot = {
    id: chosen.snapshot.id,
    sha256: result.artifactSha256.get(chosen.snapshot.id) ?? null,
    kind: chosen.snapshot.kind,
  };
  if (!scope) {
    scope = restoreScope(
      null,
      result.files.map((f) => f.path),
      { exact: run.options.exact ?? false, paths: run.options.paths ?? [] },
    );
    const dropped = result.files.filter((f) => !scopeSelects(scope!, f.path)).map((f) => f.path);
    for (const path of dropped) await fs.rm(join(run.stagedContext, path), { force: true });
    // The folders those files left empty go too: a staged folder the restore does not cover would
    // stand where the swap moves the live one back (issue 20: a --path restore of a shell-made
    // snapshot hit "something is already there" after the pivot).
    await removeEmptiedFolders(fs, run.stagedContext, dropped);
  }
  const files = result.files.filter((f) => scopeSelects(scope!, f.path));
  const split = await partitionLive(fs, run.live, scope);
  // The folders the kept entries go back into must exist in the new context.
  for (const keep of split.keep)
    if (dirname(keep) !== ".")
      await fs.mkdir(join(run.stagedContext, dirname(keep)), { recursive: true, mode: 0o700 });
  // The quick check needs the source's mtime, and bytes stored as they were read (no redaction).
  const recorded = new Map((newest.manifest?.files ?? []).map((f) => [f.path, f]));
  const quick = files.map((f) => {
    const m = recorded.get(f.path);
    const asRead = m && m.sha256 === f.sha256 && m.size === f.size && !m.redactions?.length;
    return asRead && m.sourceSha256 === undefined && m.mtimeMs !== undefined
      ? { ...f, sourceMtimeMs: m.mtimeMs }
      : f;
  });
  const changes = await planChanges(fs, run.live, quick, split);
  const snapshotLogs = new Map<string, SnapshotLog>();
  for (const f of files) {
    if (!(EVENT_LOGS as readonly string[]).includes(f.path)) continue;
    // a log stored redacted: a live log that extends it starts with the bytes the snapshot read
    const m = recorded.get(f.path);
    snapshotLogs.set(
      f.path,
      m?.sourceSha256 !== undefined && m.sourceSize !== undefined
        ? { size: m.sourceSize, sha256: m.sourceSha256 }
        : { size: f.size, sha256: f.sha256 },
    );
  }
  await writeBlockIn(fs, run.stagedContext, {
    context: run.context,
    ticket: run.options.ticket,
    blockedAt: run.options.clock().toISOString(),
    reason: "restore in progress: post-restore validation has not passed yet",
    snapshot: { id: chosen.snapshot.id, sha256: run.record.snapshot.sha256 ?? "" },
    failingChecks: [],
    pendingValidation: true,
    externalDoctor: run.options.externalDoctorCommand ? { command: run.options.externalDoctorCommand } : null,
  });
  return {
    files,
    notRestored: result.notRestored,
    scope,
    split,
    changes,
    snapshotLogs,
    liveLogs: result.compared,
  };
}

/**
 * The live event logs staging compares with the restored ones as it extracts them, so planning
 * the live lines needs no second pass over every live log (a tenth of a restore). Only where the
 * snapshot stored a log as it read it: a log stored redacted begins differently from the live one
 * (its lines are judged by the source's sha256, as before). A drill has no live logs.
 */
function liveLogsToCompare(run: RestoreRun, newest: SnapshotRef): Map<string, string> {
  const out = new Map<string, string>();
  if (run.purpose === "drill" || !newest.manifest) return out;
  for (const f of newest.manifest.files)
    if ((EVENT_LOGS as readonly string[]).includes(f.path) && f.sourceSha256 === undefined)
      out.set(f.path, join(run.live, f.path));
  return out;
}

/** Remove the folders of `paths` (and their parents) that are empty now, deepest first; never `root` itself. */
async function removeEmptiedFolders(fs: FileSystem, root: string, paths: readonly string[]): Promise<void> {
  const folders = new Set<string>();
  for (const path of paths)
    for (let d = dirname(path); d !== "." && d !== "" && !folders.has(d); d = dirname(d)) folders.add(d);
  const deepestFirst = [...folders].sort((a, b) => b.split("/").length - a.split("/").length);
  for (const folder of deepestFirst) {
    const abs = join(root, folder);
    const entries = await fs.readdir(abs).catch(() => null);
    if (entries && entries.length === 0) await fs.rm(abs, { recursive: true, force: true });
  }
}

function stagingJournal(run: RestoreRun): SwapJournal {
  return {
    schema: JOURNAL_SCHEMA,
    operation: "restore",
    context: run.context,
    ticket: run.options.ticket,
    operator: run.options.operator,
    startedAt: run.record.startedAt,
    phase: "stage",
    next: 0,
    steps: [],
    pivot: 0,
    vault: join(run.live, "vault"),
    cleanup: [run.stagedRoot],
    writeOnComplete: [],
    renameOnComplete: [],
  };
}

/**
 * swap: live -> aside, staged -> live (the pivot), then each entry the restore keeps (vault/ first)
 * from aside back into the new live context. Each is one rename on one filesystem, journaled
 * before it runs; nothing is copied, so the vault keeps its inodes.
 */
async function swapRestore(run: RestoreRun, staged: Staged): Promise<void> {
  const { fs, stateRoot } = run.options;
  await fs.mkdir(join(workDir(stateRoot), "moved-aside"), { recursive: true, mode: 0o700 });
  await fs.mkdir(join(stateRoot, "contexts"), { recursive: true, mode: 0o700 });
  const liveExisted = await exists(fs, run.live);
  const keep = [...staged.split.keep].sort((a, b) =>
    a === "vault" ? -1 : b === "vault" ? 1 : a < b ? -1 : 1,
  );
  const steps: SwapStep[] = liveExisted
    ? [
        { name: "live-aside", from: run.live, to: run.aside },
        { name: "staged-live", from: run.stagedContext, to: run.live },
        ...keep.map((p) => ({ name: `keep ${p}`, from: join(run.aside, p), to: join(run.live, p) })),
      ]
    : [{ name: "staged-live", from: run.stagedContext, to: run.live }];
  const pointer = {
    context: run.context,
    ticket: run.options.ticket,
    aside: liveExisted ? run.aside : null,
    kept: keep,
    snapshot: run.record.snapshot?.id ?? null,
    startedAt: run.record.startedAt,
    // The snapshot's bytes each event log starts with once live: rollback keeps (in its incident)
    // only the lines past them, not the restored snapshot's own lines, which its artifact holds.
    restoredLogs: Object.fromEntries(
      staged.files
        .filter((f) => (EVENT_LOGS as readonly string[]).includes(f.path))
        .map((f) => [f.path, { size: f.size, sha256: f.sha256 }]),
    ),
  };
  const journal: SwapJournal = {
    schema: JOURNAL_SCHEMA,
    operation: "restore",
    context: run.context,
    ticket: run.options.ticket,
    operator: run.options.operator,
    startedAt: run.record.startedAt,
    phase: "swap",
    next: 0,
    steps,
    pivot: liveExisted ? 1 : 0,
    vault: null,
    cleanup: [run.stagedRoot],
    writeOnComplete: [
      { path: lastRestorePath(stateRoot, run.context), content: `${JSON.stringify(pointer, null, 2)}\n` },
    ],
    renameOnComplete: [],
  };
  run.record.movedAsideTo = liveExisted ? run.aside : null;
  run.swap.pivot = journal.pivot;
  run.swap.total = steps.length;
  await runSwap(
    fs,
    stateRoot,
    journal,
    keep.includes("vault") ? join(run.live, "vault") : null,
    "validate",
    run.swap,
  );
}

/** validate: vault report, doctor, external doctor; the staged block marker is lifted only when all pass. */
async function validateRestore(
  run: RestoreRun,
  chosen: ChosenChain,
  scannedAtSnapshot: ScannedFiles,
): Promise<{
  doctor: DoctorReport;
  external: ExternalDoctorResult | null;
  vault: VaultReport;
  blockFile: string | null;
  ok: boolean;
}> {
  const { fs, stateRoot, clock } = run.options;
  let restoredConfig: Record<string, unknown> | null = null;
  try {
    restoredConfig = JSON.parse(
      Buffer.from(await fs.readFile(join(run.live, "config.json"))).toString("utf8"),
    ) as Record<string, unknown>;
  } catch {
    restoredConfig = null;
  }
  const vault = await inspectVault(fs, run.live, restoredConfig, run.options.trustStore ?? null);
  run.record.vault = vault;
  const doctor = await runDoctor({
    fs,
    stateRoot,
    context: run.context,
    ignoreBlock: true,
    ...(run.options.secretAllow ? { secretAllow: run.options.secretAllow } : {}),
    ...(run.options.secretAcknowledged ? { secretAcknowledged: run.options.secretAcknowledged } : {}),
    allowRepoState: run.options.allowRepoState ?? false,
    scannedAtSnapshot,
  });
  run.record.doctor = { ok: doctor.ok, checks: doctor.checks };
  const external = run.options.externalDoctor ? await run.options.externalDoctor(stateRoot) : null;
  run.record.externalDoctor = external;
  const ok = doctor.ok && (external?.ok ?? true);
  let blockFile: string | null = null;
  // On success the staged marker is lifted last, in recordRestore: until then the context stays blocked.
  if (!ok) {
    const failing = [
      ...doctor.checks.filter((c) => !c.ok),
      ...(external && !external.ok ? [{ name: "external_doctor", ok: false, detail: external.detail }] : []),
    ];
    blockFile = await writeBlock(fs, stateRoot, {
      context: run.context,
      ticket: run.options.ticket,
      blockedAt: clock().toISOString(),
      reason: `post-restore validation failed: ${failing.map((c) => c.name).join(", ")}`,
      snapshot: { id: chosen.snapshot.id, sha256: run.record.snapshot?.sha256 ?? "" },
      failingChecks: failing,
      externalDoctor: run.options.externalDoctorCommand
        ? { command: run.options.externalDoctorCommand }
        : null,
    });
  }
  return { doctor, external, vault, blockFile, ok };
}

/** record: the audit event in the context, the incident record, and the journal retired. */
async function recordRestore(run: RestoreRun, chosen: ChosenChain, ok: boolean): Promise<string> {
  const { fs, stateRoot, clock } = run.options;
  run.record.outcome = ok
    ? run.purpose === "drill"
      ? "drill-passed"
      : "restored"
    : run.purpose === "drill"
      ? "drill-failed"
      : "blocked";
  if (run.purpose === "restore") {
    await appendAuditEvent(fs, stateRoot, run.context, {
      timestamp: clock(),
      command: "backup restore",
      status: ok ? "succeeded" : "failed",
      fields: {
        snapshot_id: chosen.snapshot.id,
        snapshot_sha256: run.record.snapshot?.sha256 ?? "",
        ticket: run.options.ticket,
        operator: run.options.operator,
        fallback: String(run.record.fallback.used),
      },
      ...(ok
        ? {}
        : {
            error: {
              code: "PAAS_BACKUP_VALIDATION_FAILED",
              message: "post-restore validation failed",
              remediation: "Resolve the failing doctor checks, then run paas-backup unblock.",
              stage: "validate",
            },
          }),
    });
  }
  const file = await finishRecord(run);
  if (ok) await clearBlock(fs, stateRoot, run.context);
  // The restore is done and recorded: a journal that cannot be removed now is retired by the
  // next command's recovery (nothing left to rename), so it does not fail a finished restore.
  await removeJournal(fs, stateRoot, run.context).catch(() => undefined);
  return file;
}

async function finishRecord(run: RestoreRun): Promise<string> {
  run.record.endedAt = run.options.clock().toISOString();
  return writeIncident(
    run.options.fs,
    run.options.backupRoot,
    run.record,
    run.purpose === "drill" ? "drills" : "incidents",
    run.options.signer,
  );
}

/** After a failure before the pivot: reverse what the swap did, remove the journal, no recovery record (the restore's own record tells it). */
async function undoUnfinished(run: RestoreRun): Promise<void> {
  const { fs, stateRoot } = run.options;
  const journal = await readJournal(fs, stateRoot, run.context).catch(() => null);
  if (!journal || journal.startedAt !== run.record.startedAt || journal.steps.length === 0) {
    await fs.rm(run.stagedRoot, { recursive: true, force: true });
    if (journal?.startedAt === run.record.startedAt) await removeJournal(fs, stateRoot, run.context);
    return;
  }
  await recoverContext({
    fs,
    stateRoot,
    backupRoot: run.options.backupRoot,
    context: run.context,
    clock: run.options.clock,
    operator: run.options.operator,
    ...(run.options.signer ? { signer: run.options.signer } : {}),
  });
}

export function lastRestorePath(stateRoot: string, context: string): string {
  return join(workDir(stateRoot), `${context}.last-restore.json`);
}

function scopeRecord(staged: Staged): NonNullable<IncidentRecord["scope"]> {
  return {
    mode: staged.scope.mode,
    paths: staged.scope.paths,
    changed: staged.changes.changed,
    added: staged.changes.added,
    movedAside: staged.changes.removed,
    kept: staged.changes.kept,
  };
}

/**
 * Restore a snapshot into a context (policy §6) as six named phases: plan, verify, stage, swap,
 * validate, record. The artifact is read once: hashed while it is extracted into staging and
 * compared with its checksum file before anything live changes. The swap is journaled so a kill
 * at any point is undone or completed by the next command (recoverContext). Only what the
 * snapshot covers is replaced (see scope.ts); the live contents it replaces are moved aside,
 * never deleted; vault/ and everything else the restore does not cover stay, by rename.
 * A failure after the swap leaves the context blocked and names rollback.
 */
export async function restoreSnapshot(options: RestoreOptions): Promise<RestoreResult> {
  const { fs } = options;
  const context = validateContextName(options.context);
  const purpose = options.purpose ?? "restore";
  if (!options.ticket.trim()) {
    throw new UsageError("PAAS_BACKUP_TICKET_REQUIRED", "a restore needs the incident ticket id (--ticket)", {
      remediation: "Pass --ticket <incident-id>; policy §6 requires a confirmed incident before any restore.",
      stage: "arguments",
    });
  }
  // Policy §7.1 holds for every caller: the identity never in a work tree (the backup root is
  // checked as the session opens).
  if (options.decryptor?.identityFile)
    await assertIdentityLocation(fs, options.decryptor.identityFile, options.backupRoot);
  // In the context's session: locked, and whatever a crash left finished or undone first.
  return inContext(
    { ...options, command: purpose === "drill" ? "drill" : "restore", guardStateRoot: false },
    () => restoreInSession(options, context, purpose),
  );
}

/**
 * The restore inside its context session, as named steps (restic's restorer is the model): each
 * step says what it decides; the failure path is one step of its own. Nothing live changes before
 * `stageWithFallback` has confirmed every link's checksum on the bytes it extracted.
 */
async function restoreInSession(
  options: RestoreOptions,
  context: string,
  purpose: "restore" | "drill",
): Promise<RestoreResult> {
  const run = newRestoreRun(options, context, purpose);
  let swapped = false;
  try {
    const planned = await chooseChain(run);
    const { chosen, staged } = await stageWithFallback(run, planned);
    run.record.scope = scopeRecord(staged);
    // Restored files whose bytes the snapshot's scanner (same rules) already read: the doctor skips their scan.
    const scannedAtSnapshot = filesScannedAtSnapshot(chosen.chain, staged.files, options.secretAllow ?? []);
    const stagedDoctor = await doctorBeforeSwap(run, scannedAtSnapshot);
    const plannedLines = await planLiveEventLines(run, staged);
    const plan = describePlan(run, planned.futureWarning, chosen, staged, stagedDoctor, plannedLines);
    if (options.dryRun) return await finishDryRun(run, plan, staged, stagedDoctor);
    await confirmOrCancel(run, plan);
    const lines = await carryEventLines(run, staged, plannedLines);
    await flushStaged(run);
    await swapRestore(run, staged);
    swapped = true;
    await catchUpAfterSwap(run, lines);
    const v = await validateRestore(run, chosen, scannedAtSnapshot);
    const incidentFile = await recordRestore(run, chosen, v.ok);
    return restoredOrBlocked(run, plan, staged, chosen, v, incidentFile);
  } catch (thrown) {
    throw await failRestore(run, thrown, swapped);
  }
}

/** Names, paths and the incident record of one restore: the staging and moved-aside folders are unique to it. */
function newRestoreRun(options: RestoreOptions, context: string, purpose: "restore" | "drill"): RestoreRun {
  const { clock, stateRoot } = options;
  const startedAt = clock();
  const nonce = randomUUID().slice(0, 8);
  const stamp = startedAt
    .toISOString()
    .replace(/[-:]/g, "")
    .replace(/\.\d+Z$/, "Z");
  const stagedRoot = join(workDir(stateRoot), "staging", `${context}.${stamp}.${nonce}`);
  return {
    options,
    context,
    purpose,
    live: contextDir(stateRoot, context),
    // The staged context sits in a root of its own, so the doctor can read it by name as it will stand.
    stagedRoot,
    stagedContext: join(stagedRoot, "contexts", context),
    aside: join(workDir(stateRoot), "moved-aside", `${context}.${stamp}.${nonce}`),
    stem: `${stamp}-${purpose}-${nonce}`,
    record: newIncidentRecord({
      kind: purpose === "drill" ? "drill" : "restore",
      ticket: options.ticket,
      context,
      stateRoot,
      operator: options.operator,
      startedAt: startedAt.toISOString(),
      requestedSnapshot: options.snapshot,
      dryRun: options.dryRun === true,
    }),
    swap: { done: 0, total: Number.POSITIVE_INFINITY, pivot: Number.POSITIVE_INFINITY },
  };
}

type PlannedRestore = Awaited<ReturnType<typeof planRestore>>;

/**
 * plan + verify (records, authorship): the asked snapshot's chain, or the fallback when its
 * records already fail (checksum file missing, chain broken); every link signed as the policy
 * asks. Reads records only: the artifact's bytes are checked while staging.
 */
async function chooseChain(run: RestoreRun): Promise<PlannedRestore & { chosen: ChosenChain }> {
  const planned = await planRestore(run);
  const chosen = planned.problem
    ? await useFallbackOrRefuse(run, planned.asked, planned.all, planned.problem)
    : planned.chosen;
  await requireTrustedChain(run, chosen);
  return { ...planned, chosen };
}

/**
 * stage: extract the chosen chain into staging, its checksum confirmed on the bytes read. When
 * the asked snapshot's bytes fail (checksum, or corrupt yet matching), the newest older one that
 * verifies is staged instead (with --fallback) or named in the refusal; nothing live was touched.
 */
async function stageWithFallback(
  run: RestoreRun,
  planned: PlannedRestore & { chosen: ChosenChain },
): Promise<{ chosen: ChosenChain; staged: Staged }> {
  try {
    return { chosen: planned.chosen, staged: await stageRestore(run, planned.chosen) };
  } catch (err) {
    const problem = await checksumFailureOf(planned.chosen, err);
    if (!problem || planned.chosen.snapshot !== planned.asked) throw err;
    await run.options.fs.rm(run.stagedRoot, { recursive: true, force: true });
    const chosen = await useFallbackOrRefuse(run, planned.asked, planned.all, problem);
    return { chosen, staged: await stageRestore(run, chosen) };
  }
}

/**
 * The staged state is what will be live: validate it here only when someone will read the result
 * before the swap (--dry-run, the confirmation prompt); otherwise the post-restore doctor is the
 * one pass over it.
 */
async function doctorBeforeSwap(
  run: RestoreRun,
  scannedAtSnapshot: ScannedFiles,
): Promise<DoctorReport | null> {
  const { options } = run;
  if (!options.dryRun && !options.confirm) return null;
  return runDoctor({
    fs: options.fs,
    stateRoot: run.stagedRoot,
    context: run.context,
    ignoreBlock: true,
    ...(options.secretAllow ? { secretAllow: options.secretAllow } : {}),
    ...(options.secretAcknowledged ? { secretAcknowledged: options.secretAcknowledged } : {}),
    allowRepoState: options.allowRepoState ?? false,
    scannedAtSnapshot,
  });
}

/**
 * The live event lines the restore would lose (none for a drill: its scratch root has no live
 * logs). `reread`: after the prompt every live log is read again; staging's comparison is not used.
 */
function planLiveEventLines(run: RestoreRun, staged: Staged, reread = false): Promise<PlannedEventLines> {
  if (run.purpose === "drill") return Promise.resolve([]);
  return planEventLines({
    fs: run.options.fs,
    live: run.live,
    replaced: (path) => scopeSelects(staged.scope, path),
    snapshotLogs: staged.snapshotLogs,
    stagedContext: run.stagedContext,
    exact: staged.scope.mode === "exact",
    ...(reread ? {} : { compared: staged.liveLogs }),
  });
}

/** What the operator confirms and --dry-run prints: the snapshot, its scope, the changes, the staged doctor. */
function describePlan(
  run: RestoreRun,
  futureWarning: string | null,
  chosen: ChosenChain,
  staged: Staged,
  stagedDoctor: DoctorReport | null,
  plannedLines: PlannedEventLines,
): RestorePlan {
  return {
    context: run.context,
    snapshot: {
      id: chosen.snapshot.id,
      kind: chosen.snapshot.kind,
      time: chosen.snapshot.time.toISOString(),
      sha256: run.record.snapshot?.sha256 ?? "",
    },
    fallback: run.record.fallback,
    scope: { mode: staged.scope.mode, paths: staged.scope.paths },
    changes: staged.changes,
    stagedDoctor,
    warnings: [
      ...(futureWarning ? [futureWarning] : []),
      ...(chosen.snapshot.manifest?.warnings ?? []).map((w) => `${w.path}: ${w.reason}`),
    ],
    eventLines: plannedLines.map((p) => p.record),
  };
}

/** --dry-run: the external doctor judges the staged state too (issue 10 §3); staging goes, nothing live changed. */
async function finishDryRun(
  run: RestoreRun,
  plan: RestorePlan,
  staged: Staged,
  stagedDoctor: DoctorReport | null,
): Promise<RestoreResult> {
  const { options } = run;
  const external = options.externalDoctor ? await options.externalDoctor(run.stagedRoot) : null;
  await options.fs.rm(run.stagedRoot, { recursive: true, force: true });
  run.record.outcome = "dry-run";
  run.record.doctor = stagedDoctor ? { ok: stagedDoctor.ok, checks: stagedDoctor.checks } : null;
  run.record.externalDoctor = external;
  const incidentFile = await finishRecord(run);
  return {
    ...plan,
    ok: (stagedDoctor?.ok ?? true) && (external?.ok ?? true),
    outcome: "dry-run",
    dryRun: true,
    contextDir: run.live,
    movedAsideTo: null,
    doctor: stagedDoctor,
    externalDoctor: external,
    vault: null,
    notRestored: staged.notRestored,
    blockFile: null,
    incidentFile,
    startedAt: run.record.startedAt,
    endedAt: run.record.endedAt,
  };
}

/** confirm: after the checksum, before anything live changes; a "no" removes staging and changes nothing. */
async function confirmOrCancel(run: RestoreRun, plan: RestorePlan): Promise<void> {
  const { options } = run;
  if (!options.confirm || (await options.confirm(plan))) return;
  await options.fs.rm(run.stagedRoot, { recursive: true, force: true });
  run.record.outcome = "refused";
  run.record.error = {
    code: "PAAS_BACKUP_NOT_CONFIRMED",
    message: "the operator did not confirm the restore",
  };
  throw new UsageError(
    "PAAS_BACKUP_NOT_CONFIRMED",
    `restore of ${run.context} not confirmed; nothing was changed`,
    {
      remediation: "Type the context name exactly when asked, or pass --yes in scripts.",
      stage: "confirm",
    },
  );
}

/**
 * The live event lines into the staged logs (or the incident's files), under the journal. After
 * a prompt the live logs are read again: si may have written while the operator read the plan.
 * Without one the plan was read a moment ago, and hashing every live log a second time was a
 * tenth of a restore; lines written since are caught up after the swap as ever.
 */
async function carryEventLines(
  run: RestoreRun,
  staged: Staged,
  plannedLines: PlannedEventLines,
): Promise<PlannedEventLines> {
  const { fs, stateRoot, backupRoot } = run.options;
  const lines = run.options.confirm ? await planLiveEventLines(run, staged, true) : plannedLines;
  if (lines.length === 0) return lines;
  await writeJournal(fs, stateRoot, { ...stagingJournal(run), phase: "stage:event-lines" });
  run.record.eventLines = await applyEventLines({
    fs,
    planned: lines,
    stagedContext: run.stagedContext,
    backupRoot,
    context: run.context,
    stem: run.stem,
  });
  return lines;
}

/**
 * Every staged file and folder reaches the disk before the swap makes it live. A kill is safe
 * without this (the page cache survives it), but after a power loss a context swapped in from
 * unflushed staging could come back with empty or short files while the journal says the restore
 * finished. A failure here is before the pivot: the live context is untouched.
 */
async function flushStaged(run: RestoreRun): Promise<void> {
  const { fs } = run.options;
  const walk = async (dir: string): Promise<void> => {
    for (const entry of await fs.readdir(dir)) {
      const path = join(dir, entry.name);
      if (entry.kind === "directory") await walk(path);
      else if (entry.kind === "file") await fs.sync(path);
    }
    await fs.sync(dir);
  };
  await walk(run.stagedContext);
}

/** Lines si appended between the read and the swap went aside with the old logs: append them to the new ones. */
async function catchUpAfterSwap(run: RestoreRun, lines: PlannedEventLines): Promise<void> {
  if (!run.record.movedAsideTo || !lines.some((p) => p.record.action === "append")) return;
  run.record.eventLines!.push(
    ...(await catchUpEventLines({ fs: run.options.fs, planned: lines, aside: run.aside, live: run.live })),
  );
}

/** The result; when validation failed, the error that carries it (the context stays blocked, exit 5). */
function restoredOrBlocked(
  run: RestoreRun,
  plan: RestorePlan,
  staged: Staged,
  chosen: ChosenChain,
  v: Awaited<ReturnType<typeof validateRestore>>,
  incidentFile: string,
): RestoreResult {
  const result: RestoreResult = {
    ...plan,
    ok: v.ok,
    outcome: run.record.outcome,
    dryRun: false,
    contextDir: run.live,
    movedAsideTo: run.record.movedAsideTo,
    doctor: v.doctor,
    externalDoctor: v.external,
    vault: v.vault,
    notRestored: staged.notRestored,
    blockFile: v.blockFile,
    incidentFile,
    startedAt: run.record.startedAt,
    endedAt: run.record.endedAt,
  };
  if (v.ok) return result;
  const { context } = run;
  const failing = v.doctor.checks
    .filter((c) => !c.ok)
    .map((c) => c.name)
    .concat(v.external && !v.external.ok ? ["external_doctor"] : []);
  throw new ValidationError(
    "PAAS_BACKUP_VALIDATION_FAILED",
    `restored ${context} from ${chosen.snapshot.id}, but post-restore validation failed (${failing.join(", ")}); the context is blocked (${v.blockFile})`,
    {
      path: run.live,
      remediation: `Resolve the failing checks (paas-backup doctor --context ${context}), then paas-backup unblock --context ${context} --ticket ${run.options.ticket}; or paas-backup rollback to return to the previous contents.`,
      stage: "validate",
      data: { result },
    },
  );
}

/**
 * A failure anywhere: staging or a swap that stopped part way is undone (before the pivot) or
 * completed (after) now if it can be, else by the next command; after the swap the context stays
 * blocked whatever failed; the incident record names the error. Returns the error to throw.
 */
async function failRestore(run: RestoreRun, thrown: unknown, swappedBefore: boolean): Promise<unknown> {
  const { fs, stateRoot } = run.options;
  const { context, purpose } = run;
  // an errno error (EXDEV, EBUSY, a full or read-only disk) is the machine's: named, exit 10
  const caught = thrown instanceof PaasBackupError ? thrown : (environmentErrorOf(thrown) ?? thrown);
  let err = caught;
  let swapped = swappedBefore;
  if (!swapped) {
    await undoUnfinished(run).catch(() => undefined);
    swapped = run.swap.done > run.swap.pivot;
  }
  if (swapped && !(err instanceof ValidationError && err.code === "PAAS_BACKUP_VALIDATION_FAILED")) {
    // After the swap the staged block marker is live: the context stays blocked, whatever failed.
    run.record.outcome = purpose === "drill" ? "drill-failed" : "blocked";
    err = new ValidationError(
      "PAAS_BACKUP_RESTORE_UNFINISHED",
      `restore of ${context} failed after the swap (${(caught as Error).message}); the context is blocked`,
      {
        path: run.live,
        remediation: `Return to the previous contents with paas-backup rollback --context ${context} --ticket ${run.options.ticket}, or fix the cause and run doctor, then unblock.`,
        stage: "validate",
        cause: caught,
      },
    );
  }
  if (run.record.endedAt === "") {
    run.record.error =
      err instanceof PaasBackupError
        ? { code: err.code, message: err.message }
        : { code: "PAAS_BACKUP_UNEXPECTED", message: (err as Error).message };
    const incidentFile = await finishRecord(run).catch(() => null);
    if (err instanceof PaasBackupError && incidentFile)
      (err.data as Record<string, unknown>).incidentFile = incidentFile;
    // Only a swap that made every rename leaves the context new (blocked): a journal of one that
    // stopped part way is what lets the next command, or rollback, finish or undo it.
    if (swapped && incidentFile && run.swap.done >= run.swap.total)
      await removeJournal(fs, stateRoot, context).catch(() => undefined);
  }
  return err;
}
