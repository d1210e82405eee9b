import { AsyncLocalStorage } from "node:async_hooks";
import { randomUUID } from "node:crypto";
import type { FileStat, FileSystem } from "../fs/types.js";
import { BusyError, errorCodeOf, isNotFound, namingEnvironmentErrors } from "../errors.js";
import { contextBackupDir, dirname, join } from "../util/paths.js";
import { createFileExclusive } from "../util/atomic.js";

/**
 * One lock per context, with exactly one holder (issue 9 §2, issue 19 §1):
 *   <backup_root>/<context>/.lock
 *   {"pid", "host", "nonce", "startedAt", "command", "processStart", "refreshedAt"}
 *
 * - The lock appears with its content in one step: the record is written and fsynced into a
 *   private temporary file, then link(2)ed to `.lock`; link never replaces, so of any number of
 *   racers exactly one gets EEXIST-free success, and nobody ever sees an empty or half-written lock
 *   of a live holder. (On a filesystem without hard links we fall back to O_EXCL create, where a
 *   reader can catch the record half-written; the next rule keeps that safe.)
 * - **A live holder is never taken over.** On the same host, a holder whose process is alive keeps
 *   the lock whatever its age (a restore may wait at its confirmation prompt for hours). The pid
 *   alone is not the process: `processStart` (Linux: field 22 of /proc/<pid>/stat, the start time
 *   in clock ticks since boot) is recorded beside it, so a pid the kernel reused for another
 *   process counts as dead. Across hosts the pid cannot be asked, so the holder refreshes
 *   `refreshedAt` every `refreshEveryMs` (5 minutes) while it holds the lock, and a lock is stale
 *   once `staleAfterMs` (30 minutes) pass without a refresh, as restic does.
 * - A lock whose content does not parse (torn by a crash, or a foreign file) counts as held, by
 *   nobody we can name, until its mtime is older than `staleAfterMs`.
 * - Stale takeover (same host and the process is gone, or its pid now belongs to another process,
 *   or is our own pid but not a lock this process holds; another host and not refreshed within
 *   `staleAfterMs`) is serialized by a takeover marker
 *   `.lock.takeover-<id of the judged lock>` created the same one-step way: only its creator
 *   re-reads `.lock`, renames it to a unique name and checks that what it moved is the very lock
 *   it judged (same nonce, or same inode/mtime/size when unparseable); if not, it links that file
 *   back (the same file; link never replaces). A marker left by a taker that died is itself
 *   removed once its pid is gone or it is older than a minute.
 * - Release removes `.lock` only when it still holds our nonce; nobody ever writes, recreates or
 *   "gives back" another process's lock. The holder's refresh rewrites only its own record.
 * - Re-entrant within a process: `withContextLock` (and `withContext`) asked again for a lock
 *   their own call chain holds enter it rather than wait for themselves, so an SDK caller that
 *   wraps core calls in `withContextLock` does not deadlock now that every core call locks too.
 *   A lock taken with `acquireContextLock` belongs to the whole process until it is released.
 *   Two independent call chains of one process still exclude each other.
 *
 * Why not proper-lockfile: it locks with mkdir (no owner record inside, so a busy error cannot
 * name the holder, and there is nowhere to keep the pid's start time), judges staleness only by
 * an mtime it refreshes on a timer, on every host alike (a holder on this host whose event loop
 * stalls past `stale` loses its lock to a second holder; a dead holder on the same host still
 * blocks for the whole `stale` period), it is not re-entrant, and it calls node:fs/graceful-fs
 * directly, which would break core's injected-FileSystem discipline and the in-memory and
 * fault-injection tests. The refresh-and-stale rule across hosts is the one thing we take from it
 * (and from restic).
 */
export interface LockOwner {
  pid: number;
  host: string;
  command: string;
  /** is this pid alive on this host? (the CLI passes process.kill(pid, 0)) */
  isAlive(pid: number): boolean;
  /**
   * When the process that now has this pid started, as the kernel counts it (Linux: field 22 of
   * /proc/<pid>/stat); null when unknown. Recorded beside the holder's pid, it tells a pid reused
   * by another process from the holder. `nodeLockOwner` (from @paas-backup/core/node) reads /proc.
   */
  startTimeOf?(pid: number): string | null;
}

export interface LockOptions {
  fs: FileSystem;
  backupRoot: string;
  context: string;
  owner: LockOwner;
  clock: () => Date;
  timeoutMs: number;
  /** a lock from another host (or an unreadable one) not refreshed for this long is stale; 30 minutes */
  staleAfterMs?: number;
  /** how often the holder rewrites `refreshedAt`; 5 minutes */
  refreshEveryMs?: number;
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
  /** the holder process's start time (owner.startTimeOf), null when unknown */
  processStart?: string | null;
  /** when the holder last said it is still there; startedAt until the first refresh */
  refreshedAt?: string;
}

export interface HeldLock {
  path: string;
  tookOverFrom: LockRecord | null;
  /** true when this call entered a lock its own call chain (or process) already held */
  reentered: boolean;
  release(): Promise<void>;
}

/** restic's figures: refresh every 5 minutes, stale after 30 without a refresh */
export const LOCK_REFRESH_EVERY_MS = 5 * 60_000;
export const LOCK_STALE_AFTER_MS = 30 * 60_000;

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
        processStart: typeof value.processStart === "string" ? value.processStart : null,
        ...(typeof value.refreshedAt === "string" && Number.isFinite(Date.parse(value.refreshedAt))
          ? { refreshedAt: value.refreshedAt }
          : {}),
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
    // alive, but is it the holder? A pid the kernel handed to another process since is not.
    if (record.processStart && owner.startTimeOf) {
      const now = owner.startTimeOf(record.pid);
      if (now !== null && now !== record.processStart) return true;
    }
    // A live holder keeps its lock whatever its age: a restore waiting at its prompt for hours
    // is still the restore, and taking its lock would "recover" its swap under its feet.
    return false;
  }
  // another host: its pid means nothing here; it refreshes while it holds the lock
  return now - Date.parse(record.refreshedAt ?? record.startedAt) > staleAfter;
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

/** A lock this process holds, and how many nested calls are inside it. */
interface Holding {
  fs: FileSystem;
  path: string;
  depth: number;
  release(): Promise<void>;
}

/** the locks the current async call chain holds (withContextLock's scope) */
const chainHoldings = new AsyncLocalStorage<readonly Holding[]>();
/** locks taken with acquireContextLock: the whole process's until released */
const processHoldings: Holding[] = [];

function heldHere(fs: FileSystem, path: string): Holding | undefined {
  const held = (h: Holding) => h.fs === fs && h.path === path && h.depth > 0;
  return (chainHoldings.getStore() ?? []).find(held) ?? processHoldings.find(held);
}

function lockPath(options: LockOptions): string {
  return join(contextBackupDir(options.backupRoot, options.context), ".lock");
}

/** Enter a lock already held here: nothing is written, and only the outermost release removes it. */
function reenter(holding: Holding): HeldLock {
  holding.depth++;
  let released = false;
  return {
    path: holding.path,
    tookOverFrom: null,
    reentered: true,
    release: async () => {
      if (released) return;
      released = true;
      if (--holding.depth === 0) await holding.release();
    },
  };
}

/**
 * Take the context's lock, waiting up to `timeoutMs` for a live holder (then PAAS_BACKUP_LOCKED,
 * exit 6). The lock belongs to the whole process until released: any later acquire in this
 * process enters it. Prefer `withContextLock`, whose lock is re-entrant only within its own call.
 */
export async function acquireContextLock(options: LockOptions): Promise<HeldLock> {
  const existing = heldHere(options.fs, lockPath(options));
  if (existing) return reenter(existing);
  const { holding, lock } = await acquireNew(options);
  processHoldings.push(holding);
  return {
    ...lock,
    release: async () => {
      const i = processHoldings.indexOf(holding);
      if (i >= 0) processHoldings.splice(i, 1);
      if (holding.depth > 0) {
        holding.depth = 0;
        await holding.release();
      }
    },
  };
}

/**
 * Take the context's lock anew. Each attempt: create the lock file exclusively (held: start
 * refreshing it) → else look at the holder → take over a stale one and try again → past the
 * deadline, refuse naming the holder → else tell the waiter and back off.
 */
async function acquireNew(options: LockOptions): Promise<{ holding: Holding; lock: HeldLock }> {
  const { fs, owner, clock } = options;
  const dir = contextBackupDir(options.backupRoot, options.context);
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  const path = join(dir, ".lock");
  const sleep = options.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  const staleAfter = options.staleAfterMs ?? LOCK_STALE_AFTER_MS;
  const deadline = clock().getTime() + options.timeoutMs;
  const mine = newLockRecord(owner, clock().toISOString());
  let tookOverFrom: LockRecord | null = null;
  const waitStarted = clock().getTime();
  await sweepTemporaries(fs, dir, owner, clock().getTime());
  for (let attempt = 0; ; attempt++) {
    if (await createFileExclusive(fs, path, `${JSON.stringify(mine)}\n`))
      return heldLock(options, path, mine, tookOverFrom);
    const seen = await observe(fs, path);
    if (seen.state === "absent") continue;
    const now = clock().getTime();
    if (isStale(seen, owner, now, staleAfter)) {
      const removed = await takeOver(fs, path, seen, owner, now);
      if (removed) tookOverFrom = removed === "unreadable" ? unreadableHolder(seen) : removed;
      if (removed) continue;
    }
    if (now >= deadline) throw lockedBy(options.context, path, seen, staleAfter);
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

/** What this process writes into the lock file: who it is (with its start time, against pid reuse) and a nonce of its own. */
function newLockRecord(owner: LockOwner, startedAt: string): LockRecord {
  return {
    pid: owner.pid,
    host: owner.host,
    nonce: randomUUID(),
    startedAt,
    command: owner.command,
    processStart: owner.startTimeOf?.(owner.pid) ?? null,
    refreshedAt: startedAt,
  };
}

/**
 * The lock just created: refreshed while held, and released only if the file is still ours (a
 * holder taken over after a long pause must not remove its successor's lock).
 */
function heldLock(
  options: LockOptions,
  path: string,
  mine: LockRecord,
  tookOverFrom: LockRecord | null,
): { holding: Holding; lock: HeldLock } {
  const { fs, clock } = options;
  heldInThisProcess.add(mine.nonce);
  const refresher = startRefreshing(fs, path, mine, clock, options.refreshEveryMs ?? LOCK_REFRESH_EVERY_MS);
  const holding: Holding = {
    fs,
    path,
    depth: 1,
    release: async () => {
      await refresher.stop();
      try {
        const current = await observe(fs, path);
        if (current.state === "record" && current.record.nonce === mine.nonce)
          await fs.rm(path, { force: true });
      } finally {
        heldInThisProcess.delete(mine.nonce);
      }
    },
  };
  let released = false;
  return {
    holding,
    lock: {
      path,
      tookOverFrom,
      reentered: false,
      release: async () => {
        if (released) return;
        released = true;
        holding.depth = 0;
        await holding.release();
      },
    },
  };
}

/** A torn or foreign lock file taken over: named by its time, as no record says who wrote it. */
function unreadableHolder(seen: Observed & { stat: FileStat }): LockRecord {
  return {
    pid: -1,
    host: "",
    nonce: "unreadable",
    startedAt: new Date(seen.stat.mtimeMs).toISOString(),
    command: "",
  };
}

/** Still held at the deadline: the error names the holder (or the unreadable file and when it turns stale). */
function lockedBy(
  context: string,
  path: string,
  seen: Observed & { stat: FileStat },
  staleAfter: number,
): BusyError {
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
  return new BusyError("PAAS_BACKUP_LOCKED", `context ${context} is locked by ${who}: ${path}`, {
    path,
    remediation:
      "Another paas-backup run is working on this context; wait for it, or if that process is gone on another host, remove the lock file.",
    stage: "lock",
    data: { holder },
  });
}

/**
 * Hold the context's lock for `work`. Re-entrant within `work`'s own call chain: a core call made
 * inside (every core entry point takes this lock itself) enters it instead of waiting.
 */
export async function withContextLock<T>(options: LockOptions, work: () => Promise<T>): Promise<T> {
  return namingEnvironmentErrors(
    () => lockedWork(options, work),
    contextBackupDir(options.backupRoot, options.context),
  );
}

async function lockedWork<T>(options: LockOptions, work: () => Promise<T>): Promise<T> {
  const existing = heldHere(options.fs, lockPath(options));
  if (existing) {
    const lock = reenter(existing);
    try {
      return await work();
    } finally {
      await lock.release();
    }
  }
  const { holding, lock } = await acquireNew(options);
  try {
    return await chainHoldings.run([...(chainHoldings.getStore() ?? []), holding], work);
  } finally {
    // A lock that cannot be removed (the disk failed after the work was done) does not undo the
    // work or hide its error: it is left with our pid and a nonce this process no longer holds,
    // which the next run takes over as a dead holder's.
    await lock.release().catch(() => undefined);
  }
}

/** Is this context's lock held by the current call chain (or by this process through acquireContextLock)? */
export function holdsContextLock(fs: FileSystem, backupRoot: string, context: string): boolean {
  return heldHere(fs, join(contextBackupDir(backupRoot, context), ".lock")) !== undefined;
}

/**
 * While the lock is held: rewrite its record with a new `refreshedAt` every `everyMs`, so a run
 * on another host can tell a long-running holder from a dead one. Only our own record is
 * rewritten (temporary file, rename); a lock that is no longer ours is left alone.
 */
function startRefreshing(
  fs: FileSystem,
  path: string,
  mine: LockRecord,
  clock: () => Date,
  everyMs: number,
): { stop(): Promise<void> } {
  let running: Promise<void> = Promise.resolve();
  let stopped = false;
  const refresh = async () => {
    const current = await observe(fs, path);
    if (stopped || current.state !== "record" || current.record.nonce !== mine.nonce) return;
    const tmp = join(dirname(path), `..lock.${randomUUID()}.tmp`);
    try {
      await fs.writeFile(tmp, `${JSON.stringify({ ...mine, refreshedAt: clock().toISOString() })}\n`, {
        mode: 0o600,
        exclusive: true,
      });
      await fs.sync(tmp);
      await fs.rename(tmp, path);
    } finally {
      await fs.rm(tmp, { force: true });
    }
  };
  const timer = setInterval(() => {
    // a refresh that fails (a full disk) is retried at the next tick; staleness needs six missed in a row
    running = running.then(refresh).catch(() => undefined);
  }, everyMs);
  timer.unref?.();
  return {
    stop: async () => {
      stopped = true;
      clearInterval(timer);
      await running;
    },
  };
}
