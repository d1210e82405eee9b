import { randomUUID } from "node:crypto";
import type { FileStat, FileSystem } from "../fs/types.js";
import { BusyError, errorCodeOf, isNotFound } from "../errors.js";
import { contextBackupDir, join } from "../util/paths.js";
import { createFileExclusive } from "../util/atomic.js";

/**
 * One lock per context, with exactly one holder (issue 9 §2):
 *   <backup_root>/<context>/.lock  {"pid", "host", "nonce", "startedAt", "command"}
 *
 * - The lock appears with its content in one step: the record is written and fsynced into a
 *   private temporary file, then link(2)ed to `.lock`; link never replaces, so of any number of
 *   racers exactly one gets EEXIST-free success, and nobody ever sees an empty or half-written lock
 *   of a live holder. (On a filesystem without hard links we fall back to O_EXCL create, where a
 *   reader can catch the record half-written; the next rule keeps that safe.)
 * - A lock whose content does not parse (torn by a crash, or a foreign file) counts as held, by
 *   nobody we can name, until its mtime is older than `staleAfterMs`.
 * - Stale takeover (same host and the pid is gone, or is our own pid but not a lock this process
 *   holds, or older than `staleAfterMs`) is serialized by a takeover marker
 *   `.lock.takeover-<id of the judged lock>` created the same one-step way: only its creator
 *   re-reads `.lock`, renames it to a unique name and checks that what it moved is the very lock
 *   it judged (same nonce, or same inode/mtime/size when unparseable); if not, it links that file
 *   back (the same file; link never replaces). A marker left by a taker that died is itself
 *   removed once its pid is gone or it is older than a minute.
 * - Release removes `.lock` only when it still holds our nonce; nobody ever writes, recreates or
 *   "gives back" another process's lock.
 *
 * Why not proper-lockfile: it locks with mkdir (no owner record inside, so a busy error cannot
 * name the holder), judges staleness only by an mtime it refreshes on a timer (a holder whose event
 * loop stalls past `stale` loses its lock to a second holder, and a dead holder on the same host
 * still blocks for the whole `stale` period), and it calls node:fs/graceful-fs directly, which
 * would break core's injected-FileSystem discipline and the in-memory/fault-injection tests.
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
  /** called on each wait while a live run holds the lock, with how long we have waited: lets the CLI say who holds it */
  onWait?: (
    holder: { pid: number | null; host: string | null; command: string | null; startedAt: string },
    waitedMs: number,
    timeoutMs: number,
  ) => void;
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

/** a takeover marker is held for a handful of filesystem calls; one a minute old belongs to a dead taker */
const TAKEOVER_MARKER_STALE_MS = 60_000;
/** leftover temporary lock files (a process killed between write and link) are swept after this */
const TEMP_STALE_MS = 10 * 60_000;

type Observed =
  | { state: "absent" }
  /** parseable: a record we can judge */
  | { state: "record"; record: LockRecord; stat: FileStat }
  /** present but torn or foreign: held until old */
  | { state: "unreadable"; stat: FileStat };

function parseRecord(text: string): LockRecord | null {
  try {
    const value = JSON.parse(text) as Partial<LockRecord>;
    if (
      value &&
      typeof value === "object" &&
      typeof value.pid === "number" &&
      typeof value.host === "string" &&
      typeof value.nonce === "string" &&
      value.nonce.length > 0 &&
      typeof value.startedAt === "string" &&
      Number.isFinite(Date.parse(value.startedAt))
    ) {
      return {
        pid: value.pid,
        host: value.host,
        nonce: value.nonce,
        startedAt: value.startedAt,
        command: typeof value.command === "string" ? value.command : "",
      };
    }
  } catch {
    // not JSON: torn or foreign
  }
  return null;
}

async function observe(fs: FileSystem, path: string): Promise<Observed> {
  try {
    const stat = await fs.lstat(path);
    // a directory, symlink or device at the lock's name is nothing we wrote: held until old
    if (stat.kind !== "file") return { state: "unreadable", stat };
    const text = Buffer.from(await fs.readFile(path)).toString("utf8");
    const record = parseRecord(text);
    return record ? { state: "record", record, stat } : { state: "unreadable", stat };
  } catch (err) {
    if (isNotFound(err)) return { state: "absent" };
    throw err;
  }
}

/** the same lock file we judged earlier, not a newer one at the same name */
function sameLock(judged: Exclude<Observed, { state: "absent" }>, now: Observed): boolean {
  if (now.state === "absent") return false;
  if (judged.state === "record") return now.state === "record" && now.record.nonce === judged.record.nonce;
  return (
    now.state === "unreadable" &&
    now.stat.ino === judged.stat.ino &&
    now.stat.mtimeMs === judged.stat.mtimeMs &&
    now.stat.size === judged.stat.size
  );
}

function lockId(judged: Exclude<Observed, { state: "absent" }>): string {
  return judged.state === "record"
    ? judged.record.nonce.replace(/[^A-Za-z0-9-]/g, "")
    : `ino${judged.stat.ino}-${Math.trunc(judged.stat.mtimeMs)}-${judged.stat.size}`;
}

/** sweep what lock attempts killed half way leave: temporaries not yet linked, stale locks moved aside */
async function sweepTemporaries(fs: FileSystem, dir: string, owner: LockOwner, now: number): Promise<void> {
  let entries;
  try {
    entries = await fs.readdir(dir);
  } catch (err) {
    if (isNotFound(err)) return;
    throw err;
  }
  for (const e of entries) {
    if (e.kind !== "file") continue;
    const temporary = e.name.startsWith("..lock.") && e.name.endsWith(".tmp"); // createFileExclusive's
    if (!temporary && !e.name.startsWith(".lock.")) continue;
    if (/^\.lock\.takeover-[^.]+$/.test(e.name)) {
      // a taker that died after removing the stale lock leaves its marker behind
      await clearMarkerIfStale(fs, join(dir, e.name), owner, now);
      continue;
    }
    const movedAside = !temporary && e.name.includes(".stale-");
    if (!movedAside && !temporary) continue;
    try {
      // A lock or marker moved aside is dead by construction (only its taker ever names it);
      // a temporary may still be about to be linked, so it must be old first.
      const st = await fs.lstat(join(dir, e.name));
      if (movedAside || now - st.mtimeMs > TEMP_STALE_MS) await fs.rm(join(dir, e.name), { force: true });
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
  }
}

/** nonces of the locks this process holds right now */
const heldInThisProcess = new Set<string>();

function isStale(
  seen: Exclude<Observed, { state: "absent" }>,
  owner: LockOwner,
  now: number,
  staleAfter: number,
): boolean {
  if (seen.state === "unreadable") return now - seen.stat.mtimeMs > staleAfter;
  const { record } = seen;
  if (record.host === owner.host) {
    // our own pid but not a lock we hold: an earlier process that had this pid (a restarted
    // container is pid 1 again) and died holding it
    if (record.pid === owner.pid) return !heldInThisProcess.has(record.nonce);
    if (!owner.isAlive(record.pid)) return true;
  }
  return now - Date.parse(record.startedAt) > staleAfter;
}

/**
 * Remove the stale lock `judged` unless someone else is already doing it or it changed.
 * Returns the record removed (or a placeholder for an unreadable one), null when not ours to remove.
 */
async function takeOver(
  fs: FileSystem,
  path: string,
  judged: Exclude<Observed, { state: "absent" }>,
  owner: LockOwner,
  now: number,
): Promise<LockRecord | "unreadable" | null> {
  const marker = `${path}.takeover-${lockId(judged)}`;
  const mine: LockRecord = {
    pid: owner.pid,
    host: owner.host,
    nonce: randomUUID(),
    startedAt: new Date(now).toISOString(),
    command: "lock takeover",
  };
  if (!(await createFileExclusive(fs, marker, `${JSON.stringify(mine)}\n`))) {
    // Another taker is at it. If it died there, clear its marker so the lock does not stay stuck.
    await clearMarkerIfStale(fs, marker, owner, now);
    return null;
  }
  try {
    const now2 = await observe(fs, path);
    if (!sameLock(judged, now2)) return null;
    const aside = `${path}.stale-${randomUUID()}`;
    try {
      await fs.rename(path, aside);
    } catch (err) {
      if (isNotFound(err)) return null;
      throw err;
    }
    // Only a judged-stale holder that is in fact alive can release and let a new lock in between
    // our re-read and the rename. If that happened, link its file back (the same file, never a
    // rewrite; link fails rather than replace anything that took the name meanwhile).
    const moved = await observe(fs, aside);
    if (moved.state !== "absent" && !sameLock(judged, moved)) {
      try {
        await fs.link(aside, path);
      } catch (err) {
        if (errorCodeOf(err) !== "EEXIST") throw err;
      }
      await fs.rm(aside, { force: true });
      return null;
    }
    await fs.rm(aside, { force: true });
    return judged.state === "record" ? judged.record : "unreadable";
  } finally {
    await fs.rm(marker, { force: true });
  }
}

async function clearMarkerIfStale(
  fs: FileSystem,
  marker: string,
  owner: LockOwner,
  now: number,
): Promise<void> {
  const other = await observe(fs, marker);
  if (other.state === "absent" || !isMarkerStale(other, owner, now)) return;
  const aside = `${marker}.stale-${randomUUID()}`;
  try {
    await fs.rename(marker, aside);
  } catch (err) {
    if (isNotFound(err)) return;
    throw err;
  }
  // Whatever we moved aside is a takeover marker, never a lock: removing it is harmless,
  // since every marker holder re-reads the lock before moving it.
  await fs.rm(aside, { force: true });
}

function isMarkerStale(seen: Exclude<Observed, { state: "absent" }>, owner: LockOwner, now: number): boolean {
  if (seen.state === "record" && seen.record.host === owner.host && !owner.isAlive(seen.record.pid))
    return true;
  return (
    now - seen.stat.mtimeMs > TAKEOVER_MARKER_STALE_MS &&
    (seen.state === "unreadable" || now - Date.parse(seen.record.startedAt) > TAKEOVER_MARKER_STALE_MS)
  );
}

export async function acquireContextLock(options: LockOptions): Promise<HeldLock> {
  const { fs, owner, clock } = options;
  const dir = contextBackupDir(options.backupRoot, options.context);
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  const path = join(dir, ".lock");
  const sleep = options.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  const staleAfter = options.staleAfterMs ?? 6 * 3600_000;
  const deadline = clock().getTime() + options.timeoutMs;
  const mine: LockRecord = {
    pid: owner.pid,
    host: owner.host,
    nonce: randomUUID(),
    startedAt: clock().toISOString(),
    command: owner.command,
  };
  let tookOverFrom: LockRecord | null = null;
  const waitStarted = clock().getTime();
  await sweepTemporaries(fs, dir, owner, clock().getTime());
  for (let attempt = 0; ; attempt++) {
    if (await createFileExclusive(fs, path, `${JSON.stringify(mine)}\n`)) {
      heldInThisProcess.add(mine.nonce);
      return {
        path,
        tookOverFrom,
        release: async () => {
          try {
            const current = await observe(fs, path);
            if (current.state === "record" && current.record.nonce === mine.nonce)
              await fs.rm(path, { force: true });
          } finally {
            heldInThisProcess.delete(mine.nonce);
          }
        },
      };
    }
    const seen = await observe(fs, path);
    if (seen.state === "absent") continue;
    const now = clock().getTime();
    if (isStale(seen, owner, now, staleAfter)) {
      const removed = await takeOver(fs, path, seen, owner, now);
      if (removed && removed !== "unreadable") tookOverFrom = removed;
      else if (removed === "unreadable")
        tookOverFrom = {
          pid: -1,
          host: "",
          nonce: "unreadable",
          startedAt: new Date(seen.stat.mtimeMs).toISOString(),
          command: "",
        };
      if (removed) continue;
    }
    if (now >= deadline) {
      const holder =
        seen.state === "record"
          ? {
              pid: seen.record.pid,
              host: seen.record.host,
              startedAt: seen.record.startedAt,
              command: seen.record.command,
            }
          : { pid: null, host: null, startedAt: new Date(seen.stat.mtimeMs).toISOString(), command: null };
      const who =
        seen.state === "record"
          ? `pid ${holder.pid} on ${holder.host} (${holder.command}, since ${holder.startedAt})`
          : `an unreadable lock file (torn or foreign, written ${holder.startedAt}; it counts as held until it is ${Math.round(staleAfter / 60_000)} minutes old)`;
      throw new BusyError("PAAS_BACKUP_LOCKED", `context ${options.context} is locked by ${who}: ${path}`, {
        path,
        remediation:
          "Another paas-backup run is working on this context; wait for it, or if that process is gone on another host, remove the lock file.",
        stage: "lock",
        data: { holder },
      });
    }
    if (options.onWait) {
      options.onWait(
        seen.state === "record"
          ? {
              pid: seen.record.pid,
              host: seen.record.host,
              command: seen.record.command,
              startedAt: seen.record.startedAt,
            }
          : { pid: null, host: null, command: null, startedAt: new Date(seen.stat.mtimeMs).toISOString() },
        now - waitStarted,
        options.timeoutMs,
      );
    }
    // jittered back-off so that racers do not retry in lockstep
    const wait = Math.min(250, 10 * 2 ** Math.min(attempt, 5)) * (0.5 + Math.random());
    await sleep(Math.max(1, Math.min(wait, deadline - now)));
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
