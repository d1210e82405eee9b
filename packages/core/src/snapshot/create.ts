import { recoverContext } from "../restore/journal.js";
import { createHash, randomUUID, type Hash } from "node:crypto";
import { Readable, Transform, type TransformCallback } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { FileSystem } from "../fs/types.js";
import { SafetyError } from "../errors.js";
import { openArchiveWriter } from "../archive/writer.js";
import type { ArtifactEncryptor } from "../archive/encryption.js";
import { canonicalJson, MANIFEST_FORMAT, type Manifest, type ManifestEntryNote, type ManifestFile } from "../manifest/schema.js";
import { isEventLog, isJsonStateFile, type OptionalFolder } from "../policy/selection.js";
import { SecretScanner, type SecretAllowance, type SecretFinding } from "../policy/secrets.js";
import { validateContextName } from "../policy/context.js";
import { artifactNames, backupRootStorage, listSnapshotsIn, type SnapshotRef } from "../repository/repository.js";
import type { ObjectStorage } from "../repository/storage.js";
import { expectedChecksum, formatChecksumLine } from "../repository/checksum.js";
import { formatSnapshotId } from "../repository/ids.js";
import { contextDir, join } from "../util/paths.js";
import { HashingStream, sha256Hex } from "../util/hash.js";
import { checkChainToExtend } from "./chain-check.js";
import { isPlainFileInside } from "../util/no-follow.js";
import { planSnapshotContents, requireContextDir, type PlannedFile } from "./plan.js";
import { completeLinesLength, readStableJson } from "./read-stable.js";
import { TOOL_NAME, TOOL_VERSION } from "../version.js";

export type SnapshotKind = "full" | "incremental";

export interface SnapshotProgress {
  phase: "plan" | "archive" | "commit";
  path?: string;
  doneBytes: number;
  totalBytes: number;
}

export interface CreateSnapshotOptions {
  fs: FileSystem;
  stateRoot: string;
  backupRoot: string;
  /**
   * Where the snapshot is written; by default the backup root through the local driver. Any
   * driver works: the artifact is staged and committed, the sidecars are small objects.
   */
  repository?: ObjectStorage;
  context: string;
  clock: () => Date;
  kind?: SnapshotKind;
  include?: readonly OptionalFolder[];
  /** age recipients wrapper; required unless insecurePlaintext is set */
  encryptor?: ArtifactEncryptor;
  insecurePlaintext?: boolean;
  /** known false positives of the secret scanner: a file and a rule */
  secretAllow?: readonly SecretAllowance[];
  onProgress?: (progress: SnapshotProgress) => void;
  sleep?: (ms: number) => Promise<void>;
  gzipLevel?: number;
}

export interface SnapshotResult {
  id: string;
  kind: SnapshotKind;
  context: string;
  artifact: string;
  checksumFile: string;
  manifestFile: string;
  sha256: string;
  /** files the snapshot describes (all of them, for an incremental too) */
  files: number;
  /** size of the artifact on disk */
  bytes: number;
  /** bytes of state the snapshot describes */
  sourceBytes: number;
  /** bytes of file content stored in this artifact (before compression) */
  storedBytes: number;
  encrypted: boolean;
  parent?: { id: string; sha256: string };
  /** set when an incremental was asked for but a full was taken */
  promotedToFull?: string;
  absent: string[];
  excluded: ManifestEntryNote[];
  skipped: ManifestEntryNote[];
  warnings: ManifestEntryNote[];
}

const defaultSleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Hash, scan and count the bytes on their way into the archive; refuse the chunk that holds a secret. */
class ArchiveFeed extends Transform {
  constructor(
    private readonly hash: Hash,
    private readonly scanner: SecretScanner,
    private readonly onBytes: (n: number) => void,
  ) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.scanner.push(chunk);
    if (this.scanner.findings.length > 0) {
      cb(secretRefusal(this.scanner.findings));
      return;
    }
    this.hash.update(chunk);
    this.onBytes(chunk.length);
    cb(null, chunk);
  }
  override _flush(cb: TransformCallback): void {
    const findings = this.scanner.end();
    cb(findings.length > 0 ? secretRefusal(findings) : null);
  }
}

export function secretRefusal(findings: readonly SecretFinding[]): SafetyError {
  const list = findings.slice(0, 10).map((f) => `${f.path}:${f.line} (${f.rule})`);
  return new SafetyError(
    "PAAS_BACKUP_SECRET_FOUND",
    `plaintext secret material found in ${list.join(", ")}${findings.length > 10 ? ` and ${findings.length - 10} more` : ""}; nothing was written`,
    {
      path: findings[0]?.path,
      remediation:
        "Move the secret into the vault (si vault set) and remove it from the state file; if it is a known false positive, add {path, rule} to secretAllow in the config file.",
      stage: "scan",
      data: { findings: findings.map((f) => ({ path: f.path, line: f.line, rule: f.rule })) },
    },
  );
}

function changedIntoLink(path: string): SafetyError {
  return new SafetyError("PAAS_BACKUP_SYMLINK_IN_CONTEXT", `${path} is no longer a regular file in a real folder (a symbolic link appeared while the snapshot ran); nothing was written`, {
    path,
    remediation: "paas-backup never reads through symbolic links inside a context: find out what replaced the file, then run the snapshot again.",
    stage: "read",
  });
}

async function hashRange(fs: FileSystem, path: string, hash: Hash, start: number, endExclusive: number): Promise<void> {
  if (endExclusive <= start) return;
  for await (const chunk of fs.createReadStream(path, { start, end: endExclusive - 1 })) hash.update(chunk as Buffer);
}

/** A small object (manifest, checksum file) written whole, atomically, through the repository's driver. */
async function putSmall(repo: ObjectStorage, key: string, text: string): Promise<void> {
  const data = Buffer.from(text, "utf8");
  await repo.put(key, Readable.from([data]), { sha256: sha256Hex(data), size: data.length });
}

export async function createSnapshot(options: CreateSnapshotOptions): Promise<SnapshotResult> {
  const { fs, clock } = options;
  const context = validateContextName(options.context);
  // The caller holds the context's lock: a swap a crash interrupted is finished or undone before reading.
  await recoverContext({ fs, stateRoot: options.stateRoot, backupRoot: options.backupRoot, context, clock });
  const sleep = options.sleep ?? defaultSleep;
  const include = [...new Set(options.include ?? [])].sort();
  if (!options.encryptor && !options.insecurePlaintext) {
    throw new SafetyError("PAAS_BACKUP_NO_RECIPIENT", "no age recipient configured: snapshots are encrypted by default", {
      remediation:
        "Make a key with `paas-backup keygen --out ~/.config/paas-backup/identity.txt` and pass its recipient with --recipient, or set recipients in the config file; --insecure-plaintext writes an unencrypted snapshot.",
      stage: "plan",
    });
  }
  const srcDir = contextDir(options.stateRoot, context);
  await requireContextDir(fs, srcDir, context);
  const repo = options.repository ?? backupRootStorage(fs, options.backupRoot);
  const keyOf = (name: string) => `${context}/${name}`;

  const existing = await listSnapshotsIn(repo, context);
  const requested: SnapshotKind = options.kind ?? "full";
  let parent: (SnapshotRef & { sha256: string }) | null = null;
  let promotedToFull: string | undefined;
  if (requested === "incremental") {
    const newest = existing[existing.length - 1];
    if (!newest) promotedToFull = "no earlier snapshot of this context";
    else if (!newest.manifest) promotedToFull = `parent ${newest.id} has no manifest (made by hand)`;
    else if (newest.manifest.include.join(",") !== include.join(","))
      promotedToFull = `parent ${newest.id} covers --include ${newest.manifest.include.join(",") || "(none)"}`;
    else {
      const sha = await expectedChecksum(newest);
      const chainProblem = sha ? await checkChainToExtend(fs, options.backupRoot, newest, existing, randomUUID().slice(0, 8)) : null;
      if (!sha) promotedToFull = `parent ${newest.id} has no readable checksum file`;
      else if (chainProblem) promotedToFull = `the chain it would extend does not verify: ${chainProblem}`;
      else parent = { ...newest, sha256: sha } as SnapshotRef & { sha256: string };
    }
  }
  const kind: SnapshotKind = parent ? "incremental" : "full";

  const started = clock();
  let sequence = 0;
  let id = formatSnapshotId(started);
  const encrypted = options.encryptor !== undefined;
  const taken = new Set(existing.map((s) => s.id));
  while (taken.has(id) || (await repo.head(keyOf(artifactNames(id, encrypted).artifactName))) || (await repo.head(keyOf(artifactNames(id, !encrypted).artifactName)))) {
    sequence += 1;
    id = formatSnapshotId(started, sequence);
  }
  const names = artifactNames(id, encrypted);

  options.onProgress?.({ phase: "plan", doneBytes: 0, totalBytes: 0 });
  const contents = await planSnapshotContents(fs, srcDir, include as OptionalFolder[]);
  const totalBytes = contents.files.reduce((n, f) => n + f.stat.size, 0);
  let doneBytes = 0;
  const progress = (path: string) => options.onProgress?.({ phase: "archive", path, doneBytes, totalBytes });

  const staged = await repo.stage(keyOf(names.artifactName));
  const out = staged.stream;
  const artifactHash = new HashingStream();
  const stages: NodeJS.ReadWriteStream[] = [];
  const encryptStream = options.encryptor?.encrypt();
  if (encryptStream) stages.push(encryptStream);
  stages.push(artifactHash);
  const head = stages[0] as unknown as NodeJS.WritableStream & Readable;
  const written = pipeline([...stages, out] as unknown as [Readable, NodeJS.WritableStream]);
  written.catch(() => undefined);
  const writer = await openArchiveWriter(head as never, options.gzipLevel ?? 6);

  const parentFiles = new Map<string, ManifestFile>((parent?.manifest?.files ?? []).map((f) => [f.path, f]));
  const files: ManifestFile[] = [];
  const warnings: ManifestEntryNote[] = [];
  let storedBytes = 0;
  const dirsAdded = new Set<string>();
  const mtime = started;

  const ensureDirs = async (path: string) => {
    const parts = path.split("/");
    for (let i = 1; i < parts.length; i++) {
      const d = parts.slice(0, i).join("/");
      if (!dirsAdded.has(d)) {
        dirsAdded.add(d);
        await writer.addDirectory(d, mtime);
      }
    }
  };

  const archiveRange = async (file: PlannedFile, hash: Hash, start: number, endExclusive: number) => {
    await ensureDirs(file.path);
    const scanner = new SecretScanner(file.path, options.secretAllow ?? []);
    const feed = new ArchiveFeed(hash, scanner, (n) => {
      doneBytes += n;
      progress(file.path);
    });
    const length = endExclusive - start;
    if (length === 0) {
      await writer.addBuffer(file.path, Buffer.alloc(0), mtime);
    } else {
      const source = fs.createReadStream(join(srcDir, file.path), { start, end: endExclusive - 1 });
      source.on("error", (err) => feed.destroy(err));
      await writer.addStream(file.path, source.pipe(feed), length, mtime);
    }
    storedBytes += length;
  };

  try {
    for (const file of contents.files) {
      const abs = join(srcDir, file.path);
      const prior = parentFiles.get(file.path);
      // Planned as a plain file; if it or a folder above it became a link since, do not read through it.
      if (!(await isPlainFileInside(fs, srcDir, file.path))) throw changedIntoLink(abs);
      if (isJsonStateFile(file.path)) {
        const stable = await readStableJson(fs, abs, sleep);
        if (!stable.parses) warnings.push({ path: file.path, reason: "not valid JSON (stable across reads); kept as is" });
        const scanner = new SecretScanner(file.path, options.secretAllow ?? []);
        scanner.push(stable.content);
        const findings = scanner.end();
        if (findings.length > 0) throw secretRefusal(findings);
        const sha256 = sha256Hex(stable.content);
        const entry = { path: file.path, size: stable.content.length, mode: file.stat.mode, sha256, mtimeMs: stable.mtimeMs };
        if (prior && prior.sha256 === sha256) {
          files.push({ ...entry, stored: "unchanged" });
        } else {
          await ensureDirs(file.path);
          await writer.addBuffer(file.path, stable.content, mtime);
          storedBytes += stable.content.length;
          files.push({ ...entry, stored: "whole" });
        }
        doneBytes += file.stat.size;
        progress(file.path);
        continue;
      }

      // Logs are captured up to their last complete line; other files (releases/, cache/) whole.
      const length = isEventLog(file.path) ? await completeLinesLength(fs, abs, file.stat.size) : file.stat.size;
      const base = { path: file.path, size: length, mode: file.stat.mode, mtimeMs: file.stat.mtimeMs };
      if (prior && prior.size === length && prior.mtimeMs === file.stat.mtimeMs) {
        // Same size and modification time as in the parent: not read again (as restic and borg do).
        files.push({ ...base, sha256: prior.sha256, stored: "unchanged" });
        doneBytes += file.stat.size;
        continue;
      }
      const hash = createHash("sha256");
      if (prior && isEventLog(file.path) && prior.size <= length) {
        // Append-only log: prove the old content is byte for byte what the parent stored,
        // then store only the new lines.
        await hashRange(fs, abs, hash, 0, prior.size);
        const prefixSha256 = hash.copy().digest("hex");
        if (prefixSha256 === prior.sha256) {
          doneBytes += prior.size;
          if (length === prior.size) {
            files.push({ ...base, sha256: prefixSha256, stored: "unchanged" });
            continue;
          }
          await archiveRange(file, hash, prior.size, length);
          files.push({ ...base, sha256: hash.digest("hex"), stored: "append", appendOffset: prior.size, prefixSha256 });
          continue;
        }
        warnings.push({ path: file.path, reason: "log was rewritten since the parent; stored whole" });
        const fresh = createHash("sha256");
        await archiveRange(file, fresh, 0, length);
        files.push({ ...base, sha256: fresh.digest("hex"), stored: "whole" });
        continue;
      }
      if (prior && isEventLog(file.path) && prior.size > length)
        warnings.push({ path: file.path, reason: "log is shorter than in the parent (truncated); stored whole" });
      await archiveRange(file, hash, 0, length);
      files.push({ ...base, sha256: hash.digest("hex"), stored: "whole" });
    }

    const present = new Set(files.map((f) => f.path));
    const deleted = parent ? [...parentFiles.keys()].filter((p) => !present.has(p)).sort() : [];
    const manifest: Manifest = {
      format: MANIFEST_FORMAT,
      id,
      context,
      kind,
      createdAt: started.toISOString(),
      tool: { name: TOOL_NAME, version: TOOL_VERSION },
      include,
      ...(parent ? { parent: { id: parent.id, sha256: parent.sha256 } } : {}),
      encryption: options.encryptor ? { type: "age", recipients: options.encryptor.recipients } : { type: "none" },
      files,
      absent: contents.absent,
      deleted,
      excluded: contents.excluded,
      skipped: contents.skipped,
      warnings,
      totals: { files: files.length, bytes: files.reduce((n, f) => n + f.size, 0), storedBytes },
    };
    const manifestJson = canonicalJson(manifest, 2);
    options.onProgress?.({ phase: "commit", doneBytes: totalBytes, totalBytes });
    await writer.finish(canonicalJson(manifest), mtime);
    await written;
    const sha256 = artifactHash.digest();

    // The sidecars go first and the artifact's commit comes last: until it lands, `list` shows
    // nothing, and leftovers are only staged objects and orphan sidecars that prune sweeps.
    await putSmall(repo, keyOf(names.manifestName), `${manifestJson}\n`);
    await putSmall(repo, keyOf(names.checksumName), formatChecksumLine(sha256, names.artifactName));
    await staged.commit(sha256);
    const bytes = artifactHash.bytes;
    const artifact = repo.locate(keyOf(names.artifactName));
    const checksumFile = repo.locate(keyOf(names.checksumName));
    const manifestFile = repo.locate(keyOf(names.manifestName));

    return {
      id,
      kind,
      context,
      artifact,
      checksumFile,
      manifestFile,
      sha256,
      files: files.length,
      bytes,
      sourceBytes: manifest.totals.bytes,
      storedBytes,
      encrypted,
      ...(manifest.parent ? { parent: manifest.parent } : {}),
      ...(promotedToFull ? { promotedToFull } : {}),
      absent: contents.absent,
      excluded: contents.excluded,
      skipped: contents.skipped,
      warnings,
    };
  } catch (err) {
    writer.abort();
    await staged.abort();
    await written.catch(() => undefined);
    throw err;
  }
}

