import type { FileSystem } from "../fs/types.js";
import { ExitCode, PaasBackupError, UsageError, type ExitCodeValue } from "../errors.js";
import type { ArtifactEncryptor } from "../archive/encryption.js";
import type { OptionalFolder } from "../policy/selection.js";
import type { SecretAllowance } from "../policy/secrets.js";
import { isContextFolderName, validateContextName } from "../policy/context.js";
import { assertSafeLocations } from "../policy/work-tree.js";
import { listSnapshots } from "../repository/repository.js";
import { withContextLock, type LockOwner } from "../repository/lock.js";
import type { RetentionPolicy } from "../retention/plan.js";
import { pruneSnapshots } from "../retention/prune.js";
import { join } from "../util/paths.js";
import { createSnapshot, type SnapshotResult } from "./create.js";
import { contextsWithJournal, recoverContext, type RecoveryResult } from "../restore/journal.js";
import { decideTick, type TickAction } from "./schedule.js";

/** What one context's tick did; a failure is an outcome too, so one context never stops the others. */
export interface TickOutcome {
  context: string;
  ok: boolean;
  action: TickAction;
  reason: string;
  snapshot: Pick<SnapshotResult, "id" | "kind" | "artifact" | "sha256" | "bytes" | "storedBytes"> | null;
  pruned: string[];
  offsite: unknown;
  error: { code: string; message: string; remediation: string } | null;
}

export interface TickOptions {
  fs: FileSystem;
  stateRoot: string;
  backupRoot: string;
  /** the contexts to tick; ignored with allContexts */
  contexts?: readonly string[];
  /**
   * every context of the state root: swaps a crash interrupted are finished or undone first (their
   * contexts may be missing from contexts/ until then), and any failure makes the run partial (exit 7)
   */
  allContexts?: boolean;
  clock: () => Date;
  owner: LockOwner;
  lockTimeoutMs: number;
  include?: readonly OptionalFolder[];
  encryptor?: ArtifactEncryptor;
  insecurePlaintext?: boolean;
  secretAllow?: readonly SecretAllowance[];
  allowRepoState?: boolean;
  retention?: Partial<RetentionPolicy>;
  /** after a context's snapshot and prune, outside its lock: e.g. copy its fulls offsite */
  afterEach?: (context: string) => Promise<unknown>;
}

export interface TickResult {
  outcomes: TickOutcome[];
  /** interrupted swaps this run finished or undone (allContexts) */
  recovered: RecoveryResult[];
  /** 0 when every context succeeded; one named context: its failure's own code; --all-contexts: partial (7) */
  exitCode: ExitCodeValue;
}

/** The contexts of a state root: its folders under contexts/ with valid names. */
export async function listStateContexts(fs: FileSystem, stateRoot: string): Promise<string[]> {
  const dir = join(stateRoot, "contexts");
  try {
    return (await fs.readdir(dir))
      .filter((e) => e.kind === "directory" && isContextFolderName(e.name))
      .map((e) => e.name)
      .sort();
  } catch (err) {
    throw new UsageError("PAAS_BACKUP_NO_CONTEXTS", `no contexts folder at ${dir}`, {
      path: dir,
      remediation: "Check --state-root or SI_PAAS_STATE_ROOT.",
      stage: "plan",
      cause: err,
    });
  }
}

async function tickOne(options: TickOptions, context: string): Promise<{ outcome: TickOutcome; exitCode: ExitCodeValue }> {
  const outcome: TickOutcome = { context, ok: true, action: "none", reason: "", snapshot: null, pruned: [], offsite: null, error: null };
  const { fs, clock } = options;
  try {
    await withContextLock({ fs, backupRoot: options.backupRoot, context, owner: options.owner, clock, timeoutMs: options.lockTimeoutMs }, async () => {
      const decision = decideTick(await listSnapshots(fs, options.backupRoot, context), clock());
      outcome.action = decision.action;
      outcome.reason = decision.reason;
      if (decision.action === "none") return;
      const r = await createSnapshot({
        fs,
        stateRoot: options.stateRoot,
        backupRoot: options.backupRoot,
        context,
        clock,
        kind: decision.action,
        ...(options.include ? { include: options.include } : {}),
        ...(options.encryptor ? { encryptor: options.encryptor } : {}),
        insecurePlaintext: options.insecurePlaintext === true,
        ...(options.secretAllow ? { secretAllow: options.secretAllow } : {}),
        allowRepoState: options.allowRepoState === true,
      });
      outcome.snapshot = { id: r.id, kind: r.kind, artifact: r.artifact, sha256: r.sha256, bytes: r.bytes, storedBytes: r.storedBytes };
      if (r.promotedToFull) {
        // an incremental was due, but the chain it would extend no longer verifies (or cannot be extended)
        outcome.action = "full";
        outcome.reason = `${decision.reason}; took a full instead of an incremental: ${r.promotedToFull}`;
      }
      const pruned = await pruneSnapshots({ fs, backupRoot: options.backupRoot, context, ...(options.retention ? { policy: options.retention } : {}), clock });
      outcome.pruned = pruned.removed;
    });
    if (options.afterEach) outcome.offsite = await options.afterEach(context);
    return { outcome, exitCode: ExitCode.ok };
  } catch (err) {
    return failedOutcome(err, outcome);
  }
}

function failedOutcome(err: unknown, outcome: TickOutcome): { outcome: TickOutcome; exitCode: ExitCodeValue } {
  outcome.ok = false;
  outcome.error =
    err instanceof PaasBackupError
      ? { code: err.code, message: err.message, remediation: err.remediation }
      : { code: "PAAS_BACKUP_UNEXPECTED", message: (err as Error).message, remediation: "Rerun with the same arguments and report the message." };
  return { outcome, exitCode: err instanceof PaasBackupError ? err.exitCode : ExitCode.unexpected };
}

/**
 * tick, the one entry point for cron (policy §4): per context, under its lock, a daily full or
 * an hourly incremental (decideTick), then prune; idempotent within the hour. The locations are
 * checked once, before any lock file is written into the backup root.
 */
export async function runTick(options: TickOptions): Promise<TickResult> {
  await assertSafeLocations({ fs: options.fs, backupRoot: options.backupRoot, stateRoot: options.stateRoot, allowRepoState: options.allowRepoState === true });
  const { fs, stateRoot, clock } = options;
  const runs: { outcome: TickOutcome; exitCode: ExitCodeValue }[] = [];
  const recovered: RecoveryResult[] = [];
  let contexts = (options.contexts ?? []).map(validateContextName);
  if (options.allContexts) {
    for (const context of await contextsWithJournal(fs, stateRoot)) {
      try {
        const r = await withContextLock({ fs, backupRoot: options.backupRoot, context, owner: options.owner, clock, timeoutMs: options.lockTimeoutMs }, () =>
          recoverContext({ fs, stateRoot, backupRoot: options.backupRoot, context, clock }),
        );
        if (r) recovered.push(r);
      } catch (err) {
        runs.push(failedOutcome(err, { context, ok: false, action: "none", reason: "", snapshot: null, pruned: [], offsite: null, error: null }));
      }
    }
    contexts = (await listStateContexts(fs, stateRoot)).filter((c) => !runs.some((r) => r.outcome.context === c));
  }
  for (const context of contexts) runs.push(await tickOne(options, context));
  const failed = runs.filter((r) => !r.outcome.ok);
  const exitCode = failed.length === 0 ? ExitCode.ok : !options.allContexts && runs.length === 1 ? runs[0]!.exitCode : ExitCode.partial;
  return { outcomes: runs.map((r) => r.outcome), recovered, exitCode };
}
