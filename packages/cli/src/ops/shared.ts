import { randomBytes } from "node:crypto";
import { Readable } from "node:stream";
import { BusyError, isNotFound } from "@paas-backup/core/errors";
import { redactText } from "@paas-backup/core/redact";
import {
  acquireLease,
  backupRootStorage,
  appendHistoryLine,
  readHistoryLines,
  sha256Hex,
  writeHostStatus,
  type Lease,
  type ObjectStorage,
  type HostContextStatus,
  type HostStatus,
} from "@paas-backup/core/repository";
import type { TickOutcome } from "@paas-backup/core/tick";
import type { RetentionPolicy } from "@paas-backup/core/retention";
import type { RotationRecord, SharedRotation } from "@paas-backup/core/keys";
import type { ReportSources } from "@paas-backup/core/report";
import { offsiteRecordsIn } from "@paas-backup/core/offsite";
import { readObjectText } from "../host/shared-root.js";
import type { IncidentRecord } from "@paas-backup/core/records";
import type { SharedRoot } from "../runtime.js";
import type { Runtime } from "../runtime.js";

/**
 * The commands' side of a bucket shared by a fleet (issue 22), over core's leases, fenced log and
 * marks: which snapshots count, who may write a context, and what each host leaves in the bucket
 * (its status object, tick and prune history) instead of a local backup root.
 */

export function sharedOf(rt: Runtime): SharedRoot {
  if (!rt.shared) throw new Error("not connected to an s3:// backup root");
  return rt.shared;
}

/**
 * The verified-chain cache of an s3:// root: in the host's cache folder (core's default is the
 * repository, i.e. the bucket, which would cost a GET and a PUT per incremental tick and a HEAD per
 * listing of the context: measured 79 -> 84 requests for an incremental tick). Rebuilt by reading
 * the chain when the folder is lost.
 */
export function hostChainCache(rt: Runtime): ObjectStorage {
  return backupRootStorage(rt.fs, sharedOf(rt).cacheDir);
}

/** What names the repository in messages: the bucket URL, or the backup root folder. */
export function rootLabel(rt: Runtime): string {
  return rt.shared?.url ?? rt.backupRoot;
}

export { committedView } from "../host/shared-root.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Run `work` holding a lease of the bucket (`context/<name>` or `maintenance`), renewed while it
 * runs; another host's live lease is waited for up to lockTimeoutSeconds, as a local lock is.
 */
export async function withLease<T>(
  rt: Runtime,
  name: string,
  command: string,
  work: (lease: Lease) => Promise<T>,
  /** false: another host's live lease is not waited for (PAAS_BACKUP_LOCKED at once) */
  wait = true,
): Promise<T> {
  const shared = sharedOf(rt);
  const deadline = Date.now() + (wait ? rt.config.lockTimeoutSeconds * 1000 : 0);
  let lease: Lease;
  let told = false;
  for (;;) {
    try {
      lease = await acquireLease({
        storage: shared.storage,
        name,
        holder: { host: shared.host, pid: process.pid, command },
        ttlMs: shared.leaseTtlMs,
      });
      break;
    } catch (err) {
      if (!(err instanceof BusyError) || err.code !== "PAAS_BACKUP_LOCKED" || Date.now() >= deadline)
        throw err;
      if (!told) {
        told = true;
        process.stderr.write(redactText(`paas-backup ${command}: waiting: ${err.message}\n`));
      }
      await sleep(250 + Math.random() * 500);
    }
  }
  let lost: unknown = null;
  lease.keepAlive((err) => (lost ??= err));
  // Ctrl-C or SIGTERM gives the lease back (after a commit in flight) instead of leaving every
  // other host to wait out its ttl; no commit starts after it.
  const { exitOnInterrupt, onInterrupt } = await import("../host/interrupt.js");
  exitOnInterrupt(command);
  const forget = onInterrupt(() => lease.release());
  try {
    const result = await work(lease);
    if (lost) throw lost;
    return result;
  } finally {
    forget();
    await lease.release().catch(() => undefined);
  }
}

/** A snapshot committed through its context's lease: from now on every host lists it. */
export async function commitSnapshot(
  rt: Runtime,
  lease: Lease,
  snapshot: { id: string; sha256: string; kind: string },
): Promise<void> {
  await lease.commit({
    snapshot: snapshot.id,
    sha256: snapshot.sha256,
    kind: snapshot.kind,
    host: sharedOf(rt).host,
  });
}

async function readJson<T>(storage: ObjectStorage, key: string): Promise<T | null> {
  try {
    const chunks: Buffer[] = [];
    for await (const c of await storage.get(key)) chunks.push(c as Buffer);
    return JSON.parse(Buffer.concat(chunks).toString("utf8")) as T;
  } catch (err) {
    // not there yet, or torn: this run's outcomes are the whole status
    if (isNotFound(err) || err instanceof SyntaxError) return null;
    throw err;
  }
}

/**
 * History in the bucket, never on a host: core's history through the bucket's storage, one small
 * object per line, `history/<context>/<stream>/<time>-<host>-<nonce>.json` (an object store has no
 * append), so every host's ticks and every prune's deletions are read back in time order by listing.
 */
export async function appendSharedHistory(
  rt: Runtime,
  context: string,
  stream: "ticks" | "prune",
  line: { at: string } & Record<string, unknown>,
): Promise<void> {
  const shared = sharedOf(rt);
  await appendHistoryLine(shared.storage, context, stream, line, { host: shared.host });
}

/** Every line of a context's stream in the bucket, oldest first; `torn` counts objects that do not parse. */
export async function readSharedHistory<T>(
  rt: Runtime,
  context: string,
  stream: "ticks" | "prune",
): Promise<{ lines: T[]; torn: number }> {
  const read = await readHistoryLines(sharedOf(rt).storage, context, stream);
  return read as unknown as { lines: T[]; torn: number };
}

/**
 * This host's status object after a tick: the outcomes of this run merged into what the host
 * reported before (a tick of one context keeps the others), written once per run.
 */
export async function writeTickStatus(rt: Runtime, outcomes: TickOutcome[]): Promise<void> {
  const shared = sharedOf(rt);
  // core's writeHostStatus key: only this host writes it
  const before = await readJson<HostStatus>(shared.storage, `status/${shared.host}.json`);
  const contexts = new Map<string, HostContextStatus>((before?.contexts ?? []).map((c) => [c.context, c]));
  for (const o of outcomes) {
    const previous = contexts.get(o.context);
    contexts.set(o.context, {
      context: o.context,
      ok: o.ok,
      lastSnapshot: o.snapshot
        ? { id: o.snapshot.id, kind: o.snapshot.kind }
        : (previous?.lastSnapshot ?? null),
      error: o.error ? { code: o.error.code, message: o.error.message } : null,
    });
  }
  const status: HostStatus = {
    host: shared.host,
    reportedAt: rt.clock().toISOString(),
    contexts: [...contexts.values()].sort((a, b) => a.context.localeCompare(b.context)),
  };
  await writeHostStatus(shared.storage, JSON.parse(redactText(JSON.stringify(status))) as HostStatus);
}

/**
 * Records a command wrote into this host's cache of the root (a restore's incident record, event
 * lines it kept aside): moved into the bucket, `records/<context>/<folder>/<name>`, so they are
 * evidence every host can read and the cache stays something the bucket can rebuild.
 */
export async function moveRecordsToBucket(rt: Runtime, context: string): Promise<Map<string, string>> {
  const shared = sharedOf(rt);
  /** local path -> where it is now */
  const moved = new Map<string, string>();
  const { readdir, readFile, rm } = await import("node:fs/promises");
  const { join } = await import("node:path");
  for (const folder of ["incidents", "drills"]) {
    const dir = join(shared.cacheDir, context, folder);
    const names = await readdir(dir).catch(() => [] as string[]);
    for (const name of names.filter((n) => !n.startsWith("."))) {
      const body = await readFile(join(dir, name));
      const key = `records/${context}/${folder}/${name}`;
      await shared.storage.put(key, Readable.from([body]), { sha256: sha256Hex(body), size: body.length });
      await rm(join(dir, name), { force: true });
      moved.set(join(dir, name), shared.storage.locate(key));
    }
  }
  return moved;
}

/**
 * A report's evidence in an s3:// root: the committed snapshots, the tick and prune history every
 * host appended, and the incident and drill records restores moved there; "all" is every context
 * the hosts report.
 */
export async function sharedReportSources(rt: Runtime): Promise<ReportSources> {
  const shared = sharedOf(rt);
  const { committedView } = await import("../host/shared-root.js");
  const { openRepository } = await import("@paas-backup/core/repository");
  return {
    snapshots: async (context) => openRepository(await committedView(shared, context)).snapshots(context),
    history: (context, stream) => readSharedHistory(rt, context, stream),
    records: (context, folder) => sharedRecords(rt, context, folder),
    contexts: async () => (await import("./fleet.js")).sharedFleetContexts(rt),
    offsiteRecords: offsiteRecordsIn(shared.storage),
    // paas-backup.signing.json is the bucket's: a context whose snapshots are all gone still has
    // its unsigned records judged
    repository: shared.storage,
    rotations: (context) => sharedRotationRecords(rt, context),
  };
}

/** keys rotate's records of a context in the bucket (rotation-records/<context>/), oldest first; one that does not parse is left out. */
export async function sharedRotationRecords(rt: Runtime, context: string): Promise<RotationRecord[]> {
  const storage = sharedOf(rt).storage;
  const prefix = `${ROTATION_RECORDS}/${context}/`;
  const keys: string[] = [];
  for await (const o of storage.list(prefix, { shallow: true, keysOnly: true }))
    if (RECORD_NAME.test(o.key.slice(prefix.length))) keys.push(o.key);
  const out: RotationRecord[] = [];
  for (const key of keys.sort()) {
    const record = await readJson<RotationRecord>(storage, key);
    if (record?.schema === "paas-backup/rotation@1") out.push(record);
  }
  return out;
}

/**
 * A context's incident or drill records in an s3:// root (`records/<context>/<folder>/`), oldest
 * name first, each named by its URL; `signed` when a signature object sits beside it.
 */
export async function sharedRecords(
  rt: Runtime,
  context: string,
  folder: "incidents" | "drills",
): Promise<{ file: string; record: IncidentRecord; signed: boolean }[]> {
  const storage = sharedOf(rt).storage;
  const out: { file: string; record: IncidentRecord; signed: boolean }[] = [];
  const prefix = `records/${context}/${folder}/`;
  const keys: string[] = [];
  const all = new Set<string>();
  for await (const o of storage.list(prefix, { shallow: true, keysOnly: true })) {
    all.add(o.key);
    if (o.key.endsWith(".json")) keys.push(o.key);
  }
  for (const key of keys.sort()) {
    const record = await readJson<IncidentRecord>(storage, key);
    // a record that does not parse is skipped, as in a folder: the others still tell the story
    if (record) out.push({ file: storage.locate(key), record, signed: all.has(`${key}.sig`) });
  }
  return out;
}

/**
 * Every context of an s3:// root for drill status: those the fleet's hosts report, and those that
 * hold records in the bucket (a context whose host was retired still has its drills).
 */
export async function sharedRecordContexts(rt: Runtime): Promise<string[]> {
  const storage = sharedOf(rt).storage;
  const contexts = new Set(await (await import("./fleet.js")).sharedFleetContexts(rt));
  // records are few (a drill a quarter, an incident per restore): one listing of them all
  for await (const o of storage.list("records/", { keysOnly: true })) {
    const m = /^records\/([^/]+)\/(?:incidents|drills)\/[^/]+$/.exec(o.key);
    if (m) contexts.add(m[1]!);
  }
  return [...contexts].sort();
}

/**
 * What a shared prune sweeps while it holds the context's lease (so no writer of the context is
 * running): staged uploads an interrupted run left, and the objects of snapshots that were never
 * committed (a run that lost its lease, or died between its artifact and its commit). Only those
 * older than the delete delay (sharedRoot.deleteAfterSeconds) on the server's clock: no writer of
 * the context runs while its lease is held here, so nothing younger is in flight either, and a
 * paused writer's late upload (it cannot commit) waits its turn like a mark.
 */
export async function sweepShared(rt: Runtime, context: string): Promise<string[]> {
  const shared = sharedOf(rt);
  const { committedLog, snapshotIdOfKey } = await import("../host/shared-root.js");
  const { relocationMap, RELOCATIONS_FOLDER } = await import("@paas-backup/core/repository");
  const storage = shared.storage;
  const cutoff = new Date((await storage.serverTime!()).getTime() - shared.deleteAfterMs);
  const swept = await storage.sweepStaged(`${context}/`, cutoff);
  const log = await committedLog(shared, context);
  const committed = log.committed;
  // keys rotate's relocations: what an entry replaced goes once the entry is older than the delay
  // (a reader that listed before it reads the old bytes to the end); a rotation's object no
  // committed entry names (a run killed before its commit and not resumed, or fenced out) goes once
  // it is itself that old
  const { current, superseded } = relocationMap(log.relocations);
  const live = new Set(current.values());
  const replacedBefore = new Map<string, number>();
  for (const s of superseded)
    replacedBefore.set(s.key, Math.max(replacedBefore.get(s.key) ?? 0, Date.parse(s.at)));
  const replacedLongAgo = (key: string) =>
    replacedBefore.has(key) && replacedBefore.get(key)! < cutoff.getTime();
  for await (const o of storage.list(`${context}/`, { shallow: true, keysOnly: true })) {
    if (replacedLongAgo(o.key)) {
      await storage.delete(o.key);
      swept.push(o.key);
      continue;
    }
    const id = snapshotIdOfKey(context, o.key);
    if (id === null || committed.has(id) || !o.lastModified || o.lastModified >= cutoff) continue;
    await storage.delete(o.key);
    swept.push(o.key);
  }
  for await (const o of storage.list(`${context}/${RELOCATIONS_FOLDER}/`, { keysOnly: true })) {
    if (live.has(o.key)) continue;
    const due = replacedBefore.has(o.key)
      ? replacedLongAgo(o.key)
      : o.lastModified !== null && o.lastModified < cutoff;
    if (!due) continue;
    await storage.delete(o.key);
    swept.push(o.key);
  }
  return swept.map((key) => key.slice(context.length + 1)).sort();
}

/**
 * Where an offsite step keeps the push records: on an s3:// root the bucket's
 * `offsite-records/<context>/<target>.json` (core's offsiteRecordsIn), read and written there
 * directly by core, so every host knows what any host pushed, confirmed or removed by the target's
 * retention; on a folder root, core's default (the backup root). Writers of a context's records
 * hold its lease (push, prune); verify's rotation state is last writer wins, and a lost
 * confirmation only makes the next push re-read.
 */
export function offsiteRecordsOf(rt: Runtime): { records?: ObjectStorage } {
  return rt.shared ? { records: offsiteRecordsIn(rt.shared.storage) } : {};
}

/**
 * Retention of one context of an s3:// root, under the context's lease (the caller holds the
 * maintenance lease): what retention drops is marked, marks older than the delete delay are
 * removed (each written to the bucket's prune history first), and uploads never committed are
 * swept. prune and tick both run this.
 */
export async function pruneSharedContext(
  rt: Runtime,
  context: string,
  lease: Lease,
  policy: Partial<RetentionPolicy>,
  keepTags: readonly string[],
) {
  const shared = sharedOf(rt);
  const { pruneShared } = await import("@paas-backup/core/retention");
  const { committedView } = await import("../host/shared-root.js");
  return {
    ...(await pruneShared({
      fs: rt.fs,
      scratch: rt.backupRoot,
      // retention judges the committed snapshots only (marked ones stay, prune acts on its marks)
      storage: await committedView(shared, context, "show"),
      lease,
      context,
      policy,
      keepTags,
      clock: rt.clock,
      deleteAfterMs: shared.deleteAfterMs,
      beforeRemove: ({ id, kind, reason }) =>
        appendSharedHistory(rt, context, "prune", {
          schema: "paas-backup/history-prune@1",
          at: rt.clock().toISOString(),
          context,
          id,
          kind,
          reason,
          where: shared.url,
        }),
    })),
    swept: await sweepShared(rt, context),
    log: await compactContextLog(rt, context, lease),
  };
}

/**
 * Compaction of a context's commit log in the bucket (core's compactLog), under the context's
 * lease: once sharedRoot.logCheckpointEvery entries follow the last checkpoint, a new one carries
 * what is still in effect; a commit drops out once no object of its snapshot is left, where it was
 * or where a relocation moved it (prune removed it); every entry of another kind is carried as it is. Entries a checkpoint covers are removed when
 * it is deleteAfterSeconds old.
 */
export async function compactContextLog(
  rt: Runtime,
  context: string,
  lease: Lease,
): Promise<{ checkpoint: number | null; removed: number }> {
  const shared = sharedOf(rt);
  const { compactLog } = await import("@paas-backup/core/repository");
  const { committedView, snapshotIdOfKey } = await import("../host/shared-root.js");
  let present: Set<string> | null = null;
  const done = await compactLog({
    lease,
    minEntries: shared.logCheckpointEvery,
    deleteAfterMs: shared.deleteAfterMs,
    obsolete: async (entry) => {
      if (typeof entry.data.snapshot !== "string") return false;
      if (!present) {
        present = new Set<string>();
        // through the committed view, which follows keys rotate's relocations: a rotated snapshot
        // whose original objects the sweep removed lives on under its new keys, and stays
        const view = await committedView(shared, context, "show");
        for await (const o of view.list(`${context}/`, { shallow: true, keysOnly: true })) {
          const id = snapshotIdOfKey(context, o.key);
          if (id !== null) present.add(id);
        }
      }
      return !present.has(entry.data.snapshot);
    },
  });
  return { checkpoint: done.checkpoint, removed: done.removed.length };
}

/** What a tick's maintenance did for one context of an s3:// root. */
export interface TickMaintenance {
  /** false: another host held the maintenance lease (it is doing this work), or the context failed */
  ran: boolean;
  marked: string[];
  removed: string[];
  waiting: { id: string; dueAt: string }[];
  swept: string[];
  /** the context's commit log: the entry a checkpoint written now covers up to (null: none due), entries and checkpoints removed */
  log: { checkpoint: number | null; removed: number };
  /** each configured target's retention: the copies removed */
  offsite: { target: string; removed: string[]; heldByLock: string[] }[];
  error: { code: string; message: string; remediation: string } | null;
}

/**
 * A tick's maintenance on an s3:// root, after its snapshots: under the bucket's maintenance lease
 * (not waited for: a host holding it is doing this work; any host takes it over once it lapses),
 * each context's retention in two phases (pruneSharedContext) and each offsite target's retention
 * (its push records fetched from and put back to the bucket), under the context's lease. A
 * context's failure is its entry's `error`; the snapshots it took stand, and the next tick of any
 * host tries again.
 */
export async function tickMaintenance(
  rt: Runtime,
  contexts: readonly string[],
  options: { policy: Partial<RetentionPolicy>; keepTags: readonly string[] },
): Promise<Map<string, TickMaintenance>> {
  const out = new Map<string, TickMaintenance>();
  if (contexts.length === 0) return out;
  const { resolveTargets } = await import("../options/targets.js");
  const { pruneOffsite } = await import("@paas-backup/core/offsite");
  const { withContext } = await import("@paas-backup/core/context");
  const { sessionOptions } = await import("../options/lock.js");
  const { PaasBackupError } = await import("@paas-backup/core/errors");
  const targets = await resolveTargets(rt, {}, false);
  const skipped = (error: TickMaintenance["error"]): TickMaintenance => ({
    ran: false,
    marked: [],
    removed: [],
    waiting: [],
    swept: [],
    log: { checkpoint: null, removed: 0 },
    offsite: [],
    error,
  });
  try {
    await withLease(
      rt,
      "maintenance",
      "tick",
      async () => {
        for (const context of contexts) {
          try {
            const done = await withContext(sessionOptions(rt, context, "tick"), () =>
              withLease(rt, `context/${context}`, "tick", async (lease) => {
                const r = await pruneSharedContext(rt, context, lease, options.policy, options.keepTags);
                const offsite = [];
                for (const target of targets) {
                  const p = await pruneOffsite({
                    fs: rt.fs,
                    backupRoot: rt.backupRoot,
                    ...offsiteRecordsOf(rt),
                    context,
                    target,
                    clock: rt.clock,
                  });
                  offsite.push({ target: target.storage.url, removed: p.remove, heldByLock: p.heldByLock });
                }
                return { r, offsite };
              }),
            );
            out.set(context, {
              ran: true,
              marked: done.r.marked,
              removed: done.r.removed,
              waiting: done.r.waiting,
              swept: done.r.swept,
              log: done.r.log,
              offsite: done.offsite,
              error: null,
            });
          } catch (err) {
            if (!(err instanceof PaasBackupError)) throw err;
            out.set(context, skipped({ code: err.code, message: err.message, remediation: err.remediation }));
          }
        }
      },
      false,
    );
  } catch (err) {
    if (!(err instanceof BusyError)) throw err;
    const e = {
      code: err.code,
      message: `maintenance not run: ${err.message}`,
      remediation: err.remediation,
    };
    for (const context of contexts) if (!out.has(context)) out.set(context, skipped(e));
  }
  return out;
}

/** Where an s3:// root keeps the rotation records of keys rotate: `rotation-records/<context>/<id>.json`. */
const ROTATION_RECORDS = "rotation-records";
const RECORD_NAME = /^[A-Za-z0-9_-][A-Za-z0-9._-]*\.json$/;

function parses(text: string): boolean {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

/**
 * keys rotate of one context of an s3:// root: under the context's lease (no snapshot, prune or
 * push of it runs meanwhile, and each relocation is committed with the lease's epoch), with the
 * context's rotation records fetched from the bucket into the host's cache and put back after,
 * however it ended (its offsite records core reads and writes in the bucket itself). A record is pulled when the cache has none or the
 * bucket's is finished: a host killed mid-rotation keeps its newer journal, and a step whose
 * relocation is committed is done whatever a record says (the log is the truth).
 */
export async function withSharedRotation<T extends { record: string; rotation: { id: string } }>(
  rt: Runtime,
  context: string,
  rotate: (shared: SharedRotation) => Promise<T>,
): Promise<T> {
  const shared = sharedOf(rt);
  const { storage, cacheDir } = shared;
  const { committedLog, committedView } = await import("../host/shared-root.js");
  const { mkdir, readdir, readFile, rename, writeFile } = await import("node:fs/promises");
  const { join } = await import("node:path");
  const dir = join(cacheDir, context, "rotations");
  const prefix = `${ROTATION_RECORDS}/${context}/`;
  const pulled = new Map<string, string>();
  for await (const o of storage.list(prefix, { shallow: true, keysOnly: true })) {
    const name = o.key.slice(prefix.length);
    if (!RECORD_NAME.test(name)) continue;
    const text = await readObjectText(storage, o.key);
    if (text === null || !parses(text)) continue;
    const local = await readFile(join(dir, name), "utf8").catch(() => null);
    const finished = (JSON.parse(text) as { finishedAt?: string | null }).finishedAt;
    if (local !== null && !finished) {
      pulled.set(name, text);
      continue;
    }
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const staged = join(dir, `.${name}.${randomBytes(4).toString("hex")}.pull`);
    await writeFile(staged, text, { mode: 0o600 });
    await rename(staged, join(dir, name));
    pulled.set(name, text);
  }
  const putBack = async () => {
    const names = (await readdir(dir).catch(() => [] as string[])).filter((n) => RECORD_NAME.test(n));
    for (const name of names) {
      const text = await readFile(join(dir, name), "utf8");
      if (pulled.get(name) === text) continue;
      const body = Buffer.from(text);
      await storage.put(`${prefix}${name}`, Readable.from([body]), {
        sha256: sha256Hex(body),
        size: body.length,
      });
    }
  };
  // the offsite records are the bucket's, read and written there by core (offsiteRecordsOf, passed by keys rotate)
  const result = await withLease(rt, `context/${context}`, "keys rotate", async (lease) => {
    let result: T;
    try {
      result = await rotate({
        storage,
        view: () => committedView(shared, context),
        relocations: async () => (await committedLog(shared, context)).relocations,
        commit: async (relocation) => {
          await lease.commit({ relocation, host: shared.host });
        },
      });
    } catch (err) {
      // the journal so far goes to the bucket too, so another host can see where it stopped
      await putBack().catch(() => undefined);
      throw err;
    }
    await putBack();
    return result;
  });
  return { ...result, record: storage.locate(`${prefix}${result.rotation.id}.json`) };
}
