import type { FileSystem } from "../fs/types.js";
import type { SigningKey } from "../signing/sshsig.js";
import {
  ExitCode,
  PaasBackupError,
  environmentErrorOf,
  namingEnvironmentErrors,
  type ExitCodeValue,
} from "../errors.js";
import type { ArtifactEncryptor } from "../archive/encryption.js";
import type { OptionalFolder } from "../policy/selection.js";
import type { SecretAllowance } from "../policy/secrets.js";
import { validateContextName } from "../policy/context.js";
import { assertSafeLocations } from "../policy/work-tree.js";
import { backupRootStorage, openRepository } from "../repository/repository.js";
import type { ObjectStorage } from "../repository/storage.js";
import type { LockOptions, LockOwner } from "../context/lock.js";
import { withContext, type ContextSession } from "../context/session.js";
import { listContexts } from "../context/contexts.js";
import type { RetentionPolicy } from "../retention/plan.js";
import { pruneSnapshots } from "../retention/prune.js";
import { contextDir, join } from "../util/paths.js";
import { requireContextDir } from "./plan.js";
import {
  createSnapshot,
  type SecretAcknowledgement,
  type SnapshotRedaction,
  type SnapshotResult,
} from "./create.js";
import { recordTickOutcome } from "../governance/status.js";
import { contextsWithJournal, type RecoveryResult } from "../context/journal.js";
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
  /** values the snapshot holds as <redacted> (file, line, rule); any not acknowledged makes the tick exit 9 */
  redactions: SnapshotRedaction[];
  /**
   * --all-contexts: the backup root holds this context but the state root has no folder for it
   * (lost or retired). Nothing is snapshotted; afterEach still runs, so its copies offsite age out
   * by each target's retention like every context's (issue 20 §1 invariant 4).
   */
  vanished: boolean;
}

/**
 * A repository several hosts share (issue 22): the CLI's s3:// backup root. Each context's
 * snapshot is decided and taken inside `exclusive` (the context's lease), listed in and written to
 * `repository(context)` (the snapshots committed there), and committed through the lease; prune
 * is maintenance (its own lease: the CLI runs it after the contexts), so runTick prunes nothing; and the outcome goes
 * to `record` (the bucket) instead of the backup root, which is only this host's cache.
 */
export interface SharedTick {
  repository(context: string): Promise<ObjectStorage>;
  exclusive<T>(
    context: string,
    work: (commit: (snapshot: SnapshotResult) => Promise<void>) => Promise<T>,
  ): Promise<T>;
  record(outcome: TickOutcome, durationSeconds: number): Promise<void>;
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
  /** the lock holder to record; this process (nodeLockOwner) by default */
  owner?: LockOwner;
  lockTimeoutMs: number;
  /** a function is called only when a context's snapshot is due, so its failure is that context's outcome */
  include?: readonly OptionalFolder[] | (() => readonly OptionalFolder[]);
  /** a function is called per context before its lock, so its failure is that context's outcome */
  encryptor?: ArtifactEncryptor | (() => Promise<ArtifactEncryptor | undefined>);
  /** this host's signing key (or a function resolving it per context, so a bad key is that context's outcome) */
  signer?: SigningKey | (() => Promise<SigningKey | undefined>);
  insecurePlaintext?: boolean;
  secretAllow?: readonly SecretAllowance[];
  secretAcknowledged?: readonly SecretAcknowledgement[];
  allowRepoState?: boolean;
  /** see CreateSnapshotOptions.memberCache */
  memberCache?: boolean;
  /** see CreateSnapshotOptions.chainCache */
  chainCache?: ObjectStorage;
  retention?: Partial<RetentionPolicy>;
  /** snapshots with any of these tags are kept beyond the retention slots */
  keepTags?: readonly string[];
  /** a repository several hosts share; see SharedTick */
  shared?: SharedTick;
  /**
   * after a context's snapshot and prune, outside its lock: e.g. copy its fulls offsite and apply
   * the targets' retention. With allContexts it also runs for each context the backup root holds
   * whose folder is gone from the state root (`vanished`), and for one whose folder cannot be
   * backed up (a symbolic link): what is offsite of it ages out by the same rule.
   */
  afterEach?: (context: string, how: { vanished: boolean }) => Promise<unknown>;
  /** per context: told while its lock is held by someone else (e.g. to say who holds it) */
  onLockWait?: (context: string) => LockOptions["onWait"];
  /** an interrupted swap this run finished or undid (allContexts), as it happens */
  onRecovered?: (recovery: RecoveryResult) => void;
  /** something went wrong that does not fail the tick (its status record could not be written) */
  onWarning?: (message: string) => void;
}

export interface TickResult {
  outcomes: TickOutcome[];
  /** interrupted swaps this run finished or undone (allContexts) */
  recovered: RecoveryResult[];
  /** the contexts ticked (allContexts: the state root's, less those whose recovery failed) */
  contexts: string[];
  /** allContexts: the backup root's contexts with no folder in the state root (each has a `vanished` outcome) */
  vanished: string[];
  /** 0 when every context succeeded; one named context: its failure's own code; --all-contexts: partial (7) */
  exitCode: ExitCodeValue;
}

function emptyOutcome(context: string): TickOutcome {
  return {
    context,
    ok: true,
    action: "none",
    reason: "",
    snapshot: null,
    pruned: [],
    offsite: null,
    error: null,
    redactions: [],
    vanished: false,
  };
}

/**
 * One context's tick. Steps: resolve the keys → in a context session: the folder must be there →
 * a snapshot if one is due (in the fleet's exclusive slot on a shared root) → prune (a local root)
 * → the offsite step → remember the outcome. A failure is the tick's outcome, not a throw.
 */
async function tickOne(
  options: TickOptions,
  context: string,
): Promise<{ outcome: TickOutcome; exitCode: ExitCodeValue }> {
  const outcome = emptyOutcome(context);
  const { fs, clock } = options;
  let durationSeconds = 0;
  try {
    const encryptor = typeof options.encryptor === "function" ? await options.encryptor() : options.encryptor;
    const signer = typeof options.signer === "function" ? await options.signer() : options.signer;
    const onWait = options.onLockWait?.(context);
    await withContext(
      {
        fs,
        backupRoot: options.backupRoot,
        stateRoot: options.stateRoot,
        context,
        owner: options.owner,
        command: "tick",
        clock,
        lockTimeoutMs: options.lockTimeoutMs,
        allowRepoState: options.allowRepoState === true,
        ...(onWait ? { onLockWait: onWait } : {}),
        ...(options.onRecovered ? { onRecovered: options.onRecovered } : {}),
      },
      async (session) => {
        // The session recovered a swap a crash interrupted (it may have had the folder aside); now a
        // context folder that is gone or is a link fails its tick, whether or not a snapshot is due.
        await requireContextDir(fs, contextDir(options.stateRoot, context), context);
        const due: DueSnapshot = { options, context, session, outcome, encryptor, signer };
        const shared = options.shared;
        if (shared) {
          await shared.exclusive(context, async (commit) => {
            durationSeconds = await snapshotIfDue(due, await shared.repository(context), commit);
          });
          return;
        }
        durationSeconds = await snapshotIfDue(due, undefined, null);
        if (outcome.action === "none") return;
        outcome.pruned = await pruneAfterTick(options, context, session);
      },
    );
    if (options.afterEach) outcome.offsite = await options.afterEach(context, { vanished: false });
    await remember(options, outcome, durationSeconds);
    return { outcome, exitCode: ExitCode.ok };
  } catch (err) {
    const failed = failedOutcome(err, outcome, join(options.backupRoot, context));
    await offsiteDespiteLink(options, context, outcome, err);
    await remember(options, outcome, durationSeconds);
    return failed;
  }
}

/** What a tick's snapshot is taken with, inside its session. */
interface DueSnapshot {
  options: TickOptions;
  context: string;
  session: ContextSession;
  /** filled in: the decision, the snapshot taken, its redactions */
  outcome: TickOutcome;
  encryptor: ArtifactEncryptor | undefined;
  signer: SigningKey | undefined;
}

/**
 * The schedule decides whether a full, an incremental or nothing is due; a due snapshot is taken
 * (and committed to a shared root by `commit`). Returns the snapshot's duration in seconds (0 when
 * none was due).
 */
async function snapshotIfDue(
  due: DueSnapshot,
  repository: ObjectStorage | undefined,
  commit: ((snapshot: SnapshotResult) => Promise<void>) | null,
): Promise<number> {
  const { options, context, session, outcome, encryptor, signer } = due;
  const { fs, clock } = options;
  const decision = decideTick(
    await openRepository(repository ?? backupRootStorage(fs, options.backupRoot)).snapshots(context),
    clock(),
  );
  outcome.action = decision.action;
  outcome.reason = decision.reason;
  if (decision.action === "none") return 0;
  const started = clock().getTime();
  const include = typeof options.include === "function" ? options.include() : options.include;
  const r = await createSnapshot({
    session,
    fs,
    stateRoot: options.stateRoot,
    backupRoot: options.backupRoot,
    ...(repository ? { repository } : {}),
    ...(options.chainCache ? { chainCache: options.chainCache } : {}),
    context,
    clock,
    kind: decision.action,
    ...(include ? { include } : {}),
    ...(encryptor ? { encryptor } : {}),
    ...(signer ? { signer } : {}),
    insecurePlaintext: options.insecurePlaintext === true,
    ...(options.secretAllow ? { secretAllow: options.secretAllow } : {}),
    ...(options.secretAcknowledged ? { secretAcknowledged: options.secretAcknowledged } : {}),
    allowRepoState: options.allowRepoState === true,
    memberCache: options.memberCache === true,
  });
  if (commit) await commit(r);
  const durationSeconds = (clock().getTime() - started) / 1000;
  outcome.snapshot = {
    id: r.id,
    kind: r.kind,
    artifact: r.artifact,
    sha256: r.sha256,
    bytes: r.bytes,
    storedBytes: r.storedBytes,
  };
  outcome.redactions = r.redactions;
  if (r.promotedToFull) {
    // an incremental was due, but the chain it would extend no longer verifies (or cannot be extended)
    outcome.action = "full";
    outcome.reason = `${decision.reason}; took a full instead of an incremental: ${r.promotedToFull}`;
  }
  return durationSeconds;
}

/** A local root's retention, once a snapshot was taken (a shared root prunes in the fleet's maintenance). */
async function pruneAfterTick(
  options: TickOptions,
  context: string,
  session: ContextSession,
): Promise<string[]> {
  const pruned = await pruneSnapshots({
    session,
    fs: options.fs,
    backupRoot: options.backupRoot,
    context,
    ...(options.retention ? { policy: options.retention } : {}),
    ...(options.keepTags?.length ? { keepTags: options.keepTags } : {}),
    clock: options.clock,
  });
  return pruned.removed;
}

/**
 * A context folder that is a link cannot be backed up, but its snapshots and copies are still
 * there: the copies offsite age out by the targets' retention as ever. The tick stays failed for it.
 */
async function offsiteDespiteLink(
  options: TickOptions,
  context: string,
  outcome: TickOutcome,
  err: unknown,
): Promise<void> {
  if (
    !options.afterEach ||
    options.shared ||
    !(err instanceof PaasBackupError) ||
    err.code !== "PAAS_BACKUP_CONTEXT_NOT_A_FOLDER"
  )
    return;
  try {
    outcome.offsite = await options.afterEach(context, { vanished: false });
  } catch (offsiteErr) {
    options.onWarning?.(`${context}: the offsite step failed too: ${(offsiteErr as Error).message}`);
  }
}

/**
 * A context the backup root holds whose folder is gone from the state root (lost, or retired):
 * nothing to snapshot, and its local snapshots are kept as they are; afterEach (the offsite step)
 * still runs, so its copies at each target age out by that target's retention like every other
 * context's, and none is deleted because the live folder is gone (issue 20 §1 invariant 4).
 */
async function tickVanished(
  options: TickOptions,
  context: string,
): Promise<{ outcome: TickOutcome; exitCode: ExitCodeValue }> {
  const outcome: TickOutcome = {
    ...emptyOutcome(context),
    vanished: true,
    reason: `its folder ${contextDir(options.stateRoot, context)} is gone from the state root: nothing to snapshot; its snapshots in ${join(options.backupRoot, context)} are kept${options.afterEach ? ", and its copies offsite age out by each target's retention" : ""}`,
  };
  try {
    if (options.afterEach) outcome.offsite = await options.afterEach(context, { vanished: true });
    await remember(options, outcome, 0);
    return { outcome, exitCode: ExitCode.ok };
  } catch (err) {
    const failed = failedOutcome(err, outcome, join(options.backupRoot, context));
    await remember(options, outcome, 0);
    return failed;
  }
}

/** Record the outcome in the backup root for `status` and the metrics; never fails the tick. */
async function remember(options: TickOptions, o: TickOutcome, durationSeconds: number): Promise<void> {
  try {
    if (options.shared) return await options.shared.record(o, durationSeconds);
    await recordTickOutcome(options.fs, options.backupRoot, {
      context: o.context,
      at: options.clock(),
      ok: o.ok,
      action: o.action,
      reason: o.reason,
      error: o.error ? { code: o.error.code, message: o.error.message } : null,
      snapshot: o.snapshot
        ? {
            id: o.snapshot.id,
            kind: o.snapshot.kind,
            bytes: o.snapshot.bytes,
            storedBytes: o.snapshot.storedBytes,
            durationSeconds,
          }
        : null,
    });
  } catch (err) {
    options.onWarning?.(
      `could not record the tick outcome of ${o.context} in ${options.backupRoot}: ${(err as Error).message}`,
    );
  }
}

function failedOutcome(
  err: unknown,
  outcome: TickOutcome,
  /** the folder the tick writes to, named when an errno error names no file */
  where: string,
): { outcome: TickOutcome; exitCode: ExitCodeValue } {
  outcome.ok = false;
  // an errno error (a read-only or full disk, a file where a folder belongs) is named, exit 10
  err = environmentErrorOf(err, where) ?? err;
  outcome.error =
    err instanceof PaasBackupError
      ? { code: err.code, message: err.message, remediation: err.remediation }
      : {
          code: "PAAS_BACKUP_UNEXPECTED",
          message: (err as Error).message,
          remediation: "Rerun with the same arguments and report the message.",
        };
  return { outcome, exitCode: err instanceof PaasBackupError ? err.exitCode : ExitCode.unexpected };
}

/**
 * tick, the one entry point for cron (policy §4): per context, under its lock, a daily full or
 * an hourly incremental (decideTick), then prune, then afterEach (offsite), then its outcome is
 * recorded for `status`; idempotent within the hour. The locations are checked once, before any
 * lock file is written into the backup root. The CLI's tick is this call plus printing, pings and
 * the metrics file, so an SDK caller gets the same policy.
 */
export async function runTick(options: TickOptions): Promise<TickResult> {
  // what fails before or between the contexts (the locations, the list of contexts) is named too
  return namingEnvironmentErrors(() => tickContexts(options));
}

async function tickContexts(options: TickOptions): Promise<TickResult> {
  await assertSafeLocations({
    fs: options.fs,
    backupRoot: options.backupRoot,
    stateRoot: options.stateRoot,
    allowRepoState: options.allowRepoState === true,
  });
  const { fs, stateRoot, clock } = options;
  const runs: { outcome: TickOutcome; exitCode: ExitCodeValue }[] = [];
  const recovered: RecoveryResult[] = [];
  let contexts = (options.contexts ?? []).map(validateContextName);
  if (options.allContexts) {
    for (const context of await contextsWithJournal(fs, stateRoot)) {
      try {
        // opening the session recovers; the work is nothing more
        const r = await withContext(
          {
            fs,
            backupRoot: options.backupRoot,
            stateRoot,
            context,
            owner: options.owner,
            command: "recover",
            clock,
            lockTimeoutMs: options.lockTimeoutMs,
            allowRepoState: options.allowRepoState === true,
          },
          async (session) => session.recovered,
        );
        if (r) {
          recovered.push(r);
          options.onRecovered?.(r);
        }
      } catch (err) {
        // not recorded for `status`: the context's own tick did not run
        runs.push(failedOutcome(err, emptyOutcome(context), join(options.backupRoot, context)));
      }
    }
    contexts = (await listContexts({ fs, stateRoot })).filter(
      (c) => !runs.some((r) => r.outcome.context === c),
    );
  }
  // a context named on the command line is recovered as its session opens: reported the same way
  const reporting: TickOptions = {
    ...options,
    onRecovered: (r) => {
      recovered.push(r);
      options.onRecovered?.(r);
    },
  };
  for (const context of contexts) runs.push(await tickOne(reporting, context));
  const vanished: string[] = [];
  if (options.allContexts && !options.shared) {
    // Read after the ticks: a recovery may have put a context's folder back meanwhile.
    const named = new Set(runs.map((r) => r.outcome.context));
    const inStateRoot = new Set(await listContexts({ fs, stateRoot }));
    for (const context of await listContexts({ fs, backupRoot: options.backupRoot }))
      if (!named.has(context) && !inStateRoot.has(context)) {
        vanished.push(context);
        runs.push(await tickVanished(options, context));
      }
  }
  const outcomes = runs.map((r) => r.outcome);
  const failed = outcomes.filter((o) => !o.ok);
  // A leaked credential never stops the tick: every context is still backed up (redacted); 9 only when nothing worse happened.
  const unacknowledged = outcomes.some((o) => o.redactions.some((r) => !r.acknowledged));
  const exitCode =
    failed.length === 0
      ? unacknowledged
        ? ExitCode.redacted
        : ExitCode.ok
      : !options.allContexts && runs.length === 1
        ? runs[0]!.exitCode
        : ExitCode.partial;
  return { outcomes, recovered, contexts, vanished, exitCode };
}
