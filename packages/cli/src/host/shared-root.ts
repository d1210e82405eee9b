import { randomBytes } from "node:crypto";
import {
  appendFileSync,
  chmodSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { homedir, hostname, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { PaasBackupError, UsageError, isNotFound } from "@paas-backup/core/errors";
import {
  DEFAULT_HOST_STALE_AFTER_MS,
  DEFAULT_LEASE_TTL_MS,
  REPOSITORY_FILE,
  parseRepositoryIdentity,
  openTarget,
  probeConditionalWrites,
  readFencedLog,
  registerStorageDriver,
  relocatedView,
  relocationMap,
  relocationsIn,
  type Relocation,
  type LogCheckpoint,
  type LogEntry,
  type ObjectStorage,
  type RepositoryIdentity,
} from "@paas-backup/core/repository";
import { DEFAULT_DELETE_AFTER_MS, listMarks } from "@paas-backup/core/retention";
import type { RemoteRootSettings, Runtime, SharedRoot } from "../runtime.js";

export type { SharedRoot } from "../runtime.js";

// The S3 driver (and the AWS SDK under it) loads only when an s3:// root is opened.
registerStorageDriver("s3", { load: async () => (await import("@paas-backup/s3")).storageDriver });

/** An endpoint as it may be shown: any user:password@ part dropped. */
export function shownEndpoint(endpoint: string | undefined): string {
  return endpoint ? endpoint.replace(/^([a-z0-9+.-]+:\/\/)[^/@]*@/i, "$1") : "AWS S3 (no --root-endpoint)";
}

/**
 * A storage failure on the root names the root's own settings: a wrong endpoint, region or
 * credentials is the usual cause, and the offsite --endpoint is not the flag to fix.
 */
export function rootUnreachable(err: unknown, settings: RemoteRootSettings): unknown {
  if (!(err instanceof PaasBackupError) || err.code !== "PAAS_BACKUP_STORAGE_FAILED") return err;
  return new PaasBackupError(
    err.code,
    err.exitCode,
    `the backup root ${settings.url} (endpoint ${shownEndpoint(settings.endpoint)}) cannot be used: ${err.message}`,
    {
      path: settings.url,
      remediation: `${err.remediation
        .replace(/--endpoint\b/g, "--root-endpoint")
        .replace(/--region\b/g, "--root-region")
        .replace(
          /--path-style\b/g,
          "--root-path-style",
        )} The root's connection is --root-endpoint, --root-region and --root-path-style (or PAAS_BACKUP_ROOT_ENDPOINT, PAAS_BACKUP_ROOT_REGION, PAAS_BACKUP_ROOT_PATH_STYLE, or rootEndpoint, rootRegion, rootPathStyle in the config file); credentials come from the AWS chain (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or an instance role).`,
      stage: "connect",
      cause: err,
    },
  );
}

/** A small object of the bucket as text, or null when there is none. */
export async function readObjectText(storage: ObjectStorage, key: string): Promise<string | null> {
  try {
    const chunks: Buffer[] = [];
    for await (const c of await storage.get(key)) chunks.push(c as Buffer);
    return Buffer.concat(chunks).toString("utf8");
  } catch (err) {
    if (isNotFound(err)) return null;
    throw err;
  }
}

function cacheBase(env: NodeJS.ProcessEnv): string {
  const xdg = env.XDG_CACHE_HOME?.trim();
  // XDG: a relative XDG_CACHE_HOME is invalid and is ignored
  return join(xdg && xdg.startsWith("/") ? xdg : resolve(env.HOME ?? homedir(), ".cache"), "paas-backup");
}

/** A private folder: made 0700, and made 0700 again if someone loosened it. */
function privateDir(path: string): void {
  mkdirSync(path, { recursive: true, mode: 0o700 });
  chmodSync(path, 0o700);
}

function writePrivate(path: string, text: string): void {
  const staged = `${path}.${randomBytes(4).toString("hex")}.tmp`;
  writeFileSync(staged, text, { mode: 0o600 });
  renameSync(staged, path);
}

const PROBE_FILE = "probe.json";

function probedBefore(cacheDir: string, url: string): boolean {
  try {
    const p = JSON.parse(readFileSync(join(cacheDir, PROBE_FILE), "utf8")) as { url?: string; ok?: boolean };
    return p.ok === true && p.url === url;
  } catch {
    return false;
  }
}

function hostName(rt: Runtime): string {
  const name = rt.env.PAAS_BACKUP_HOST?.trim() || rt.config.sharedRoot?.host || hostname().split(".")[0]!;
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$/.test(name))
    throw new UsageError(
      "PAAS_BACKUP_INVALID_ARGUMENT",
      `host name ${JSON.stringify(name)} cannot name this host in the bucket`,
      {
        remediation:
          "Set PAAS_BACKUP_HOST (or sharedRoot.host in the config file) to letters, digits, '.', '_' and '-'.",
        stage: "arguments",
      },
    );
  return name;
}

/**
 * Connect to the s3:// root: its identity from the bucket (made there, create-only, by the first
 * command that writes), the host's cache named by it, and for commands that take leases the probe
 * for create-only writes, once per bucket (the cache remembers it passed).
 */
export async function connectSharedRoot(
  rt: Runtime,
  mode: "read" | "write" | "dry-run",
): Promise<SharedRoot> {
  const settings = rt.remoteRoot!;
  const host = hostName(rt);
  try {
    const storage = await openTarget(settings.url, {
      fs: rt.fs,
      endpoint: settings.endpoint,
      region: settings.region,
      pathStyle: settings.pathStyle,
      ...(rt.env.PAAS_BACKUP_S3_PART_SIZE ? { partSize: Number(rt.env.PAAS_BACKUP_S3_PART_SIZE) } : {}),
      ...(rt.env.PAAS_BACKUP_S3_REQUEST_LOG
        ? { onRequest: countRequests(rt.env.PAAS_BACKUP_S3_REQUEST_LOG) }
        : {}),
    });
    let identity = parseRepositoryIdentity(await readObjectText(storage, REPOSITORY_FILE));
    let probed = false;
    if (!identity && mode === "dry-run") {
      // A dry run of a command that writes (snapshot, prune) on a bucket with no repository yet:
      // nothing is made, in the bucket or in a cache named after it; a private scratch folder
      // stands in for the cache and goes when the process ends.
      const scratch = mkdtempSync(join(tmpdir(), "paas-backup-dry-run-"));
      process.once("exit", () => rmSync(scratch, { recursive: true, force: true }));
      return sharedRootOf(rt, settings.url, storage, "0000000000000000", scratch, host);
    }
    if (!identity) {
      if (mode === "read")
        throw new UsageError(
          "PAAS_BACKUP_NOT_A_REPOSITORY",
          `${settings.url} holds no paas-backup repository (no ${REPOSITORY_FILE} there)`,
          {
            path: settings.url,
            remediation:
              "Check the bucket and prefix of --backup-root and the root's endpoint; a new repository is made by the first snapshot or tick.",
            stage: "connect",
          },
        );
      // Refuse a bucket whose create-only writes are not honoured before anything is made there.
      await probeConditionalWrites(storage);
      probed = true;
      const made: RepositoryIdentity = {
        schema: "paas-backup/repository@1",
        id: randomBytes(8).toString("hex"),
        createdAt: rt.clock().toISOString(),
        host,
      };
      const created = await storage.createOnly!(
        REPOSITORY_FILE,
        Buffer.from(`${JSON.stringify(made, null, 2)}\n`),
      );
      // Another host made it first: its identity is the one.
      identity = created.created
        ? made
        : parseRepositoryIdentity(await readObjectText(storage, REPOSITORY_FILE));
      if (!identity)
        throw new UsageError(
          "PAAS_BACKUP_REPOSITORY_ID_INVALID",
          `${storage.locate(REPOSITORY_FILE)} does not hold a repository identity`,
          {
            path: storage.locate(REPOSITORY_FILE),
            remediation: "Something else wrote that key: move it aside (a new identity is then made).",
            stage: "connect",
          },
        );
    }
    const base = cacheBase(rt.env);
    const cacheDir = join(base, identity.id);
    privateDir(base);
    privateDir(cacheDir);
    // The identity beside the cache's contents: offsite keys (pushOffsite) read it from the "backup root".
    writePrivate(join(cacheDir, REPOSITORY_FILE), `${JSON.stringify(identity, null, 2)}\n`);
    if (mode === "write" && !probed && !probedBefore(cacheDir, settings.url)) {
      await probeConditionalWrites(storage);
      probed = true;
    }
    if (probed)
      writePrivate(
        join(cacheDir, PROBE_FILE),
        `${JSON.stringify({ url: settings.url, ok: true, at: rt.clock().toISOString() })}\n`,
      );
    return sharedRootOf(rt, settings.url, storage, identity.id, cacheDir, host);
  } catch (err) {
    throw rootUnreachable(err, settings);
  }
}

function sharedRootOf(
  rt: Runtime,
  url: string,
  storage: ObjectStorage,
  id: string,
  cacheDir: string,
  host: string,
): SharedRoot {
  const shared = rt.config.sharedRoot;
  return {
    url,
    storage,
    id,
    cacheDir,
    host,
    leaseTtlMs: (shared?.leaseSeconds ?? DEFAULT_LEASE_TTL_MS / 1000) * 1000,
    deleteAfterMs: (shared?.deleteAfterSeconds ?? DEFAULT_DELETE_AFTER_MS / 1000) * 1000,
    staleAfterMs: (shared?.hostStaleAfterSeconds ?? DEFAULT_HOST_STALE_AFTER_MS / 1000) * 1000,
    logCheckpointEvery: shared?.logCheckpointEvery ?? DEFAULT_LOG_CHECKPOINT_EVERY,
  };
}

/** A day of hourly ticks: a checkpoint then costs one PUT a day per context, and a cold read at most 24 GETs of entries. */
export const DEFAULT_LOG_CHECKPOINT_EVERY = 24;

/** The commands an s3:// root works with, for the refusal of the others. */
export function refuseRemoteRoot(command: string, url: string, supported: string[]): UsageError {
  return new UsageError(
    "PAAS_BACKUP_REMOTE_ROOT_UNSUPPORTED",
    `${command} does not work with an s3:// backup root (${url}) yet`,
    {
      path: url,
      remediation: `With an s3:// backup root use ${supported.join(", ")}; for ${command}, run it against a backup root folder.`,
      stage: "arguments",
    },
  );
}

/**
 * The context's snapshots as every reader of a shared bucket must see them: those committed
 * through the context's lease by a commit no later epoch fenced out, less those prune marked for
 * deletion, each read where its newest committed relocation says (a snapshot `keys rotate`
 * re-encrypted: core's relocatedView). A writer that paused past its lease may have made an
 * artifact visible whose commit was refused; it is never listed, never a parent, never restored.
 * get and head still reach everything (a restore that listed a snapshot before its mark reads it
 * to the end).
 */
export async function committedView(
  shared: SharedRoot,
  context: string,
  /** "show": marked snapshots stay listed (prune itself acts on its marks) */
  marks: "hide" | "show" = "hide",
): Promise<ObjectStorage> {
  const log = await committedLog(shared, context);
  const committed = log.committed;
  const storage = relocatedView(shared.storage, relocationMap(log.relocations).current);
  const marked =
    marks === "hide" ? new Set((await listMarks(shared.storage, context)).keys()) : new Set<string>();
  const hidden = (key: string) => {
    const id = snapshotIdOfKey(context, key);
    return id !== null && (!committed.has(id) || marked.has(id));
  };
  return new Proxy(storage, {
    get(target, prop, receiver) {
      if (prop === "list")
        return async function* (prefix: string, options?: { shallow?: boolean; keysOnly?: boolean }) {
          for await (const o of target.list(prefix, options)) if (!hidden(o.key)) yield o;
        };
      const value = Reflect.get(target, prop, receiver) as unknown;
      return typeof value === "function" ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
}

/** The ids committed through the context's lease by a commit no later epoch fenced out. */
export async function committedIds(shared: SharedRoot, context: string): Promise<Set<string>> {
  return (await committedLog(shared, context)).committed;
}

/**
 * The context's fenced log as readers use it: the committed snapshot ids, and the committed
 * relocations (keys rotate), oldest first.
 */
export async function committedLog(
  shared: SharedRoot,
  context: string,
): Promise<{ committed: Set<string>; relocations: Relocation[] }> {
  // The log's entries and checkpoints are create-only and never change: the cache keeps those
  // read, so a tick fetches only what was written since (one LIST page per 1000 entries, not one
  // GET each), and an entry a checkpoint now covers leaves the cache with it.
  const cacheFile = join(shared.cacheDir, "log", `${context}.json`);
  const known = new Map<number, LogEntry>();
  const knownCheckpoints = new Map<number, LogCheckpoint>();
  try {
    const cached = JSON.parse(readFileSync(cacheFile, "utf8")) as
      LogEntry[] | { entries: LogEntry[]; checkpoints: LogCheckpoint[] };
    // an array: the cache of a version before checkpoints
    const entries = Array.isArray(cached) ? cached : cached.entries;
    for (const e of entries)
      if (typeof e.seq === "number" && typeof e.epoch === "number") known.set(e.seq, e);
    for (const c of Array.isArray(cached) ? [] : cached.checkpoints)
      if (typeof c.upTo === "number" && Array.isArray(c.entries)) knownCheckpoints.set(c.upTo, c);
  } catch {
    // no cache yet, or a torn one: read the log from the bucket
  }
  const before = JSON.stringify([[...known.keys()], [...knownCheckpoints.keys()]]);
  const committed = new Set<string>();
  const log = await readFencedLog(shared.storage, `context/${context}`, { known, knownCheckpoints });
  for (const entry of log)
    if (entry.kind === "commit" && !entry.fenced && typeof entry.data.snapshot === "string")
      committed.add(entry.data.snapshot);
  if (JSON.stringify([[...known.keys()], [...knownCheckpoints.keys()]]) !== before) {
    privateDir(join(shared.cacheDir, "log"));
    writePrivate(
      cacheFile,
      `${JSON.stringify({ entries: [...known.values()], checkpoints: [...knownCheckpoints.values()] })}\n`,
    );
  }
  return { committed, relocations: relocationsIn(log) };
}

/** The snapshot id a key of the context's folder belongs to (`<context>/<id>.<anything>`), else null. */
export function snapshotIdOfKey(context: string, key: string): string | null {
  if (!key.startsWith(`${context}/`)) return null;
  const name = key.slice(context.length + 1);
  const dot = name.indexOf(".");
  return dot > 0 && !name.includes("/") ? name.slice(0, dot) : null;
}

/**
 * PAAS_BACKUP_S3_REQUEST_LOG=<file>: the requests this run sent to the root's bucket, counted by
 * operation in the S3 driver, appended to the file as one JSON line when the process exits
 * (`{pid, argv, requests: {PutObject: n, ...}}`; bench/shared-root.mjs reads it).
 */
function countRequests(file: string): (operation: string) => void {
  const counts: Record<string, number> = {};
  process.once("exit", () => {
    appendFileSync(
      file,
      `${JSON.stringify({ pid: process.pid, argv: process.argv.slice(2).filter((a) => !a.includes("://")), requests: counts })}\n`,
    );
  });
  return (operation) => {
    counts[operation] = (counts[operation] ?? 0) + 1;
  };
}
