import type { FileSystem } from "../fs/types.js";
import type { SignaturePolicy } from "../signing/verify.js";
import { listContexts } from "../context/contexts.js";
import { inContext, type ContextCallOptions, type ContextSession } from "../context/session.js";
import { randomUUID } from "node:crypto";
import { IntegrityError, PaasBackupError, UsageError } from "../errors.js";
import { join } from "../util/paths.js";
import type { ArtifactDecryptor } from "../archive/encryption.js";
import { validateContextName } from "../policy/context.js";
import { backupRootStorage, openRepository } from "../repository/repository.js";
import type { ObjectStorage } from "../repository/storage.js";
import { checkChain } from "../restore/verify.js";
import { restoreSnapshot, type ExternalDoctorResult, type RestoreResult } from "../restore/restore.js";
import { listRecordFiles, type IncidentRecord } from "../records/incident.js";

/**
 * Policy §7.4: a restore drill restores the newest verified snapshot into a scratch state root
 * (never the live one), runs every validation, records the result beside the incident records
 * (<backup_root>/<context>/drills/), and removes the scratch root.
 */
export interface DrillResult {
  context: string;
  snapshot: string;
  ok: boolean;
  recordFile: string;
  restore: RestoreResult | null;
  /** why the drill could not run or failed, with the exit code the same failure has in restore */
  error: {
    code: string;
    message: string;
    exitCode: number;
    stage: string;
    remediation: string;
    target: string;
  } | null;
}

export interface DrillOptions extends ContextCallOptions {
  fs: FileSystem;
  backupRoot: string;
  context: string;
  /**
   * Where the drill restores: a folder that does not exist yet, outside the live state root; or
   * `scratchParent` (e.g. the OS temp folder), under which a fresh private folder is made. Either
   * is removed when the drill ends.
   */
  scratchRoot?: string;
  scratchParent?: string;
  clock: () => Date;
  operator: string;
  decryptor?: ArtifactDecryptor;
  externalDoctor?: (stateRoot: string) => Promise<ExternalDoctorResult>;
  /** the allowed signers: a drill refuses what a restore would (issue 24 §2) */
  signatures?: SignaturePolicy;
  /**
   * Where the snapshots are read from (any driver, e.g. the committed view of an s3:// root);
   * default the backup root folder, which also receives the drill record either way.
   */
  repository?: ObjectStorage;
}

/** A drill, in the context's session: locked from choosing the snapshot to writing its record. */
export async function runDrill(options: DrillOptions): Promise<DrillResult> {
  return inContext({ ...options, command: "drill" }, (session) => drillInSession(options, session));
}

async function drillInSession(options: DrillOptions, session: ContextSession): Promise<DrillResult> {
  const { fs } = options;
  const context = validateContextName(options.context);
  const all = await openRepository(options.repository ?? backupRootStorage(fs, options.backupRoot)).snapshots(
    context,
  );
  const where = options.repository?.url ?? options.backupRoot;
  const cache = new Map();
  let chosen: string | null = null;
  for (const s of [...all].reverse()) {
    if (!(await checkChain(s, all, cache)).problem) {
      chosen = s.id;
      break;
    }
  }
  if (!chosen) {
    throw new IntegrityError(
      "PAAS_BACKUP_NOTHING_TO_DRILL",
      `no snapshot of ${context} in ${where} verifies`,
      {
        path: where,
        remediation:
          "Take a snapshot (paas-backup snapshot) and check it (paas-backup verify --all); a drill needs one that verifies.",
        stage: "select",
      },
    );
  }
  const stamp = options.clock().toISOString().slice(0, 10);
  const scratchDir =
    options.scratchRoot ??
    (options.scratchParent
      ? join(options.scratchParent, `paas-backup-drill-${randomUUID().slice(0, 12)}`)
      : null);
  if (!scratchDir)
    throw new UsageError("PAAS_BACKUP_INVALID_ARGUMENT", "runDrill needs scratchRoot or scratchParent", {
      remediation: "Pass scratchParent: the OS temp folder, for example.",
      stage: "arguments",
    });
  const scratchRoot = options.scratchRoot ?? join(scratchDir, "state");
  await fs.mkdir(scratchRoot, { recursive: true, mode: 0o700 });
  try {
    const restore = await restoreSnapshot({
      fs,
      stateRoot: scratchRoot,
      backupRoot: options.backupRoot,
      ...(options.repository ? { repository: options.repository } : {}),
      context,
      snapshot: chosen,
      ticket: `DRILL-${stamp}`,
      operator: options.operator,
      clock: options.clock,
      purpose: "drill",
      // the drill's session: restoreSnapshot recovers the scratch root under the lock held
      session,
      ...(options.decryptor ? { decryptor: options.decryptor } : {}),
      ...(options.externalDoctor ? { externalDoctor: options.externalDoctor } : {}),
      ...(options.signatures ? { signatures: options.signatures } : {}),
      ...(options.signer ? { signer: options.signer } : {}),
    });
    return {
      context,
      snapshot: chosen,
      ok: restore.ok,
      recordFile: restore.incidentFile,
      restore,
      error: null,
    };
  } catch (err) {
    if (!(err instanceof PaasBackupError)) throw err;
    const result = (err.data.result as RestoreResult | undefined) ?? null;
    return {
      context,
      snapshot: chosen,
      ok: false,
      recordFile: (err.data.incidentFile as string | undefined) ?? result?.incidentFile ?? "",
      restore: result,
      error: {
        code: err.code,
        message: err.message,
        exitCode: err.exitCode,
        stage: err.stage,
        remediation: err.remediation,
        target: err.path ?? context,
      },
    };
  } finally {
    await fs.rm(scratchDir, { recursive: true, force: true });
  }
}

export interface DrillStatus {
  context: string;
  mandatory: boolean;
  lastDrill: { at: string; ok: boolean; snapshot: string | null; record: string | null } | null;
  lastPassed: string | null;
  /** the end of the quarter after the last passing drill's quarter; now when there never was one */
  nextDue: string;
  overdue: boolean;
}

/** Start of the calendar quarter (UTC) that holds `d`. */
export function quarterStart(d: Date): Date {
  return new Date(Date.UTC(d.getUTCFullYear(), Math.floor(d.getUTCMonth() / 3) * 3, 1));
}

/** A drill in quarter Q is due again by the end of quarter Q+1. */
export function nextDrillDue(lastPassed: Date): Date {
  const q = quarterStart(lastPassed);
  return new Date(Date.UTC(q.getUTCFullYear(), q.getUTCMonth() + 6, 1) - 1);
}

/**
 * Where drill status reads a context's drill records: the backup root's `<context>/drills/` by
 * default, or another home of them (an s3:// root keeps them in its bucket, `records/<context>/drills/`).
 */
export type DrillRecordSource = (context: string) => Promise<{ file: string; record: IncidentRecord }[]>;

/** `contexts` empty or absent: every context with a folder in the backup root (or `allContexts`). */
export async function drillStatus(options: {
  fs: FileSystem;
  backupRoot: string;
  contexts?: readonly string[];
  mandatory: readonly string[];
  now: Date;
  /** the drill records of a context, when they do not live in the backup root folder */
  records?: DrillRecordSource;
  /** every context, when none is named and the backup root folder does not list them */
  allContexts?: () => Promise<string[]>;
}): Promise<DrillStatus[]> {
  const out: DrillStatus[] = [];
  const asked = options.contexts?.length
    ? options.contexts
    : options.allContexts
      ? await options.allContexts()
      : await listContexts({ fs: options.fs, backupRoot: options.backupRoot });
  const names = [...new Set([...asked, ...options.mandatory])].sort();
  const readRecords: DrillRecordSource =
    options.records ?? ((context) => listRecordFiles(options.fs, options.backupRoot, context, "drills"));
  for (const context of names) {
    validateContextName(context);
    const files = (await readRecords(context)).filter((r) => r.record.kind === "drill");
    files.sort((a, b) => (a.record.startedAt < b.record.startedAt ? -1 : 1));
    const lastFile = files[files.length - 1];
    const last = lastFile?.record;
    const passed = files.map((f) => f.record).filter((r) => r.outcome === "drill-passed");
    const lastPassed = passed[passed.length - 1]?.startedAt ?? null;
    const due = lastPassed ? nextDrillDue(new Date(lastPassed)) : options.now;
    const mandatory = options.mandatory.includes(context);
    out.push({
      context,
      mandatory,
      lastDrill: last
        ? {
            at: last.startedAt,
            ok: last.outcome === "drill-passed",
            snapshot: last.snapshot?.id ?? null,
            record: lastFile!.file,
          }
        : null,
      lastPassed,
      nextDue: due.toISOString(),
      overdue: lastPassed === null || options.now.getTime() > due.getTime(),
    });
  }
  if (names.length === 0) {
    throw new UsageError("PAAS_BACKUP_NO_CONTEXTS", `no contexts to report in ${options.backupRoot}`, {
      path: options.backupRoot,
      remediation: "Name contexts with --context, or take snapshots first.",
      stage: "select",
    });
  }
  return out;
}
