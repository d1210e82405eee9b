import { randomUUID } from "node:crypto";
import type { FileSystem } from "../fs/types.js";
import { BusyError, errorCodeOf, isNotFound } from "../errors.js";
import { contextBackupDir, join } from "../util/paths.js";

/**
 * One lock per context, a file created with O_EXCL in the context's backup folder:
 *   <backup_root>/<context>/.lock  {"pid", "host", "nonce", "startedAt", "command"}
 * A lock whose process is gone (same host, pid not alive) or older than `staleAfterMs` is stale
 * and taken over; the takeover renames it aside first and checks it moved the lock it judged.
 */
export interface LockOwner {
  pid: number;
  host: string;
  command: string;
  /** is this pid alive on this host? (the CLI passes process.kill(pid, 0)) */
  isAlive(pid: number): boolean;
}

export interface LockOptions {
  fs: FileSystem;
  backupRoot: string;
  context: string;
  owner: LockOwner;
  clock: () => Date;
  timeoutMs: number;
  staleAfterMs?: number;
  sleep?: (ms: number) => Promise<void>;
  /** called once, when the lock is held by a live run and we start waiting: lets the CLI say who holds it */
  onWait?: (holder: { pid: number; host: string; command: string; startedAt: string }, timeoutMs: number) => void;
}

interface LockRecord {
  pid: number;
  host: string;
  nonce: string;
  startedAt: string;
  command: string;
}

export interface HeldLock {
  path: string;
  tookOverFrom: LockRecord | null;
  release(): Promise<void>;
}

async function readLock(fs: FileSystem, path: string): Promise<LockRecord | null> {
  try {
    return JSON.parse(Buffer.from(await fs.readFile(path)).toString("utf8")) as LockRecord;
  } catch (err) {
    if (isNotFound(err)) return null;
    // Half-written by a process killed mid-write: treat as a lock with no owner.
    return { pid: -1, host: "", nonce: "corrupt", startedAt: "1970-01-01T00:00:00Z", command: "" };
  }
}

export async function acquireContextLock(options: LockOptions): Promise<HeldLock> {
  const { fs, owner, clock } = options;
  const dir = contextBackupDir(options.backupRoot, options.context);
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  const path = join(dir, ".lock");
  const sleep = options.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  const staleAfter = options.staleAfterMs ?? 6 * 3600_000;
  const deadline = clock().getTime() + options.timeoutMs;
  const mine: LockRecord = { pid: owner.pid, host: owner.host, nonce: randomUUID(), startedAt: clock().toISOString(), command: owner.command };
  let tookOverFrom: LockRecord | null = null;
  let told = false;
  for (;;) {
    try {
      await fs.writeFile(path, `${JSON.stringify(mine)}\n`, { mode: 0o600, exclusive: true });
      return {
        path,
        tookOverFrom,
        release: async () => {
          const current = await readLock(fs, path);
          if (current?.nonce === mine.nonce) await fs.rm(path, { force: true });
        },
      };
    } catch (err) {
      if (errorCodeOf(err) !== "EEXIST") throw err;
    }
    const holder = await readLock(fs, path);
    if (!holder) continue;
    const age = clock().getTime() - Date.parse(holder.startedAt);
    const dead = holder.pid < 0 || (holder.host === owner.host && !owner.isAlive(holder.pid));
    if (dead || age > staleAfter) {
      const aside = `${path}.stale-${randomUUID().slice(0, 8)}`;
      try {
        await fs.rename(path, aside);
      } catch (err) {
        if (isNotFound(err)) continue;
        throw err;
      }
      const moved = await readLock(fs, aside);
      if (moved && moved.nonce !== holder.nonce) {
        // Someone took it over between our read and our rename: give theirs back.
        try {
          await fs.writeFile(path, `${JSON.stringify(moved)}\n`, { mode: 0o600, exclusive: true });
        } catch {
          // they or a third taker already rewrote it; ours is the stale copy either way
        }
      } else tookOverFrom = holder;
      await fs.rm(aside, { force: true });
      continue;
    }
    if (clock().getTime() >= deadline) {
      throw new BusyError("PAAS_BACKUP_LOCKED", `context ${options.context} is locked by pid ${holder.pid} on ${holder.host} (${holder.command}, since ${holder.startedAt}): ${path}`, {
        path,
        remediation: "Another paas-backup run is working on this context; wait for it, or if that process is gone on another host, remove the lock file.",
        stage: "lock",
        data: { holder: { pid: holder.pid, host: holder.host, startedAt: holder.startedAt, command: holder.command } },
      });
    }
    if (!told && options.onWait) {
      told = true;
      options.onWait({ pid: holder.pid, host: holder.host, command: holder.command, startedAt: holder.startedAt }, options.timeoutMs);
    }
    await sleep(Math.min(250, Math.max(10, deadline - clock().getTime())));
  }
}

export async function withContextLock<T>(options: LockOptions, work: () => Promise<T>): Promise<T> {
  const lock = await acquireContextLock(options);
  try {
    return await work();
  } finally {
    await lock.release();
  }
}
