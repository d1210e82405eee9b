import { randomUUID } from "node:crypto";
import { BusyError, SafetyError, UsageError, isNotFound } from "../errors.js";
import type { CreateOnlyResult, ObjectStorage } from "./storage.js";

/**
 * Single writers for a repository shared by several hosts, on nothing but an object store with
 * create-only writes (S3 `If-None-Match: *`). No compare-and-swap: Ceph RGW 16 answers 412 to every
 * `If-Match`, so nothing here ever overwrites an object; every step creates a new key.
 *
 *   leases/<name>/e<epoch>              taking the lease: the epoch only grows; one creator wins it
 *   leases/<name>/e<epoch>.r<seq>       renewals while held (the newest Last-Modified is the heartbeat)
 *   leases/<name>/e<epoch>.released     given back
 *   log/<name>/<seq>                    the fenced commit log: create-only, numbered, one JSON entry each
 *   log/<name>/<seq>.checkpoint         a compaction of the log up to <seq> (log-compaction.ts): create-only
 *
 * A lease whose heartbeat is older than its ttl on the *server's* clock (its Date header against the
 * objects' Last-Modified) is free to take over: the host clocks of a fleet never decide. A lease
 * alone cannot stop a holder that paused (GC, SIGSTOP, a suspended VM) past its ttl and then goes
 * on, so the writes that matter are commits: a create-only entry at the next number of the
 * name's log, carrying the epoch. A host that takes over a stale (unreleased) lease first appends a
 * "begin" entry; a commit is refused once a begin of a later epoch is in the log, and readers
 * ignore any entry behind such a begin (fencing). The commit is one small PUT, never a multipart
 * upload or a copy (RGW 16 ignores conditions on CompleteMultipartUpload) (Apache Hudi's S3 lock provider (RFC-91), Terraform's S3 lockfile, and
 * restic's lock files and kopia's maintenance owner for the pitfalls).
 */
export interface LeaseHolder {
  host: string;
  pid: number;
  command: string;
}

export interface LeaseOptions {
  storage: ObjectStorage;
  /** what is leased: `context/<name>` for a context's writer, `maintenance` for prune and offsite work */
  name: string;
  holder: LeaseHolder;
  /** a lease not renewed for this long (server time) may be taken over; see DEFAULT_LEASE_TTL_MS */
  ttlMs: number;
}

/** Production default: long enough for a slow snapshot's renewals to land, short enough that a dead host's work resumes soon. */
export const DEFAULT_LEASE_TTL_MS = 5 * 60_000;
/** The shortest safe ttl: Date and Last-Modified have whole seconds, and a renewal must land well inside it. */
export const MIN_LEASE_TTL_MS = 10_000;

const EPOCH = /^e(\d{12})(?:\.(?:r(\d{6})|(released)))?$/;
const pad = (n: number, width: number) => String(n).padStart(width, "0");
const epochKey = (name: string, epoch: number) => `leases/${name}/e${pad(epoch, 12)}`;

interface LeaseRecord {
  holder: LeaseHolder;
  ttlMs: number;
  run: string;
}

export interface LeaseState {
  /** the highest epoch ever taken (0: never) */
  epoch: number;
  heartbeat: Date | null;
  released: boolean;
  renewals: number;
  /** every key of the lease, for clean-up */
  keys: string[];
}

function needsConditionalWrites(
  storage: ObjectStorage,
): asserts storage is ObjectStorage & Required<Pick<ObjectStorage, "createOnly" | "serverTime">> {
  if (!storage.createOnly || !storage.serverTime)
    throw new SafetyError(
      "PAAS_BACKUP_NO_CONDITIONAL_WRITES",
      `${storage.url} (${storage.kind}) has ${storage.createOnly ? "no server clock to judge leases on" : "no create-only writes"}, so several hosts cannot share it safely`,
      {
        path: storage.url,
        remediation:
          "Use an S3 bucket as the shared repository (s3://bucket/prefix), or keep this repository to one host.",
        stage: "lease",
      },
    );
}

export async function readLeaseState(storage: ObjectStorage, name: string): Promise<LeaseState> {
  const state: LeaseState = { epoch: 0, heartbeat: null, released: false, renewals: 0, keys: [] };
  const seen: { epoch: number; renewal: number | null; released: boolean; at: Date | null }[] = [];
  for await (const o of storage.list(`leases/${name}/`, { shallow: true, keysOnly: true })) {
    const m = EPOCH.exec(o.key.slice(`leases/${name}/`.length));
    if (!m) continue;
    state.keys.push(o.key);
    seen.push({
      epoch: Number(m[1]),
      renewal: m[2] ? Number(m[2]) : null,
      released: m[3] !== undefined,
      at: o.lastModified,
    });
  }
  for (const s of seen) state.epoch = Math.max(state.epoch, s.epoch);
  for (const s of seen.filter((s) => s.epoch === state.epoch)) {
    if (s.released) state.released = true;
    if (s.renewal !== null) state.renewals = Math.max(state.renewals, s.renewal);
    if (s.at && (!state.heartbeat || s.at > state.heartbeat)) state.heartbeat = s.at;
  }
  return state;
}

async function readRecord(storage: ObjectStorage, key: string): Promise<LeaseRecord | null> {
  try {
    const chunks: Buffer[] = [];
    for await (const c of await storage.get(key)) chunks.push(c as Buffer);
    const parsed = JSON.parse(Buffer.concat(chunks).toString("utf8")) as LeaseRecord;
    return typeof parsed.ttlMs === "number" ? parsed : null;
  } catch {
    return null;
  }
}

export interface LogEntry {
  seq: number;
  epoch: number;
  kind: "begin" | "commit";
  lease: string;
  data: Record<string, unknown>;
  /** the server's time of the commit, when known */
  at?: string;
}

const logKey = (name: string, seq: number) => `log/${name}/${pad(seq, 12)}`;
export const checkpointKey = (name: string, upTo: number) => `log/${name}/${pad(upTo, 12)}.checkpoint`;

/**
 * A compaction of a log up to an entry (log-compaction.ts writes them): create-only, so it never
 * changes once made. Readers start from the newest valid one and read only the entries after it.
 */
export interface LogCheckpoint {
  schema: "paas-backup/log-checkpoint@1";
  lease: string;
  /** the last entry it covers: entries up to this number are summarised here, and may be gone */
  upTo: number;
  /** the highest epoch begun up to upTo: a commit after upTo below it is fenced out */
  begun: number;
  /** every entry up to upTo still in effect, verbatim, oldest first (begins and fenced commits dropped) */
  entries: LogEntry[];
  /** the numbers of carried entries that came behind a begin of a later epoch (fenced by that rule) */
  behindBegin: number[];
  /** the checkpoint this one was built on (0: none) */
  previous: number;
}

/** One listing of a log: its entries and its checkpoints, by number. */
export interface LogListing {
  entries: [number, string, Date | null][];
  checkpoints: [number, string, Date | null][];
}

export async function listLog(storage: ObjectStorage, name: string): Promise<LogListing> {
  const entries: [number, string, Date | null][] = [];
  const checkpoints: [number, string, Date | null][] = [];
  for await (const o of storage.list(`log/${name}/`, { shallow: true, keysOnly: true })) {
    const m = /\/(\d{12})(\.checkpoint)?$/.exec(o.key);
    if (m) (m[2] ? checkpoints : entries).push([Number(m[1]), o.key, o.lastModified]);
  }
  entries.sort((a, b) => a[0] - b[0]);
  checkpoints.sort((a, b) => a[0] - b[0]);
  return { entries, checkpoints };
}

/** The last number a log has used: its newest entry, or a checkpoint's (the entries it covers may be gone). */
function headOf(listing: LogListing): number {
  const entry = listing.entries.length > 0 ? listing.entries[listing.entries.length - 1]![0] : 0;
  const checkpoint =
    listing.checkpoints.length > 0 ? listing.checkpoints[listing.checkpoints.length - 1]![0] : 0;
  return Math.max(entry, checkpoint);
}

async function logHeadOf(storage: ObjectStorage, name: string): Promise<number> {
  return headOf(await listLog(storage, name));
}

/**
 * An entry as read, or null when the key holds none (gone, or not JSON). A failed GET is an error,
 * never "no entry": a reader would miss a commit, and a compaction would leave it out for good.
 */
export async function readEntry(storage: ObjectStorage, key: string): Promise<LogEntry | null> {
  try {
    const chunks: Buffer[] = [];
    for await (const c of await storage.get(key)) chunks.push(c as Buffer);
    const e = JSON.parse(Buffer.concat(chunks).toString("utf8")) as LogEntry | null;
    return e && typeof e.seq === "number" && typeof e.epoch === "number" ? e : null;
  } catch (err) {
    if (isNotFound(err) || err instanceof SyntaxError) return null;
    throw err;
  }
}

/** A checkpoint as read, or null when it is not one (a stray object, garbage): readers then use an older one. */
export async function readCheckpoint(
  storage: ObjectStorage,
  name: string,
  upTo: number,
): Promise<LogCheckpoint | null> {
  // Only a missing or unparsable checkpoint is "not one": a failed GET must not send a reader to an
  // older checkpoint whose entries may be gone, so it is the reader's error.
  let c: LogCheckpoint | null;
  try {
    const chunks: Buffer[] = [];
    for await (const chunk of await storage.get(checkpointKey(name, upTo))) chunks.push(chunk as Buffer);
    c = JSON.parse(Buffer.concat(chunks).toString("utf8")) as LogCheckpoint | null;
  } catch (err) {
    if (isNotFound(err) || err instanceof SyntaxError) return null;
    throw err;
  }
  const valid =
    c !== null &&
    c.schema === "paas-backup/log-checkpoint@1" &&
    c.upTo === upTo &&
    c.lease === name &&
    typeof c.begun === "number" &&
    Array.isArray(c.entries) &&
    Array.isArray(c.behindBegin) &&
    c.entries.every((e) => typeof e?.seq === "number" && typeof e.epoch === "number" && e.seq <= upTo);
  return valid ? c : null;
}

/** A reader's rule: a commit behind a begin of a later epoch does not count. */
function fencedBy(entry: LogEntry, behindBegin: boolean): boolean {
  return entry.kind === "commit" && behindBegin;
}

/**
 * The name's log as readers must see it: every entry in order, each commit marked `fenced` when a
 * begin of a later epoch comes before it (a writer that paused past its lease and went on). It
 * starts from the newest valid checkpoint (its entries, then the entries after it), so a compacted
 * log costs one GET however long it was.
 */
export async function readFencedLog(
  storage: ObjectStorage,
  name: string,
  options: {
    /**
     * entries already read, by number: a log entry is created once and never changes, so a caller
     * may keep them (the CLI in its cache) and only new entries are fetched; new ones are added,
     * and those a checkpoint now covers are dropped (the checkpoint holds what is still in effect)
     */
    known?: Map<number, LogEntry>;
    /** checkpoints already read, by number (create-only too); the one used is added */
    knownCheckpoints?: Map<number, LogCheckpoint>;
  } = {},
): Promise<(LogEntry & { fenced: boolean })[]> {
  const listing = await listLog(storage, name);
  return readListedLog(storage, name, listing, options);
}

export async function readListedLog(
  storage: ObjectStorage,
  name: string,
  listing: LogListing,
  options: { known?: Map<number, LogEntry>; knownCheckpoints?: Map<number, LogCheckpoint> } = {},
): Promise<(LogEntry & { fenced: boolean })[]> {
  const out: (LogEntry & { fenced: boolean })[] = [];
  let begun = 0;
  let from = 0;
  for (const [upTo] of [...listing.checkpoints].reverse()) {
    const checkpoint = options.knownCheckpoints?.get(upTo) ?? (await readCheckpoint(storage, name, upTo));
    if (!checkpoint) continue;
    options.knownCheckpoints?.set(upTo, checkpoint);
    const behind = new Set(checkpoint.behindBegin);
    for (const e of checkpoint.entries) out.push({ ...e, fenced: fencedBy(e, behind.has(e.seq)) });
    begun = checkpoint.begun;
    from = upTo;
    break;
  }
  if (options.known) for (const seq of [...options.known.keys()]) if (seq <= from) options.known.delete(seq);
  if (options.knownCheckpoints)
    for (const upTo of [...options.knownCheckpoints.keys()])
      if (upTo < from) options.knownCheckpoints.delete(upTo);
  for (const [seq, key] of listing.entries) {
    if (seq <= from) continue;
    const entry = options.known?.get(seq) ?? (await readEntry(storage, key));
    if (entry && options.known && !options.known.has(seq)) options.known.set(seq, entry);
    if (!entry) continue;
    if (entry.kind === "begin") begun = Math.max(begun, entry.epoch);
    out.push({ ...entry, fenced: fencedBy(entry, entry.epoch < begun) });
  }
  return out;
}

/** The lease was taken over by a later epoch: whatever its holder was about to commit is refused. */
export function leaseLost(name: string, epoch: number, by: number, where: string): BusyError {
  return new BusyError(
    "PAAS_BACKUP_LEASE_LOST",
    `the lease ${name} of epoch ${epoch} was taken over by epoch ${by} (this run paused or stalled past its lease): nothing more is committed`,
    {
      path: where,
      remediation:
        "Another host carries on with this work; run the command again later. If it happens often, raise the lease ttl above the longest pause.",
      stage: "lease",
      data: { epoch, takenBy: by },
    },
  );
}

export class Lease {
  private renewalSeq: number;
  private timer: ReturnType<typeof setInterval> | null = null;
  /** set when a renewal found the lease taken over: the holder must stop */
  lostTo: number | null = null;
  constructor(
    readonly storage: ObjectStorage & Required<Pick<ObjectStorage, "createOnly" | "serverTime">>,
    readonly name: string,
    readonly epoch: number,
    readonly ttlMs: number,
    /** the server's time of the taking: renewals are due well before acquiredAt + ttl */
    readonly acquiredAt: Date,
    /** a stale holder's epoch this lease took over (unreleased): commits must fence it out */
    readonly tookOver: number | null,
    /** the log's last entry when the lease was taken (or our own last commit) */
    private logHead: number,
  ) {
    this.renewalSeq = 0;
  }

  /**
   * Commit one entry: a create-only PUT at the log's next number. Refused (PAAS_BACKUP_LEASE_LOST)
   * once a later epoch has begun, even if this holder never noticed it paused.
   */
  async commit(data: Record<string, unknown>): Promise<LogEntry> {
    if (this.lostTo !== null) throw leaseLost(this.name, this.epoch, this.lostTo, this.storage.url);
    if (this.releasing)
      throw new BusyError(
        "PAAS_BACKUP_LEASE_LOST",
        `the lease ${this.name} of epoch ${this.epoch} was given back (the run was interrupted): nothing more is committed`,
        {
          path: this.storage.url,
          remediation: "Run the command again.",
          stage: "lease",
          data: { epoch: this.epoch },
        },
      );
    const commit = this.commitOnce(data);
    this.inFlight = commit.catch(() => undefined);
    return commit;
  }

  /** set by release(): no commit starts afterwards, and release waits for one in flight */
  private releasing = false;
  private inFlight: Promise<unknown> | null = null;

  private async commitOnce(data: Record<string, unknown>): Promise<LogEntry> {
    for (;;) {
      const listing = await listLog(this.storage, this.name);
      await this.refuseIfTakenOver(listing);
      const seq = headOf(listing) + 1;
      const entry: LogEntry = { seq, epoch: this.epoch, kind: "commit", lease: this.name, data };
      const made = await this.storage.createOnly(
        logKey(this.name, seq),
        Buffer.from(`${JSON.stringify(entry)}\n`),
      );
      if (!made.created) continue;
      // A holder that paused between its listing and its PUT for longer than the delete delay can
      // find the number free again: written by a later holder, compacted into a checkpoint and
      // removed. Its entry then sits below that checkpoint, where no reader looks. Only a holder
      // whose lease was taken over can be that late (compaction holds the lease), so the
      // checkpoint's begun fences it out; never is such a commit reported as made.
      const after = await listLog(this.storage, this.name);
      if (!after.checkpoints.some(([upTo]) => upTo >= seq)) {
        this.logHead = seq;
        return { ...entry, at: made.at.toISOString() };
      }
      await this.refuseIfTakenOver(after);
    }
  }

  /** PAAS_BACKUP_LEASE_LOST when a begin of a later epoch came after what this holder has seen. */
  private async refuseIfTakenOver(listing: LogListing): Promise<void> {
    for (const [upTo, key] of [...listing.checkpoints].reverse()) {
      if (upTo <= this.logHead) break;
      const checkpoint = await readCheckpoint(this.storage, this.name, upTo);
      if (!checkpoint) continue;
      if (checkpoint.begun > this.epoch) {
        this.lostTo = checkpoint.begun;
        throw leaseLost(this.name, this.epoch, checkpoint.begun, this.storage.locate(key));
      }
      break;
    }
    for (const [seq, key] of listing.entries) {
      if (seq <= this.logHead) continue;
      const entry = await readEntry(this.storage, key);
      if (entry?.kind === "begin" && entry.epoch > this.epoch) {
        this.lostTo = entry.epoch;
        throw leaseLost(this.name, this.epoch, entry.epoch, this.storage.locate(key));
      }
    }
  }

  /** A new create-only renewal key (never an overwrite); then the lease must still be ours. */
  async renew(): Promise<void> {
    if (this.lostTo !== null) throw leaseLost(this.name, this.epoch, this.lostTo, this.storage.url);
    for (;;) {
      this.renewalSeq++;
      const made: CreateOnlyResult = await this.storage.createOnly(
        `${epochKey(this.name, this.epoch)}.r${pad(this.renewalSeq, 6)}`,
        Buffer.from("{}\n"),
      );
      if (made.created) break;
    }
    const state = await readLeaseState(this.storage, this.name);
    if (state.epoch > this.epoch) {
      this.lostTo = state.epoch;
      throw leaseLost(this.name, this.epoch, state.epoch, this.storage.url);
    }
  }

  /** Renew every third of the ttl until released; a failed renewal is kept for the holder to see. */
  keepAlive(onLost?: (err: unknown) => void): void {
    if (this.timer) return;
    this.timer = setInterval(
      () => {
        this.renew().catch((err) => onLost?.(err));
      },
      Math.max(1000, Math.floor(this.ttlMs / 3)),
    );
    this.timer.unref?.();
  }

  /** Give the lease back; nobody can renew or commit under this epoch afterwards. */
  async release(): Promise<void> {
    // Ctrl-C may release while the holder's work is still running: a commit already sent lands
    // (or fails) before the lease is given back, and none starts after.
    this.releasing = true;
    await this.inFlight;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    if (this.lostTo !== null) return;
    await this.storage.createOnly(`${epochKey(this.name, this.epoch)}.released`, Buffer.from("{}\n"));
  }
}

/**
 * Take the lease, or say who holds it (PAAS_BACKUP_LOCKED, exit 6). Of hosts racing for a free
 * lease exactly one creates the next epoch's key. A held lease is free once its heartbeat is older
 * than the longer of its holder's ttl and ours, on the server's clock.
 */
export async function acquireLease(options: LeaseOptions): Promise<Lease> {
  const { storage, name } = options;
  needsConditionalWrites(storage);
  if (!/^[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+)*$/.test(name) || name.split("/").some((p) => /^\.+$/.test(p)))
    throw new UsageError("PAAS_BACKUP_INVALID_ARGUMENT", `bad lease name ${JSON.stringify(name)}`, {
      remediation: "Name a lease with letters, digits, '.', '_' and '-', in '/'-separated parts.",
      stage: "lease",
    });
  for (let attempt = 0; attempt < 8; attempt++) {
    const state = await readLeaseState(storage, name);
    let tookOver: number | null = null;
    if (state.epoch > 0 && !state.released) {
      const now = await storage.serverTime();
      const record = await readRecord(storage, epochKey(name, state.epoch));
      const ttl = Math.max(options.ttlMs, record?.ttlMs ?? 0);
      const age = state.heartbeat ? now.getTime() - state.heartbeat.getTime() : Infinity;
      if (age < ttl) {
        const who = record
          ? `${record.holder.command} (pid ${record.holder.pid} on ${record.holder.host})`
          : "another run";
        throw new BusyError(
          "PAAS_BACKUP_LOCKED",
          `${name} is leased by ${who}, epoch ${state.epoch}, renewed ${Math.round(age / 1000)} s ago (server time)`,
          {
            path: storage.locate(epochKey(name, state.epoch)),
            remediation: `Another host is doing this work; it is free again once released, or ${Math.ceil((ttl - age) / 1000)} s after its holder stops renewing.`,
            stage: "lease",
            data: { epoch: state.epoch, holder: record?.holder ?? null, ageMs: age, ttlMs: ttl },
          },
        );
      }
      tookOver = state.epoch;
    }
    const epoch = state.epoch + 1;
    const record: LeaseRecord = { holder: options.holder, ttlMs: options.ttlMs, run: randomUUID() };
    const made = await storage.createOnly(epochKey(name, epoch), Buffer.from(`${JSON.stringify(record)}\n`));
    if (!made.created) continue; // another host took this epoch first: judge again
    // Keys of epochs before the previous one are history nobody reads: drop them (best effort).
    for (const key of state.keys) {
      const m = EPOCH.exec(key.slice(`leases/${name}/`.length));
      if (m && Number(m[1]) < state.epoch) await storage.delete(key).catch(() => undefined);
    }
    // Taking over a holder that never released: a "begin" entry fences out whatever it commits later.
    let head = await logHeadOf(storage, name);
    if (tookOver !== null)
      for (;;) {
        const begin: LogEntry = { seq: head + 1, epoch, kind: "begin", lease: name, data: { tookOver } };
        const put = await storage.createOnly(
          logKey(name, head + 1),
          Buffer.from(`${JSON.stringify(begin)}\n`),
        );
        if (put.created) {
          head += 1;
          break;
        }
        head = await logHeadOf(storage, name);
      }
    return new Lease(storage, name, epoch, options.ttlMs, made.at, tookOver, head);
  }
  throw new BusyError("PAAS_BACKUP_LOCKED", `${name}: other hosts kept taking the lease first`, {
    path: storage.url,
    remediation: "Several hosts are starting the same work at once; run the command again.",
    stage: "lease",
  });
}

/**
 * Before a repository is shared by hosts, prove the server honours create-only writes: the second
 * create-only PUT of one key must fail. s3rver ignores the condition; Ceph RGW 16 ignores it on a
 * versioned or Object Lock bucket (it adds a version). Locks on such a server would only look safe.
 */
export async function probeConditionalWrites(storage: ObjectStorage): Promise<void> {
  needsConditionalWrites(storage);
  const key = `leases/.probe/${randomUUID()}`;
  const first = await storage.createOnly(key, Buffer.from("first\n"));
  const second = await storage.createOnly(key, Buffer.from("second\n"));
  await storage.delete(key).catch(() => undefined);
  if (first.created && !second.created) return;
  throw new SafetyError(
    "PAAS_BACKUP_NO_CONDITIONAL_WRITES",
    `${storage.url} ignores create-only writes (a second If-None-Match: * PUT of one key succeeded), so leases there would only look safe: refused as a shared repository`,
    {
      path: storage.url,
      remediation:
        "Use a bucket on a server that honours If-None-Match: * (AWS S3; Ceph RGW 16 only on a bucket without versioning or Object Lock), or keep the repository on one host's disk.",
      stage: "lease",
    },
  );
}
