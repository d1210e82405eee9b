import { posix } from "node:path";
import { EVENT_LOGS } from "@paas-backup/core/policy";
import { PaasBackupError } from "@paas-backup/core/errors";
import type { FileSystem } from "@paas-backup/core/fs";
import type { LockOwner } from "@paas-backup/core/context";
import type { OffsiteTarget } from "@paas-backup/core/offsite";
import type { RetentionPolicy } from "@paas-backup/core/retention";
import { MemoryFileSystem } from "../memory-fs.js";
import { MemoryStorage } from "../memory-storage.js";
import { FaultInjectingFileSystem, type FaultErrorCode, type FaultPlan } from "../fault-fs.js";
import { createStateRoot, eventLine, type PlantedSecret } from "../state-root.js";
import { Prng } from "./prng.js";

/** The policy's retention (§4: 7 daily, 4 weekly, 3 monthly), locally and at the offsite target. */
export const POLICY_RETENTION: RetentionPolicy = { hourly: 0, daily: 7, weekly: 4, monthly: 3 };
/** the config's retention.keepTags: snapshots with this tag are kept beyond the policy's slots (issue 25 §4) */
export const KEEP_TAGS: readonly string[] = ["pre-upgrade"];

export const STATE_ROOT = "/state";
export const BACKUP_ROOT = "/backups";
/** where a context folder that "became a symbolic link" really lives */
export const ELSEWHERE = "/elsewhere";

export type EventLog = (typeof EVENT_LOGS)[number];

/** One fault a process may meet, drawn from the seed. */
export type ProcessFault =
  { kind: "crash"; at: number } | { kind: "error"; at: number; code: FaultErrorCode } | null;

/** What one simulated process did: its result or error, and the fault it met (if it reached it). */
export interface ProcessRun<T> {
  pid: number;
  command: string;
  result: T | null;
  error: unknown;
  fault: ProcessFault;
  /** the fault was reached (a plan past the process's last call never fires) */
  faulted: boolean;
  crashed: boolean;
}

/** One line of the replayable trace: what happened, at which step and simulated time. */
export interface TraceLine {
  step: number;
  at: string;
  clock: string;
  text: string;
}

/**
 * The simulated world: one MemoryFileSystem holding the state root and the backup root, one
 * in-memory offsite target, a clock that true time drives and faults can skew, and the processes
 * that run paas-backup in it. Everything random comes from `prng`.
 */
export class World {
  readonly prng: Prng;
  readonly mem = new MemoryFileSystem();
  /** the real time, always moving forward */
  trueTime: number;
  /** how far the host's clock is off (a clock jump sets it, a correction clears it) */
  clockOffset = 0;
  readonly storage: MemoryStorage;
  readonly target: OffsiteTarget;
  readonly contexts: string[];
  planted: PlantedSecret[] = [];
  /** every event line ever appended to each live log, per context: what a restore must not lose */
  readonly appended = new Map<string, Map<EventLog, string[]>>();
  /** the vault folder's inode per context, which a restore keeps in place */
  readonly vaultIno = new Map<string, number>();
  readonly trace: TraceLine[] = [];
  /** where a context folder a fault moved away (vanished, or replaced by a link) really is */
  readonly movedAway = new Map<string, string>();
  step = 0;
  private nextPid = 1000;
  private eventIndex = 0;
  readonly live = new Set<number>();

  constructor(
    readonly seed: number,
    readonly start = Date.parse("2026-03-02T00:30:00Z"),
    contexts = ["alpha", "beta"],
  ) {
    this.prng = new Prng(seed);
    this.trueTime = start;
    this.contexts = contexts;
    this.storage = new MemoryStorage("memory://offsite", false, () => this.clock());
    // The simulated fleet writes plaintext snapshots (no keys in the world): its target takes them
    // as they are, as a target with allowPlaintext does; encryption on push is tested on its own.
    this.target = {
      name: "offsite",
      storage: this.storage,
      retention: POLICY_RETENTION,
      allowPlaintext: true,
    };
    this.mem.now = this.now;
  }

  get now(): number {
    return this.trueTime + this.clockOffset;
  }

  readonly clock = (): Date => new Date(this.now);

  async setup(): Promise<void> {
    const root = await createStateRoot({
      fs: this.mem,
      root: STATE_ROOT,
      contexts: this.contexts.map((name) => ({ name, eventBytes: 1500 })),
      now: new Date(this.now),
    });
    this.planted = root.planted;
    for (const c of this.contexts) {
      const logs = new Map<EventLog, string[]>();
      for (const log of EVENT_LOGS) logs.set(log, await this.liveLines(c, log));
      this.appended.set(c, logs);
      this.vaultIno.set(c, (await this.mem.lstat(this.vaultDir(c))).ino);
    }
    await this.mem.mkdir(BACKUP_ROOT, { recursive: true, mode: 0o700 });
  }

  contextDir(context: string): string {
    return posix.join(STATE_ROOT, "contexts", context);
  }

  vaultDir(context: string): string {
    return posix.join(this.contextDir(context), "vault");
  }

  /** advance true time (the host's clock follows, with its offset) */
  advance(ms: number): void {
    this.trueTime += ms;
    this.mem.now = this.now;
  }

  setClockOffset(ms: number): void {
    this.clockOffset = ms;
    this.mem.now = this.now;
  }

  log(raw: string): void {
    // The temporary names core draws with crypto (nonces, uuids) are the one thing not from the
    // seed; they never decide anything, and the trace masks them so that a replay reads the same.
    const text = raw
      .replace(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/g, "<uuid>")
      .replace(/\.[0-9a-f]{6,12}\.(partial|tmp)\b/g, ".<nonce>.$1")
      .replace(/(paas-backup-drill-)[^/\s']+/g, "$1<tmp>")
      .replace(/(staging\/[^/\s']+\.)[0-9a-z]{4,12}\b/g, "$1<nonce>");
    this.trace.push({
      step: this.step,
      at: new Date(this.trueTime).toISOString().slice(0, 16),
      clock: this.clockOffset === 0 ? "" : new Date(this.now).toISOString().slice(0, 16),
      text,
    });
  }

  /** the lines of a live log as they are now ([] when the log or the context is not there) */
  async liveLines(context: string, log: EventLog): Promise<string[]> {
    try {
      const text = Buffer.from(await this.mem.readFile(posix.join(this.contextDir(context), log))).toString(
        "utf8",
      );
      return text.split("\n").filter((l) => l.length > 0);
    } catch {
      return [];
    }
  }

  /** si writing events between our runs: a few lines appended to some of a context's logs */
  async appendEvents(context: string): Promise<number> {
    const dir = this.contextDir(context);
    try {
      if ((await this.mem.lstat(posix.join(dir, "events"))).kind !== "directory") return 0;
    } catch {
      return 0; // the context (or its events folder) is not there: si has nothing to write into
    }
    let n = 0;
    for (const log of EVENT_LOGS) {
      if (!this.prng.chance(0.6)) continue;
      const kind = log.includes("deploy") ? "deploy" : log.includes("alert") ? "alert" : "audit";
      const count = this.prng.int(1, 3);
      const lines: string[] = [];
      for (let i = 0; i < count; i++) lines.push(eventLine(kind, context, this.clock(), this.eventIndex++));
      await this.mem.appendFile(posix.join(dir, log), lines.map((l) => `${l}\n`).join(""), { mode: 0o600 });
      this.appended
        .get(context)!
        .get(log)!
        .push(...lines);
      n += count;
    }
    return n;
  }

  /** a fault for the next process, or none: most runs meet none */
  drawFault(probability: number): ProcessFault {
    if (!this.prng.chance(probability)) return null;
    // Calls are counted from 1; the run's length varies, so a late call may never come (no fault then).
    const at = this.prng.int(1, 400);
    if (this.prng.chance(0.5)) return { kind: "crash", at };
    return { kind: "error", at, code: this.prng.pick(["EIO", "ENOSPC", "EACCES"] as const) };
  }

  /**
   * Run one simulated process: its own pid (alive while it runs, dead after, crashed or not), its
   * filesystem wrapped to meet `fault`. A crash stops every later call of the process; the world
   * keeps what it had done (the reboot).
   */
  async run<T>(
    command: string,
    fault: ProcessFault,
    work: (fs: FileSystem, owner: LockOwner) => Promise<T>,
  ): Promise<ProcessRun<T>> {
    const pid = this.nextPid++;
    this.live.add(pid);
    const plan: FaultPlan | null = fault
      ? fault.kind === "crash"
        ? { at: fault.at, mode: "crash" }
        : { at: fault.at, mode: "throw", code: fault.code }
      : null;
    const fs = plan ? new FaultInjectingFileSystem(this.mem, plan) : this.mem;
    const owner: LockOwner = { pid, host: "sim", command, isAlive: (p) => this.live.has(p) };
    const out: ProcessRun<T> = {
      pid,
      command,
      result: null,
      error: null,
      fault,
      faulted: false,
      crashed: false,
    };
    try {
      out.result = await work(fs, owner);
    } catch (err) {
      out.error = err;
    } finally {
      this.live.delete(pid);
      if (fs instanceof FaultInjectingFileSystem) {
        out.faulted = fs.injected !== null;
        out.crashed = fs.crashed;
      }
    }
    return out;
  }
}

/** How a process ended, in a few words for the trace. */
export function describeRun(run: ProcessRun<unknown>, extra = ""): string {
  const fault = run.fault
    ? ` [${run.fault.kind === "crash" ? "crash" : run.fault.code}@${run.fault.at}${run.faulted ? "" : " (not reached)"}]`
    : "";
  const end = run.crashed
    ? "crashed"
    : run.error
      ? `failed ${errorCode(run.error)}`
      : `ok${extra ? ` ${extra}` : ""}`;
  return `${run.command}${fault}: ${end}`;
}

export function errorCode(err: unknown): string {
  if (err instanceof PaasBackupError) return `${err.code} (exit ${err.exitCode})`;
  const code = (err as { code?: unknown })?.code;
  return `${typeof code === "string" ? code : "Error"}: ${(err as Error)?.message ?? String(err)}`;
}
