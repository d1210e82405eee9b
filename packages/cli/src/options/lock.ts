import { allowRepoStateFrom } from "@paas-backup/core/policy";
import {
  hasJournal,
  withContext,
  type ContextLockOptions,
  type LockOwner,
  type RecoveryResult,
  type WithContextOptions,
} from "@paas-backup/core/context";
import { nodeLockOwner } from "@paas-backup/core/node";
import type { Runtime } from "../runtime.js";

/**
 * The lock options every command uses: waiting more than a second for another run prints who
 * holds the lock and since when on stderr (once), instead of lockTimeoutSeconds of silence.
 */
export function lockOptions(rt: Runtime, context: string, command: string) {
  let told = false;
  return {
    fs: rt.fs,
    backupRoot: rt.backupRoot,
    context,
    owner: lockOwner(command),
    clock: rt.clock,
    timeoutMs: rt.config.lockTimeoutSeconds * 1000,
    onWait: (
      holder: { pid: number | null; host: string | null; command: string | null; startedAt: string },
      waitedMs: number,
      timeoutMs: number,
    ) => {
      // Brief contention (another tick finishing) stays quiet; a real wait says who holds the lock, once.
      if (told || waitedMs < 1000) return;
      told = true;
      const who =
        holder.pid === null
          ? `an unreadable lock file (written ${holder.startedAt})`
          : `pid ${holder.pid} on ${holder.host} (${holder.command || "unknown command"}) since ${holder.startedAt}`;
      process.stderr.write(
        `paas-backup ${command}: waiting for the lock of ${context}: held by ${who}; giving up after ${Math.round(timeoutMs / 1000)} s\n`,
      );
    },
  };
}

/**
 * The context session a command opens (core's withContext): the runtime's locations, this
 * process as the lock's holder, the configured wait, who holds the lock said while waiting, and
 * a recovery said on stderr. The command passes the session to its core call.
 */
export function sessionOptions(rt: Runtime, context: string, command: string): WithContextOptions {
  const lock = lockOptions(rt, context, command);
  return {
    fs: rt.fs,
    backupRoot: rt.backupRoot,
    stateRoot: rt.stateRoot,
    context,
    clock: rt.clock,
    command,
    owner: lock.owner,
    lockTimeoutMs: lock.timeoutMs,
    onLockWait: lock.onWait,
    onRecovered: reportRecovery,
    allowRepoState: allowRepoStateFrom(rt.env),
    // restore, rollback and unblock write the state root but never checked it; a snapshot does
    guardStateRoot: command === "snapshot" || command === "tick",
  };
}

/** For a core call that opens its own session (a drill, the tick's offsite push): the same holder, wait and messages. */
export function lockedBy(rt: Runtime, context: string, command: string): ContextLockOptions {
  const lock = lockOptions(rt, context, command);
  return {
    owner: lock.owner,
    lockTimeoutMs: lock.timeoutMs,
    onLockWait: lock.onWait,
    onRecovered: reportRecovery,
  };
}

function reportRecovery(result: RecoveryResult): void {
  process.stderr.write(
    `paas-backup: recovery: ${result.message}${result.incidentFile ? ` (recorded in ${result.incidentFile})` : ""}\n`,
  );
}

/** This process as a lock holder: pid, host, and the pid's start time so a reused pid is not taken for it. */
export function lockOwner(command: string): LockOwner {
  return nodeLockOwner(command);
}

/**
 * Before a command touches a context: finish or undo a swap a crash interrupted (issue 9 §1).
 * Cheap when there is nothing to do (one lstat); otherwise in the context's session (locked), so
 * a restore still running in another process is waited for, never "recovered" under its feet.
 */
export async function recoverFirst(rt: Runtime, context: string): Promise<RecoveryResult | null> {
  if (!(await hasJournal(rt.fs, rt.stateRoot, context))) return null;
  return withContext(
    { ...sessionOptions(rt, context, "recover"), guardStateRoot: false },
    async (session) => session.recovered,
  );
}
