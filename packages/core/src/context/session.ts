import type { FileSystem } from "../fs/types.js";
import { nodeLockOwner } from "../fs/node-fs.js";
import { namingEnvironmentErrors, UsageError } from "../errors.js";
import { validateContextName } from "../policy/context.js";
import { assertSafeLocations } from "../policy/work-tree.js";
import { contextBackupDir } from "../util/paths.js";
import { recoverContext, type RecoveryResult } from "./journal.js";
import { finishRotationCommits } from "../repository/rotation-commit.js";
import { withContextLock, type LockOptions, type LockOwner } from "./lock.js";
import type { SigningKey } from "../signing/sshsig.js";

/**
 * The context session (issue 19 §1): every core entry point that touches a context runs inside
 * one, so an SDK caller gets every guard the CLI has. `withContext` checks the name, checks the
 * locations, takes the context's lock, recovers a swap a crash interrupted (never without the
 * lock), then runs the work. A caller that composes several calls holds one session and passes it
 * to each (`session` in their options); a call given none opens its own.
 */
export interface ContextSession {
  readonly fs: FileSystem;
  readonly backupRoot: string;
  /** null when the session touches only the backup root (offsite push, a drill's selection) */
  readonly stateRoot: string | null;
  readonly context: string;
  readonly clock: () => Date;
  /** what recovery did when the session opened; null when there was nothing to do */
  readonly recovered: RecoveryResult | null;
  /** false once the withContext that opened it has returned: a session is not kept for later */
  readonly open: boolean;
}

/** How a core call that opens its own session takes the lock; ignored when a session is passed. */
export interface ContextLockOptions {
  /** the holder the lock records: this process (nodeLockOwner) by default */
  owner?: LockOwner;
  /** how long to wait for another run's lock before PAAS_BACKUP_LOCKED (exit 6); 30 s by default */
  lockTimeoutMs?: number;
  /** told while waiting for another run's lock: who holds it, and how long we have waited */
  onLockWait?: LockOptions["onWait"];
  /** told when recovery finished or undid a swap a crash interrupted */
  onRecovered?: (recovery: RecoveryResult) => void;
  /** this host's signing key: the incident and drill records the call (or its recovery) writes are signed with it (issue 24 §2) */
  signer?: SigningKey;
}

/** What every entry point that touches a context accepts besides its own options. */
export interface ContextCallOptions extends ContextLockOptions {
  /** a session the caller holds (withContext); the call then neither locks nor recovers again */
  session?: ContextSession;
}

export interface WithContextOptions extends ContextLockOptions {
  fs: FileSystem;
  backupRoot: string;
  /** the state root to recover; leave it out when the work touches only the backup root */
  stateRoot?: string;
  context: string;
  clock: () => Date;
  /** recorded in the lock as the holder's command ("sdk" by default) */
  command?: string;
  /** si's SI_PAAS_ALLOW_REPO_STATE: a state root inside a git work tree is allowed (the backup root never is) */
  allowRepoState?: boolean;
  /** check the state root against work trees too (default true; a restore checks the backup root only) */
  guardStateRoot?: boolean;
  /** named in the incident record of a recovery */
  operator?: string;
  /** for tests: the lock's staleness and refresh figures */
  staleAfterMs?: number;
  refreshEveryMs?: number;
  sleep?: (ms: number) => Promise<void>;
}

export const DEFAULT_LOCK_TIMEOUT_MS = 30_000;

/**
 * Check the name, check the locations, take the context's lock (re-entrant within this call
 * chain), recover, then run `work` with the session. The lock is released when `work` ends.
 */
export async function withContext<T>(
  options: WithContextOptions,
  work: (session: ContextSession) => Promise<T>,
): Promise<T> {
  // a write that names no file (a stream's ENOSPC) wrote into the context's backup folder
  return namingEnvironmentErrors(
    () => openContext(options, work),
    contextBackupDir(options.backupRoot, options.context),
  );
}

async function openContext<T>(
  options: WithContextOptions,
  work: (session: ContextSession) => Promise<T>,
): Promise<T> {
  const { fs, clock } = options;
  const context = validateContextName(options.context);
  // Before the lock file is written into the backup root: policy §7.1 for every caller.
  await assertSafeLocations({
    fs,
    backupRoot: options.backupRoot,
    ...(options.stateRoot !== undefined && options.guardStateRoot !== false
      ? { stateRoot: options.stateRoot }
      : {}),
    allowRepoState: options.allowRepoState === true,
  });
  const command = options.command ?? options.owner?.command ?? "sdk";
  return withContextLock(
    {
      fs,
      backupRoot: options.backupRoot,
      context,
      owner: options.owner ? { ...options.owner, command } : nodeLockOwner(command),
      clock,
      timeoutMs: options.lockTimeoutMs ?? DEFAULT_LOCK_TIMEOUT_MS,
      ...(options.onLockWait ? { onWait: options.onLockWait } : {}),
      ...(options.staleAfterMs !== undefined ? { staleAfterMs: options.staleAfterMs } : {}),
      ...(options.refreshEveryMs !== undefined ? { refreshEveryMs: options.refreshEveryMs } : {}),
      ...(options.sleep ? { sleep: options.sleep } : {}),
    },
    async () => {
      // a keys rotate killed inside a commit: its new artifact is finished with its checksum and
      // manifests before anything reads them (keyless, from the rotation record)
      await finishRotationCommits(fs, options.backupRoot, context);
      const recovered =
        options.stateRoot === undefined
          ? null
          : await recoverContext({
              fs,
              stateRoot: options.stateRoot,
              backupRoot: options.backupRoot,
              context,
              clock,
              ...(options.operator ? { operator: options.operator } : {}),
              ...(options.signer ? { signer: options.signer } : {}),
            });
      if (recovered) options.onRecovered?.(recovered);
      const session = {
        fs,
        backupRoot: options.backupRoot,
        stateRoot: options.stateRoot ?? null,
        context,
        clock,
        recovered,
        open: true,
      };
      try {
        return await work(session);
      } finally {
        session.open = false;
      }
    },
  );
}

/**
 * An entry point's way in: the caller's session when it passed one (checked to be open and for
 * this context and repository), else a session of its own. A session opened for another state
 * root (a drill's scratch root) still gets that root recovered, under the lock it holds.
 */
export async function inContext<T>(
  options: ContextCallOptions & Omit<WithContextOptions, keyof ContextLockOptions>,
  work: (session: ContextSession) => Promise<T>,
): Promise<T> {
  const { session } = options;
  if (!session) return withContext(options, work);
  const context = validateContextName(options.context);
  const mismatch = !session.open
    ? "it has ended (a session lives only inside the withContext call that opened it)"
    : session.context !== context
      ? `it is for context ${session.context}, not ${context}`
      : session.backupRoot !== options.backupRoot || session.fs !== options.fs
        ? `it is for the backup root ${session.backupRoot}, not ${options.backupRoot}`
        : null;
  if (mismatch)
    throw new UsageError("PAAS_BACKUP_INVALID_ARGUMENT", `the session passed cannot be used: ${mismatch}`, {
      remediation: "Pass the session of a withContext call for this context, from inside that call.",
      stage: "arguments",
      data: { context },
    });
  if (options.stateRoot !== undefined && options.stateRoot !== session.stateRoot) {
    const recovered = await recoverContext({
      fs: options.fs,
      stateRoot: options.stateRoot,
      backupRoot: options.backupRoot,
      context,
      clock: options.clock,
      ...(options.operator ? { operator: options.operator } : {}),
      ...(options.signer ? { signer: options.signer } : {}),
    });
    if (recovered) options.onRecovered?.(recovered);
    return work({ ...session, stateRoot: options.stateRoot, recovered });
  }
  return work(session);
}
