import { hostname } from "node:os";
import {
  hasJournal,
  recoverContext,
  withContextLock,
  type LockOwner,
  type RecoveryResult,
} from "@paas-backup/core/snapshot";
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

export function lockOwner(command: string): LockOwner {
  return {
    pid: process.pid,
    host: hostname(),
    command,
    isAlive(pid) {
      try {
        process.kill(pid, 0);
        return true;
      } catch (err) {
        return (err as NodeJS.ErrnoException).code === "EPERM";
      }
    },
  };
}

/**
 * Before a command touches a context: finish or undo a swap a crash interrupted (issue 9 §1).
 * Cheap when there is nothing to do (one lstat); otherwise under the context's lock, so a restore
 * still running in another process is waited for, never "recovered" under its feet.
 */
export async function recoverFirst(rt: Runtime, context: string): Promise<RecoveryResult | null> {
  if (!(await hasJournal(rt.fs, rt.stateRoot, context))) return null;
  const result = await withContextLock(
    {
      fs: rt.fs,
      backupRoot: rt.backupRoot,
      context,
      owner: lockOwner("recover"),
      clock: rt.clock,
      timeoutMs: rt.config.lockTimeoutSeconds * 1000,
    },
    () =>
      recoverContext({
        fs: rt.fs,
        stateRoot: rt.stateRoot,
        backupRoot: rt.backupRoot,
        context,
        clock: rt.clock,
      }),
  );
  if (result)
    process.stderr.write(
      `paas-backup: recovery: ${result.message}${result.incidentFile ? ` (recorded in ${result.incidentFile})` : ""}\n`,
    );
  return result;
}
