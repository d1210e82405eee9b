import { randomUUID } from "node:crypto";
import type { FileSystem } from "../fs/types.js";
import { IntegrityError, isNotFound, PaasBackupError, UsageError, ValidationError } from "../errors.js";
import type { ArtifactDecryptor } from "../archive/encryption.js";
import { validateContextName } from "../policy/context.js";
import type { SecretAllowance } from "../policy/secrets.js";
import { findSnapshot, type SnapshotRef } from "../repository/repository.js";
import { contextDir, join } from "../util/paths.js";
import { hashFile } from "../util/hash.js";
import { writeFileAtomic, exists, readdirOrEmpty } from "../util/atomic.js";
import { runDoctor, type DoctorReport } from "../validate/doctor.js";
import { writeBlock, clearBlock } from "../governance/block.js";
import { writeIncident, type IncidentRecord } from "../governance/incident.js";
import { appendAuditEvent } from "../governance/audit.js";
import { checkChain, findFallback } from "./verify.js";
import { materializeChain } from "./materialize.js";
import { inspectVault, type TrustStore, type VaultReport } from "./vault.js";

export interface ExternalDoctorResult {
  command: string;
  ok: boolean;
  exitCode: number | null;
  detail: string;
}

export interface RestoreOptions {
  fs: FileSystem;
  stateRoot: string;
  backupRoot: string;
  context: string;
  /** an id or "latest" */
  snapshot: string;
  ticket: string;
  operator: string;
  clock: () => Date;
  decryptor?: ArtifactDecryptor;
  /** restore the newest older verified snapshot when the asked one fails its checksum */
  fallback?: boolean;
  dryRun?: boolean;
  secretAllow?: readonly SecretAllowance[];
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
}

export interface RestoreChanges {
  added: string[];
  changed: string[];
  removed: string[];
  unchanged: number;
}

export interface RestorePlan {
  context: string;
  snapshot: { id: string; kind: string; time: string; sha256: string };
  fallback: { used: boolean; from?: string; reason?: string };
  changes: RestoreChanges;
  /** the doctor over the staged state; computed for --dry-run and for the confirmation prompt */
  stagedDoctor: DoctorReport | null;
  /** what the snapshot recorded when taken, e.g. a state file that was not valid JSON (kept as is) */
  warnings: string[];
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

/** Where restore keeps its staging and moved-aside folders: under the state root, outside contexts/, so si never lists them. */
export function workDir(stateRoot: string): string {
  return join(stateRoot, ".paas-backup");
}

async function listTree(fs: FileSystem, root: string, rel = ""): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdirOrEmpty(fs, rel ? join(root, rel) : root)) {
    const path = rel ? `${rel}/${e.name}` : e.name;
    if (e.kind === "directory") out.push(...(await listTree(fs, root, path)));
    else out.push(path);
  }
  return out;
}

async function diffAgainstLive(fs: FileSystem, live: string, staged: { path: string; size: number; sha256: string }[]): Promise<RestoreChanges> {
  const changes: RestoreChanges = { added: [], changed: [], removed: [], unchanged: 0 };
  const stagedPaths = new Set(staged.map((f) => f.path));
  for (const f of staged) {
    try {
      const st = await fs.lstat(join(live, f.path));
      if (st.kind !== "file" || st.size !== f.size) changes.changed.push(f.path);
      else if ((await hashFile(fs, join(live, f.path))).sha256 === f.sha256) changes.unchanged++;
      else changes.changed.push(f.path);
    } catch (err) {
      if (!isNotFound(err)) throw err;
      changes.added.push(f.path);
    }
  }
  for (const path of await listTree(fs, live)) {
    if (path.startsWith("vault/") || stagedPaths.has(path)) continue;
    changes.removed.push(path);
  }
  return changes;
}

/**
 * Restore a snapshot into a context, as policy §6 asks: checksum confirmed first, the chain
 * replayed into a staging folder and checked file by file, then swapped in with renames. The live
 * contents are moved aside (never deleted) and its vault/ is carried over untouched. Post-restore
 * validation decides the outcome; a failure leaves the context blocked. An incident record is
 * written whatever happens.
 */
export async function restoreSnapshot(options: RestoreOptions): Promise<RestoreResult> {
  const { fs, clock, stateRoot } = options;
  const context = validateContextName(options.context);
  const purpose = options.purpose ?? "restore";
  if (!options.ticket.trim()) {
    throw new UsageError("PAAS_BACKUP_TICKET_REQUIRED", "a restore needs the incident ticket id (--ticket)", {
      remediation: "Pass --ticket <incident-id>; policy §6 requires a confirmed incident before any restore.",
      stage: "arguments",
    });
  }
  const startedAt = clock();
  const live = contextDir(stateRoot, context);
  const nonce = randomUUID().slice(0, 8);
  const stamp = startedAt.toISOString().replace(/[-:]/g, "").replace(/\.\d+Z$/, "Z");
  const aside = join(workDir(stateRoot), "moved-aside", `${context}.${stamp}.${nonce}`);

  const record: IncidentRecord = {
    schema: "paas-backup/incident@1",
    kind: purpose === "drill" ? "drill" : "restore",
    ticket: options.ticket,
    context,
    stateRoot,
    snapshot: null,
    requestedSnapshot: options.snapshot,
    fallback: { used: false },
    operator: options.operator,
    startedAt: startedAt.toISOString(),
    endedAt: "",
    dryRun: options.dryRun === true,
    movedAsideTo: null,
    vault: null,
    doctor: null,
    externalDoctor: null,
    outcome: "failed",
    error: null,
  };
  let stagingMade = false;
  // The staged context sits in a root of its own, so the doctor can read it by name as it will stand.
  const stagedRoot = join(workDir(stateRoot), "staging", `${context}.${stamp}.${nonce}`);
  const stagedContext = join(stagedRoot, "contexts", context);

  const finish = async (): Promise<string> => {
    record.endedAt = clock().toISOString();
    return writeIncident(fs, options.backupRoot, record, purpose === "drill" ? "drills" : "incidents");
  };

  try {
    const { snapshot: asked, all } = await findSnapshot(fs, options.backupRoot, context, options.snapshot);
    const cache = new Map();
    let chosen: SnapshotRef = asked;
    const first = await checkChain(asked, all, cache);
    let chain = first.chain;
    record.snapshot = { id: asked.id, sha256: first.self.actual, kind: asked.kind };
    if (first.problem) {
      const fallback = await findFallback(all, asked, cache);
      const why = first.self.state === "missing-checksum" ? "its checksum file is missing" : first.self.state === "malformed-checksum" ? `its checksum file ${asked.checksumPath} is malformed (empty or truncated: it names no sha256 for the artifact)` : first.self.state === "mismatch" ? "its checksum does not match" : first.problem;
      if (!options.fallback || !fallback) {
        const code = first.self.state === "missing-checksum" ? "PAAS_BACKUP_CHECKSUM_MISSING" : first.self.state === "malformed-checksum" ? "PAAS_BACKUP_CHECKSUM_MALFORMED" : first.self.state === "mismatch" ? "PAAS_BACKUP_CHECKSUM_MISMATCH" : "PAAS_BACKUP_CHAIN_BROKEN";
        record.outcome = "refused";
        throw new IntegrityError(code, `refusing to restore snapshot ${asked.id} of ${context}: ${why} (${asked.artifactPath})`, {
          path: asked.artifactPath,
          remediation: fallback
            ? `The newest older snapshot that verifies is ${fallback.id}: restore it with --snapshot ${fallback.id}, or add --fallback.`
            : "No older snapshot verifies either: fetch a copy from the offsite target (restore --from-offsite) and escalate.",
          stage: "checksum",
          data: { fallback: fallback?.id ?? null },
        });
      }
      chosen = fallback;
      chain = (await checkChain(fallback, all, cache)).chain;
      record.fallback = { used: true, from: asked.id, reason: why };
      record.snapshot = { id: fallback.id, sha256: cache.get(fallback.id)!.actual, kind: fallback.kind };
    }

    // Stage: replay the chain into a fresh folder, every entry checked before it is written.
    await fs.mkdir(join(workDir(stateRoot), "staging"), { recursive: true, mode: 0o700 });
    await fs.mkdir(stagedRoot, { mode: 0o700 });
    stagingMade = true;
    await fs.mkdir(join(stagedRoot, "contexts"), { mode: 0o700 });
    await fs.mkdir(stagedContext, { mode: 0o700 });
    const staged = await materializeChain({
      fs,
      chain,
      target: stagedContext,
      ...(options.maxExpansion ? { maxExpansion: options.maxExpansion } : {}),
      ...(options.decryptor ? { decryptor: options.decryptor } : {}),
      ...(options.onBytes ? { onBytes: options.onBytes } : {}),
    });
    const changes = await diffAgainstLive(fs, live, staged.files);

    // The staged state is what will be live, byte for byte: validate it here only when someone
    // will read the result before the swap; otherwise the post-restore doctor is the one pass.
    const stagedDoctor =
      options.dryRun || options.confirm
        ? await runDoctor({ fs, stateRoot: stagedRoot, context, ignoreBlock: true, ...(options.secretAllow ? { secretAllow: options.secretAllow } : {}), allowRepoState: options.allowRepoState ?? false })
        : null;
    const plan: RestorePlan = {
      context,
      snapshot: { id: chosen.id, kind: chosen.kind, time: chosen.time.toISOString(), sha256: record.snapshot!.sha256 ?? "" },
      fallback: record.fallback,
      changes,
      stagedDoctor,
      warnings: (chosen.manifest?.warnings ?? []).map((w) => `${w.path}: ${w.reason}`),
    };

    const cleanupStaged = async () => {
      await fs.rm(stagedRoot, { recursive: true, force: true });
    };

    if (options.dryRun) {
      await cleanupStaged();
      stagingMade = false;
      record.outcome = "dry-run";
      record.doctor = stagedDoctor ? { ok: stagedDoctor.ok, checks: stagedDoctor.checks } : null;
      const incidentFile = await finish();
      return { ...plan, ok: true, outcome: "dry-run", dryRun: true, contextDir: live, movedAsideTo: null, doctor: stagedDoctor, externalDoctor: null, vault: null, notRestored: staged.notRestored, blockFile: null, incidentFile, startedAt: record.startedAt, endedAt: record.endedAt };
    }
    if (options.confirm && !(await options.confirm(plan))) {
      await cleanupStaged();
      stagingMade = false;
      record.outcome = "refused";
      record.error = { code: "PAAS_BACKUP_NOT_CONFIRMED", message: "the operator did not confirm the restore" };
      throw new UsageError("PAAS_BACKUP_NOT_CONFIRMED", `restore of ${context} not confirmed; nothing was changed`, {
        remediation: "Type the context name exactly when asked, or pass --yes in scripts.",
        stage: "confirm",
      });
    }

    // Swap: live -> aside, staged -> live, aside/vault -> live/vault. Each step is one rename on
    // one filesystem; a journal names the folders so `rollback` can finish or undo any crash.
    await fs.mkdir(join(workDir(stateRoot), "moved-aside"), { recursive: true, mode: 0o700 });
    await fs.mkdir(join(stateRoot, "contexts"), { recursive: true, mode: 0o700 });
    const liveExisted = await exists(fs, live);
    const journal = join(workDir(stateRoot), `${context}.last-restore.json`);
    await writeFileAtomic(fs, journal, `${JSON.stringify({ context, ticket: options.ticket, aside: liveExisted ? aside : null, staged: stagedContext, startedAt: record.startedAt }, null, 2)}\n`);
    if (liveExisted) {
      await fs.rename(live, aside);
      record.movedAsideTo = aside;
    }
    await fs.rename(stagedContext, live);
    if (liveExisted && (await exists(fs, join(aside, "vault")))) await fs.rename(join(aside, "vault"), join(live, "vault"));
    await fs.rm(stagedRoot, { recursive: true, force: true });
    stagingMade = false;
    // Contents now in place; clear any marker the snapshot itself carried (it was never backed up, but be sure).
    await clearBlock(fs, stateRoot, context);

    let restoredConfig: Record<string, unknown> | null = null;
    try {
      restoredConfig = JSON.parse(Buffer.from(await fs.readFile(join(live, "config.json"))).toString("utf8")) as Record<string, unknown>;
    } catch {
      restoredConfig = null;
    }
    const vault = await inspectVault(fs, live, restoredConfig, options.trustStore ?? null);
    record.vault = vault;

    const doctor = await runDoctor({ fs, stateRoot, context, ignoreBlock: true, ...(options.secretAllow ? { secretAllow: options.secretAllow } : {}), allowRepoState: options.allowRepoState ?? false });
    record.doctor = { ok: doctor.ok, checks: doctor.checks };
    const external = options.externalDoctor ? await options.externalDoctor(stateRoot) : null;
    record.externalDoctor = external;
    const ok = doctor.ok && (external?.ok ?? true);
    let blockFile: string | null = null;
    if (!ok) {
      const failing = [...doctor.checks.filter((c) => !c.ok), ...(external && !external.ok ? [{ name: "external_doctor", ok: false, detail: external.detail }] : [])];
      blockFile = await writeBlock(fs, stateRoot, {
        context,
        ticket: options.ticket,
        blockedAt: clock().toISOString(),
        reason: `post-restore validation failed: ${failing.map((c) => c.name).join(", ")}`,
        snapshot: { id: chosen.id, sha256: record.snapshot!.sha256 ?? "" },
        failingChecks: failing,
      });
    }
    record.outcome = ok ? (purpose === "drill" ? "drill-passed" : "restored") : purpose === "drill" ? "drill-failed" : "blocked";
    if (purpose === "restore") {
      await appendAuditEvent(fs, stateRoot, context, {
        timestamp: clock(),
        command: "backup restore",
        status: ok ? "succeeded" : "failed",
        fields: { snapshot_id: chosen.id, snapshot_sha256: record.snapshot!.sha256 ?? "", ticket: options.ticket, operator: options.operator, fallback: String(record.fallback.used) },
        ...(ok ? {} : { error: { code: "PAAS_BACKUP_VALIDATION_FAILED", message: "post-restore validation failed", remediation: "Resolve the failing doctor checks, then run paas-backup unblock.", stage: "validate" } }),
      });
    }
    const incidentFile = await finish();
    const result: RestoreResult = {
      ...plan,
      ok,
      outcome: record.outcome,
      dryRun: false,
      contextDir: live,
      movedAsideTo: record.movedAsideTo,
      doctor,
      externalDoctor: external,
      vault,
      notRestored: staged.notRestored,
      blockFile,
      incidentFile,
      startedAt: record.startedAt,
      endedAt: record.endedAt,
    };
    if (!ok) {
      throw new ValidationError("PAAS_BACKUP_VALIDATION_FAILED", `restored ${context} from ${chosen.id}, but post-restore validation failed (${doctor.checks.filter((c) => !c.ok).map((c) => c.name).concat(external && !external.ok ? ["external_doctor"] : []).join(", ")}); the context is blocked (${blockFile})`, {
        path: live,
        remediation: `Resolve the failing checks (paas-backup doctor --context ${context}), then paas-backup unblock --context ${context} --ticket ${options.ticket}; or paas-backup rollback to return to the previous contents.`,
        stage: "validate",
        data: { result },
      });
    }
    return result;
  } catch (err) {
    if (stagingMade) await fs.rm(stagedRoot, { recursive: true, force: true }).catch(() => undefined);
    if (record.endedAt === "") {
      if (err instanceof PaasBackupError) record.error = { code: err.code, message: err.message };
      else record.error = { code: "PAAS_BACKUP_UNEXPECTED", message: (err as Error).message };
      const incidentFile = await finish().catch(() => null);
      if (err instanceof PaasBackupError && incidentFile) (err.data as Record<string, unknown>).incidentFile = incidentFile;
    }
    throw err;
  }
}
