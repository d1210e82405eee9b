import { createHash } from "node:crypto";
import type { Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { FileSystem } from "../fs/types.js";
import { IntegrityError, UsageError, isNotFound } from "../errors.js";
import type { ArtifactDecryptor } from "../archive/encryption.js";
import { materializeChain } from "../restore/materialize.js";
import {
  backupRootStorage,
  chainOf,
  openRepository,
  type Repository,
  type SnapshotRef,
} from "../repository/repository.js";
import type { ObjectStorage } from "../repository/storage.js";
import { EVENT_LOGS, type OptionalFolder } from "../policy/selection.js";
import { futureSkippedWarning } from "../repository/timeline.js";
import { planSnapshotContents } from "./plan.js";
import { contextDir, join } from "../util/paths.js";

/**
 * Looking inside snapshots without restoring them (restic's ls, dump, diff, find): a reader over
 * a snapshot and the chain it needs. Listing works from manifests (no decryption, no
 * decompression); reading bytes replays the whole chain through the same checked reader a
 * restore uses, so what `dump` prints is exactly what a restore would write.
 */
export interface SnapshotFileEntry {
  path: string;
  size: number;
  /** permission bits at snapshot time; null for hand-made archives, which record none */
  mode: number | null;
  sha256: string;
  /** how this snapshot's own artifact holds the file: whole, append (a log tail) or unchanged (in an older link) */
  stored: "whole" | "append" | "unchanged" | "hand-made";
}

export interface InspectOptions {
  fs: FileSystem;
  backupRoot: string;
  context: string;
  decryptor?: ArtifactDecryptor;
  maxExpansion?: number;
  /**
   * With a clock, `latest` is what restore would pick: never a snapshot from the future
   * (repository/timeline.ts); the result's `warnings` name any it passed over.
   */
  clock?: () => Date;
  /**
   * Where the snapshots are read from (any driver, e.g. the committed view of an s3:// root);
   * default the backup root folder.
   */
  repository?: ObjectStorage;
}

/** The repository the reader looks in: the given storage, or the backup root folder. */
function repositoryOf(options: {
  fs: FileSystem;
  backupRoot: string;
  repository?: ObjectStorage;
}): Repository {
  return openRepository(options.repository ?? backupRootStorage(options.fs, options.backupRoot));
}

/** The snapshot a reader looks at, resolved as restore resolves it, with the warning restore gives. */
async function resolveSnapshot(options: InspectOptions, selector: string) {
  const now = options.clock?.();
  const found = await repositoryOf(options).find(options.context, selector, now);
  const warning = now ? futureSkippedWarning(found.skippedFuture, found.snapshot.id, now) : null;
  return { ...found, warnings: warning ? [warning] : [] };
}

function chainFor(snapshot: SnapshotRef, all: readonly SnapshotRef[]): SnapshotRef[] {
  const { chain, missing } = chainOf(snapshot, all);
  if (missing) {
    throw new IntegrityError(
      "PAAS_BACKUP_CHAIN_BROKEN",
      `snapshot ${snapshot.id} needs ${missing}, which is not in the backup root`,
      {
        path: snapshot.artifactPath,
        remediation:
          "Fetch the missing link from an offsite copy (restore --from-offsite), or look inside an older full snapshot.",
        stage: "chain",
      },
    );
  }
  return chain;
}

/**
 * Replay the snapshot's chain into `scratch` (a new folder the caller owns and removes) and return
 * the checked file list. Every byte is checked against the manifests as a restore checks it.
 */
async function extract(
  options: InspectOptions,
  snapshot: SnapshotRef,
  all: readonly SnapshotRef[],
  scratch: string,
) {
  return materializeChain({
    fs: options.fs,
    chain: chainFor(snapshot, all),
    target: scratch,
    ...(options.decryptor ? { decryptor: options.decryptor } : {}),
    ...(options.maxExpansion ? { maxExpansion: options.maxExpansion } : {}),
  });
}

/** The files a snapshot describes. From its manifest when it has one; a hand-made archive is read (checked, not written). */
export async function listSnapshotFiles(
  options: InspectOptions & { snapshot: string },
): Promise<{ snapshot: SnapshotRef; files: SnapshotFileEntry[]; warnings: string[] }> {
  const { snapshot, all, warnings } = await resolveSnapshot(options, options.snapshot);
  if (snapshot.manifest) {
    return {
      snapshot,
      warnings,
      files: snapshot.manifest.files
        .map((f) => ({ path: f.path, size: f.size, mode: f.mode, sha256: f.sha256, stored: f.stored }))
        .sort((a, b) => (a.path < b.path ? -1 : 1)),
    };
  }
  const result = await materializeChain({
    fs: options.fs,
    chain: chainFor(snapshot, all),
    target: null,
    ...(options.decryptor ? { decryptor: options.decryptor } : {}),
    ...(options.maxExpansion ? { maxExpansion: options.maxExpansion } : {}),
  });
  return {
    snapshot,
    warnings,
    files: result.files
      .map((f) => ({ ...f, mode: null, stored: "hand-made" as const }))
      .sort((a, b) => (a.path < b.path ? -1 : 1)),
  };
}

function notInSnapshot(snapshot: SnapshotRef, path: string, known: readonly string[]): UsageError {
  return new UsageError(
    "PAAS_BACKUP_PATH_NOT_IN_SNAPSHOT",
    `${path} is not in snapshot ${snapshot.id} of ${snapshot.context}`,
    {
      path,
      remediation: `Use a path relative to the context folder as \`paas-backup ls\` prints it${known.length ? ` (e.g. ${known.slice(0, 3).join(", ")})` : ""}.`,
      stage: "select",
    },
  );
}

/**
 * Write one file of a snapshot to `out`, byte-identical to what was backed up. The chain is
 * replayed into `scratch` (created here with mode 0700, removed before returning).
 */
export async function dumpSnapshotFile(
  options: InspectOptions & { snapshot: string; path: string; scratch: string; out: Writable },
): Promise<{
  snapshot: SnapshotRef;
  file: { path: string; size: number; sha256: string };
  warnings: string[];
}> {
  const path = options.path.replace(/^\.\//, "");
  const { snapshot, all, warnings } = await resolveSnapshot(options, options.snapshot);
  if (snapshot.manifest && !snapshot.manifest.files.some((f) => f.path === path))
    throw notInSnapshot(
      snapshot,
      path,
      snapshot.manifest.files.map((f) => f.path),
    );
  await options.fs.mkdir(options.scratch, { recursive: true, mode: 0o700 });
  try {
    const result = await extract(options, snapshot, all, options.scratch);
    const file = result.files.find((f) => f.path === path);
    if (!file)
      throw notInSnapshot(
        snapshot,
        path,
        result.files.map((f) => f.path),
      );
    await pipeline(options.fs.createReadStream(join(options.scratch, path)), options.out, { end: false });
    return { snapshot, file, warnings };
  } finally {
    await options.fs.rm(options.scratch, { recursive: true, force: true });
  }
}

export interface DiffEntry {
  path: string;
  change: "added" | "changed" | "removed";
  before: { size: number; sha256: string } | null;
  after: { size: number; sha256: string } | null;
  /** for an event log that only grew: how many lines were appended; null when it was rewritten */
  appendedLines: number | null;
}

export interface SnapshotDiff {
  from: string;
  to: string;
  entries: DiffEntry[];
  unchanged: number;
  /** a side given as `latest` that passed over snapshots from the future says so */
  warnings: string[];
}

async function hashFile(
  fs: FileSystem,
  abs: string,
  limit?: number,
): Promise<{ size: number; sha256: string; tailNewlines: number }> {
  const hash = createHash("sha256");
  let size = 0;
  let tailNewlines = 0;
  for await (const chunk of fs.createReadStream(abs)) {
    const buf = chunk as Buffer;
    if (limit === undefined) {
      hash.update(buf);
      size += buf.length;
      continue;
    }
    // hash the first `limit` bytes; count newlines in what follows
    const head = Math.max(0, Math.min(buf.length, limit - size));
    if (head > 0) hash.update(buf.subarray(0, head));
    for (let i = head; i < buf.length; i++) if (buf[i] === 10) tailNewlines++;
    size += buf.length;
  }
  return { size, sha256: hash.digest("hex"), tailNewlines };
}

/** Lines appended to an event log between `before` and the file at `abs`, or null when its old bytes changed. */
async function appendedLines(
  fs: FileSystem,
  abs: string,
  before: { size: number; sha256: string },
): Promise<number | null> {
  const r = await hashFile(fs, abs, before.size);
  if (r.size < before.size || r.sha256 !== before.sha256) return null;
  return r.tailNewlines;
}

/**
 * What changed between two snapshots, or between a snapshot and the live context (`to: "live"`):
 * added, changed and removed files, and for an event log that grew, the number of lines appended.
 * The newer side's bytes are read (replayed into `scratch` for a snapshot) only for event logs.
 */
export async function diffSnapshots(
  options: InspectOptions & {
    stateRoot: string;
    from: string;
    to: string;
    scratch: string;
    include?: readonly OptionalFolder[];
  },
): Promise<SnapshotDiff> {
  const before = await listSnapshotFiles({ ...options, snapshot: options.from });
  const beforeMap = new Map(before.files.map((f) => [f.path, f]));
  let afterFiles: { path: string; size: number; sha256: string }[];
  let afterDir: string;
  let toLabel: string;
  const logs = new Set<string>(EVENT_LOGS);
  let extracted = false;
  const warnings = [...before.warnings];
  try {
    if (options.to === "live") {
      afterDir = contextDir(options.stateRoot, options.context);
      const include = options.include ?? ((before.snapshot.manifest?.include ?? []) as OptionalFolder[]);
      const plan = await planSnapshotContents(options.fs, afterDir, include);
      afterFiles = [];
      for (const f of plan.files) {
        try {
          const h = await hashFile(options.fs, join(afterDir, f.path));
          afterFiles.push({ path: f.path, size: h.size, sha256: h.sha256 });
        } catch (err) {
          if (!isNotFound(err)) throw err; // removed while we read: it is gone
        }
      }
      toLabel = "live";
    } else {
      const after = await listSnapshotFiles({ ...options, snapshot: options.to });
      afterFiles = after.files;
      for (const w of after.warnings) if (!warnings.includes(w)) warnings.push(w);
      toLabel = after.snapshot.id;
      afterDir = options.scratch;
      const needBytes = afterFiles.some(
        (f) => logs.has(f.path) && beforeMap.has(f.path) && beforeMap.get(f.path)!.sha256 !== f.sha256,
      );
      if (needBytes) {
        await options.fs.mkdir(options.scratch, { recursive: true, mode: 0o700 });
        extracted = true;
        const all = await repositoryOf(options).snapshots(options.context);
        await extract(options, after.snapshot, all, options.scratch);
      }
    }
    const entries: DiffEntry[] = [];
    let unchanged = 0;
    const afterMap = new Map(afterFiles.map((f) => [f.path, f]));
    for (const f of afterFiles) {
      const old = beforeMap.get(f.path);
      if (!old)
        entries.push({
          path: f.path,
          change: "added",
          before: null,
          after: { size: f.size, sha256: f.sha256 },
          appendedLines: null,
        });
      else if (old.sha256 !== f.sha256 || old.size !== f.size) {
        const appended =
          logs.has(f.path) && f.size > old.size && (options.to === "live" || extracted)
            ? await appendedLines(options.fs, join(afterDir, f.path), old)
            : null;
        entries.push({
          path: f.path,
          change: "changed",
          before: { size: old.size, sha256: old.sha256 },
          after: { size: f.size, sha256: f.sha256 },
          appendedLines: appended,
        });
      } else unchanged++;
    }
    for (const old of before.files)
      if (!afterMap.has(old.path))
        entries.push({
          path: old.path,
          change: "removed",
          before: { size: old.size, sha256: old.sha256 },
          after: null,
          appendedLines: null,
        });
    entries.sort((a, b) => (a.path < b.path ? -1 : 1));
    return { from: before.snapshot.id, to: toLabel, entries, unchanged, warnings };
  } finally {
    if (extracted) await options.fs.rm(options.scratch, { recursive: true, force: true });
  }
}

export interface FoundCopy {
  snapshot: string;
  kind: "full" | "incremental";
  time: string;
  size: number;
  sha256: string;
}

/** Which snapshots of a context hold `path` (from their manifests), oldest first, with size and sha256. */
export async function findInSnapshots(options: {
  fs: FileSystem;
  backupRoot: string;
  context: string;
  path: string;
  /** as InspectOptions.repository */
  repository?: ObjectStorage;
}): Promise<FoundCopy[]> {
  const path = options.path.replace(/^\.\//, "");
  const out: FoundCopy[] = [];
  for (const s of await repositoryOf(options).snapshots(options.context)) {
    const f = s.manifest?.files.find((x) => x.path === path);
    if (f)
      out.push({ snapshot: s.id, kind: s.kind, time: s.time.toISOString(), size: f.size, sha256: f.sha256 });
  }
  return out;
}
