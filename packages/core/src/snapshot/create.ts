import { recoverContext } from "../restore/journal.js";
import { createHash, randomUUID, type Hash } from "node:crypto";
import { Readable, Transform, type TransformCallback } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { FileSystem } from "../fs/types.js";
import { SafetyError } from "../errors.js";
import { ArchiveWriter, DEFAULT_GZIP_LEVEL } from "../archive/writer.js";
import type { ArtifactEncryptor } from "../archive/encryption.js";
import type { Manifest, ManifestEntryNote, ManifestFile } from "../manifest/schema.js";
import { canonicalJson, MANIFEST_FORMAT } from "../manifest/format.js";
import { isEventLog, isJsonStateFile, type OptionalFolder } from "../policy/selection.js";
import {
  redactBytes,
  SCANNER_RULES_VERSION,
  SecretScanner,
  type SecretAllowance,
  type SecretFinding,
} from "../policy/secrets.js";
import { validateContextName } from "../policy/context.js";
import { assertSafeLocations } from "../policy/work-tree.js";
import {
  artifactNames,
  backupRootStorage,
  listSnapshotsIn,
  type SnapshotRef,
} from "../repository/repository.js";
import type { ObjectStorage } from "../repository/storage.js";
import { expectedChecksum, formatChecksumLine } from "../repository/checksum.js";
import { formatSnapshotId } from "../repository/ids.js";
import { contextDir, join } from "../util/paths.js";
import { HashingStream, sha256Hex } from "../util/hash.js";
import { checkChainToExtend } from "./chain-check.js";
import { isPlainFileInside } from "../util/no-follow.js";
import { planSnapshotContents, requireContextDir, type PlannedFile } from "./plan.js";
import { completeLinesLength, readStableJson } from "./read-stable.js";
import { openChunks, ReadBuffers, type ChunkReader } from "./read-chunks.js";
import {
  defaultScanLane,
  inlineScanLane,
  ScanWorkerFailed,
  type FileScan,
  type ScanLane,
} from "./scan-lane.js";
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
  /** known false positives of the secret scanner: a file and a rule (not findings, not redacted) */
  secretAllow?: readonly SecretAllowance[];
  /** si's SI_PAAS_ALLOW_REPO_STATE: a state root inside a git work tree is allowed (the backup root never is) */
  allowRepoState?: boolean;
  /** findings the operator has seen (and rotated): still redacted, but no longer a reason for exit 9 */
  secretAcknowledged?: readonly SecretAcknowledgement[];
  onProgress?: (progress: SnapshotProgress) => void;
  sleep?: (ms: number) => Promise<void>;
  /** deflate level of the gzip members; DEFAULT_GZIP_LEVEL (5, chosen by measurement) when not given */
  gzipLevel?: number;
  /**
   * Where included bytes are scanned for secrets on their way into the archive: by default a
   * worker thread for ranges of 16 MiB and more (inline below that), so a large snapshot scans on
   * one core while it reads, hashes and compresses on the other. `inlineScanLane()` keeps it all
   * on the calling thread.
   */
  scanLane?: ScanLane;
}

/** Chunks read ahead of the scanner's answers: enough to keep a worker busy, 4 MiB at 512 KiB reads. */
const SCAN_AHEAD = 8;

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
  /**
   * Every secret value the stored copy holds as `<redacted>` (file, line, rule; never the value),
   * including those an incremental carries over from its parent. Any one not acknowledged in the
   * config means the leaked credential still needs rotating (exit 9).
   */
  redactions: SnapshotRedaction[];
}

export interface SecretAcknowledgement {
  path: string;
  /** omitted: every line of the file */
  line?: number;
  rule: string;
}

export interface SnapshotRedaction {
  path: string;
  line: number;
  rule: string;
  acknowledged: boolean;
}

export function isAcknowledged(
  acks: readonly SecretAcknowledgement[],
  path: string,
  line: number,
  rule: string,
): boolean {
  return acks.some(
    (a) =>
      a.path === path && (a.rule === rule || a.rule === "*") && (a.line === undefined || a.line === line),
  );
}

/** A file's scan found a secret after some of its bytes were already in the archive: take the snapshot again, redacting it from the start. */
class RedactionNeeded extends Error {
  constructor(readonly path: string) {
    super(`${path} needs redaction`);
  }
}

/**
 * Read [start, end) of a file through a redacting scanner: the source bytes are hashed into
 * `source`, the bytes to store (values replaced by <redacted>) into `stored` and passed on.
 */
class RedactingFeed extends Transform {
  storedLength = 0;
  constructor(
    private readonly scanner: SecretScanner,
    private readonly source: Hash,
    private readonly stored: Hash,
    private readonly onBytes: (n: number) => void,
  ) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.source.update(chunk);
    this.onBytes(chunk.length);
    const out = this.scanner.push(chunk)!;
    this.stored.update(out);
    this.storedLength += out.length;
    cb(null, out.length > 0 ? out : undefined);
  }
  override _flush(cb: TransformCallback): void {
    const out = this.scanner.finish()!;
    this.stored.update(out);
    this.storedLength += out.length;
    cb(null, out.length > 0 ? out : undefined);
  }
}

async function countRange(
  fs: FileSystem,
  path: string,
  start: number,
  endExclusive: number,
  onChunk: (chunk: Buffer) => void,
): Promise<void> {
  if (endExclusive <= start) return;
  for await (const chunk of fs.createReadStream(path, { start, end: endExclusive - 1 }))
    onChunk(chunk as Buffer);
}

function countNewlines(chunk: Buffer): number {
  let n = 0;
  for (let i = chunk.indexOf(10); i >= 0; i = chunk.indexOf(10, i + 1)) n++;
  return n;
}

const defaultSleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * Hash, scan and count the bytes on their way into the archive. Chunks are read and sent to the
 * scanner up to SCAN_AHEAD ahead, but a chunk is passed on only once the scanner has answered for
 * it with no finding, and the first finding stops the feed: the file is then taken again with
 * redaction. A line still open at a chunk's end is judged with the next chunk, so its first bytes
 * may already be in the staged artifact when its finding comes; the restart discards that staged
 * object (prune sweeps one a crash left), so a committed artifact never holds the value (as before
 * the worker).
 */
async function* scannedChunks(
  path: string,
  chunks: ChunkReader,
  hash: Hash,
  scan: FileScan,
  onBytes: (n: number) => void,
): AsyncGenerator<Buffer> {
  const ahead: { chunk: Buffer; findings: Promise<number> }[] = [];
  const next = async (): Promise<Buffer> => {
    const { chunk, findings } = ahead.shift()!;
    if ((await findings) > 0) throw new RedactionNeeded(path);
    onBytes(chunk.length);
    return chunk;
  };
  try {
    for (let chunk = await chunks.next(); chunk; chunk = await chunks.next()) {
      hash.update(chunk);
      // The scanner copies what it keeps (a worker's slot, a partial line): the chunk stays ours.
      ahead.push({ chunk, findings: scan.push(chunk) });
      if (ahead.length >= SCAN_AHEAD) {
        const ready = await next();
        yield ready;
        // The archiver asks for the next chunk only once it has copied this one: reuse it.
        chunks.release(ready);
      }
    }
    const last = scan.end();
    while (ahead.length > 0) {
      const ready = await next();
      yield ready;
      chunks.release(ready);
    }
    if ((await last) > 0) throw new RedactionNeeded(path);
  } finally {
    await chunks.close();
  }
}

function changedIntoLink(path: string): SafetyError {
  return new SafetyError(
    "PAAS_BACKUP_SYMLINK_IN_CONTEXT",
    `${path} is no longer a regular file in a real folder (a symbolic link appeared while the snapshot ran); nothing was written`,
    {
      path,
      remediation:
        "paas-backup never reads through symbolic links inside a context: find out what replaced the file, then run the snapshot again.",
      stage: "read",
    },
  );
}

async function hashRange(
  fs: FileSystem,
  path: string,
  hash: Hash,
  start: number,
  endExclusive: number,
): Promise<void> {
  if (endExclusive <= start) return;
  for await (const chunk of fs.createReadStream(path, { start, end: endExclusive - 1 }))
    hash.update(chunk as Buffer);
}

/** A small object (manifest, checksum file) written whole, atomically, through the repository's driver. */
async function putSmall(repo: ObjectStorage, key: string, text: string): Promise<void> {
  const data = Buffer.from(text, "utf8");
  await repo.put(key, Readable.from([data]), { sha256: sha256Hex(data), size: data.length });
}

/**
 * Take a snapshot. A secret in an included file never stops it: the stored copy holds the value
 * as `<redacted>` and the manifest records each redaction and both hashes (source and stored).
 * Files known to need redaction (from the newest snapshot's manifest) are redacted from the
 * start; a new leak found mid-file restarts the snapshot once with that file redacted, as the
 * bytes before it are already in the archive.
 */
export async function createSnapshot(options: CreateSnapshotOptions): Promise<SnapshotResult> {
  const redact = new Set<string>();
  let run = options;
  for (;;) {
    try {
      return await createSnapshotOnce(run, redact);
    } catch (err) {
      // A scan worker that failed costs a second run with every file scanned inline, not a backup.
      if (err instanceof ScanWorkerFailed && !options.scanLane && !run.scanLane) {
        run = { ...options, scanLane: inlineScanLane() };
        continue;
      }
      if (!(err instanceof RedactionNeeded) || redact.has(err.path)) throw err;
      redact.add(err.path);
    }
  }
}

async function createSnapshotOnce(
  options: CreateSnapshotOptions,
  redact: Set<string>,
): Promise<SnapshotResult> {
  const { fs, clock } = options;
  const context = validateContextName(options.context);
  // The caller holds the context's lock: a swap a crash interrupted is finished or undone before reading.
  await recoverContext({ fs, stateRoot: options.stateRoot, backupRoot: options.backupRoot, context, clock });
  const sleep = options.sleep ?? defaultSleep;
  const include = [...new Set(options.include ?? [])].sort();
  if (!options.encryptor && !options.insecurePlaintext) {
    throw new SafetyError(
      "PAAS_BACKUP_NO_RECIPIENT",
      "no age recipient configured: snapshots are encrypted by default",
      {
        remediation:
          "Make a key with `paas-backup keygen --out ~/.config/paas-backup/identity.txt` and pass its recipient with --recipient, or set recipients in the config file; --insecure-plaintext writes an unencrypted snapshot.",
        stage: "plan",
      },
    );
  }
  await assertSafeLocations({
    fs,
    backupRoot: options.backupRoot,
    stateRoot: options.stateRoot,
    allowRepoState: options.allowRepoState === true,
  });
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
      const chainProblem = sha
        ? await checkChainToExtend(fs, options.backupRoot, newest, existing, randomUUID().slice(0, 8))
        : null;
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
  while (
    taken.has(id) ||
    (await repo.head(keyOf(artifactNames(id, encrypted).artifactName))) ||
    (await repo.head(keyOf(artifactNames(id, !encrypted).artifactName)))
  ) {
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
  const writer = new ArchiveWriter(head as never, options.gzipLevel ?? DEFAULT_GZIP_LEVEL);
  const scanLane = options.scanLane ?? defaultScanLane();
  const readBuffers = new ReadBuffers();

  const parentFiles = new Map<string, ManifestFile>((parent?.manifest?.files ?? []).map((f) => [f.path, f]));
  // What the newest snapshot had to redact is redacted from the start (no restart for a known leak).
  for (const f of existing[existing.length - 1]?.manifest?.files ?? [])
    if (f.redactions?.length) redact.add(f.path);
  const allow = options.secretAllow ?? [];
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
    const length = endExclusive - start;
    if (length === 0) {
      await writer.addBuffer(file.path, Buffer.alloc(0), mtime);
    } else {
      const chunks = await openChunks(fs, join(srcDir, file.path), start, endExclusive, readBuffers);
      const scan = scanLane.file(file.path, allow, length);
      // The archiver pulls straight from the generator (no stream between): a chunk it asked past
      // is one it has copied, which is what lets the generator hand its buffer back for reuse.
      const feed = scannedChunks(file.path, chunks, hash, scan, (n) => {
        doneBytes += n;
        progress(file.path);
      });
      try {
        await writer.addStream(file.path, feed, length, mtime);
      } finally {
        // The generator closes the file once it runs; an archive that failed before its first
        // chunk (the staged artifact's disk full) never started it.
        await chunks.close();
      }
    }
    storedBytes += length;
  };

  /**
   * Store [start, end) of a file with every finding replaced: a first pass counts what redaction
   * does to the size (a tar header needs it before the bytes), the second stores. Returns the
   * findings, with line numbers counted from `firstLine`.
   */
  const archiveRedacted = async (
    file: PlannedFile,
    source: Hash,
    stored: Hash,
    start: number,
    endExclusive: number,
    firstLine: number,
  ): Promise<{ findings: SecretFinding[]; storedLength: number }> => {
    await ensureDirs(file.path);
    const abs = join(srcDir, file.path);
    const counting = new SecretScanner(file.path, { allow, firstLine });
    await countRange(fs, abs, start, endExclusive, (chunk) => counting.push(chunk));
    counting.end();
    const storedLength = endExclusive - start + counting.sizeDelta;
    const scanner = new SecretScanner(file.path, { allow, firstLine, redact: true });
    const feed = new RedactingFeed(scanner, source, stored, (n) => {
      doneBytes += n;
      progress(file.path);
    });
    if (endExclusive <= start) await writer.addBuffer(file.path, Buffer.alloc(0), mtime);
    else {
      const input = fs.createReadStream(abs, { start, end: endExclusive - 1 });
      input.on("error", (err) => feed.destroy(err));
      try {
        await writer.addStream(file.path, input.pipe(feed), storedLength, mtime);
      } finally {
        // pipe() does not pass a destroyed feed back to its source: the file is closed here.
        input.destroy();
      }
    }
    if (feed.storedLength !== storedLength) throw new RedactionNeeded(file.path);
    storedBytes += storedLength;
    return { findings: scanner.findings, storedLength };
  };

  const redactions: SnapshotRedaction[] = [];
  const acks = options.secretAcknowledged ?? [];
  const record = (entry: ManifestFile): void => {
    files.push(entry);
    for (const r of entry.redactions ?? [])
      redactions.push({
        path: entry.path,
        line: r.line,
        rule: r.rule,
        acknowledged: isAcknowledged(acks, entry.path, r.line, r.rule),
      });
  };
  const asRedactions = (findings: readonly SecretFinding[]) =>
    findings.map((f) => ({ line: f.line, rule: f.rule }));

  /**
   * A file that holds (or held) a secret. An event log whose source still begins with the bytes
   * its parent proved (source sha256) and whose redacted prefix is the parent's stored copy
   * (stored sha256) gets only its new lines, redacted; anything else is stored whole, redacted.
   */
  const archiveWithRedaction = async (
    file: PlannedFile,
    prior: ManifestFile | undefined,
    priorSourceSize: number,
    priorSourceSha256: string,
    carried: Partial<Pick<ManifestFile, "sourceSize" | "sourceSha256" | "redactions">>,
    length: number,
    base: { path: string; size: number; mode: number; mtimeMs: number },
  ): Promise<void> => {
    const abs = join(srcDir, file.path);
    if (prior && isEventLog(file.path) && priorSourceSize <= length) {
      const source = createHash("sha256");
      const stored = createHash("sha256");
      let lines = 0;
      if (prior.sourceSha256) {
        const prefixScanner = new SecretScanner(file.path, { allow, redact: true });
        await countRange(fs, abs, 0, priorSourceSize, (chunk) => {
          source.update(chunk);
          lines += countNewlines(chunk);
          stored.update(prefixScanner.push(chunk)!);
        });
        stored.update(prefixScanner.finish()!);
      } else {
        await countRange(fs, abs, 0, priorSourceSize, (chunk) => {
          source.update(chunk);
          stored.update(chunk);
          lines += countNewlines(chunk);
        });
      }
      if (source.copy().digest("hex") === priorSourceSha256 && stored.copy().digest("hex") === prior.sha256) {
        doneBytes += priorSourceSize;
        if (length === priorSourceSize) {
          record({ ...base, size: prior.size, sha256: prior.sha256, ...carried, stored: "unchanged" });
          return;
        }
        const { findings, storedLength } = await archiveRedacted(
          file,
          source,
          stored,
          priorSourceSize,
          length,
          lines + 1,
        );
        const sourceSha256 = source.digest("hex");
        const sha256 = stored.digest("hex");
        const all = [...(prior.redactions ?? []), ...asRedactions(findings)];
        record({
          ...base,
          size: prior.size + storedLength,
          sha256,
          ...(sha256 !== sourceSha256 ? { sourceSize: length, sourceSha256, redactions: all } : {}),
          stored: "append",
          appendOffset: prior.size,
          prefixSha256: prior.sha256,
        });
        return;
      }
      warnings.push({
        path: file.path,
        reason: "log was rewritten since the parent (or its redactions differ); stored whole",
      });
    }
    const source = createHash("sha256");
    const stored = createHash("sha256");
    const { findings, storedLength } = await archiveRedacted(file, source, stored, 0, length, 1);
    const sourceSha256 = source.digest("hex");
    const sha256 = stored.digest("hex");
    record({
      ...base,
      size: storedLength,
      sha256,
      ...(sha256 !== sourceSha256
        ? { sourceSize: length, sourceSha256, redactions: asRedactions(findings) }
        : {}),
      stored: "whole",
    });
  };

  try {
    for (const file of contents.files) {
      const abs = join(srcDir, file.path);
      const prior = parentFiles.get(file.path);
      // Planned as a plain file; if it or a folder above it became a link since, do not read through it.
      if (!(await isPlainFileInside(fs, srcDir, file.path))) throw changedIntoLink(abs);
      if (isJsonStateFile(file.path)) {
        const stable = await readStableJson(fs, abs, sleep);
        if (!stable.parses)
          warnings.push({ path: file.path, reason: "not valid JSON (stable across reads); kept as is" });
        // A value inside a JSON string is replaced inside it: the stored file stays valid JSON.
        const redacted = redactBytes(file.path, stable.content, allow);
        const sha256 = sha256Hex(redacted.content);
        const entry: Omit<ManifestFile, "stored"> = {
          path: file.path,
          size: redacted.content.length,
          mode: file.stat.mode,
          sha256,
          mtimeMs: stable.mtimeMs,
          ...(redacted.changed
            ? {
                sourceSize: stable.content.length,
                sourceSha256: sha256Hex(stable.content),
                redactions: asRedactions(redacted.findings),
              }
            : {}),
        };
        if (prior && prior.sha256 === sha256) {
          record({ ...entry, stored: "unchanged" });
        } else {
          await ensureDirs(file.path);
          await writer.addBuffer(file.path, redacted.content, mtime);
          storedBytes += redacted.content.length;
          record({ ...entry, stored: "whole" });
        }
        doneBytes += file.stat.size;
        progress(file.path);
        continue;
      }

      // Logs are captured up to their last complete line; other files (releases/, cache/) whole.
      const length = isEventLog(file.path)
        ? await completeLinesLength(fs, abs, file.stat.size)
        : file.stat.size;
      const base = { path: file.path, size: length, mode: file.stat.mode, mtimeMs: file.stat.mtimeMs };
      const priorSourceSize = prior ? (prior.sourceSize ?? prior.size) : 0;
      const priorSourceSha256 = prior ? (prior.sourceSha256 ?? prior.sha256) : "";
      const carried = prior?.sourceSha256
        ? {
            sourceSize: prior.sourceSize!,
            sourceSha256: prior.sourceSha256,
            redactions: prior.redactions ?? [],
          }
        : {};
      if (prior && priorSourceSize === length && prior.mtimeMs === file.stat.mtimeMs) {
        // Same size and modification time as in the parent: not read again (as restic and borg do).
        record({ ...base, size: prior.size, sha256: prior.sha256, ...carried, stored: "unchanged" });
        doneBytes += file.stat.size;
        continue;
      }
      if (redact.has(file.path)) {
        await archiveWithRedaction(file, prior, priorSourceSize, priorSourceSha256, carried, length, base);
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
            record({ ...base, sha256: prefixSha256, stored: "unchanged" });
            continue;
          }
          await archiveRange(file, hash, prior.size, length);
          record({
            ...base,
            sha256: hash.digest("hex"),
            stored: "append",
            appendOffset: prior.size,
            prefixSha256,
          });
          continue;
        }
        warnings.push({ path: file.path, reason: "log was rewritten since the parent; stored whole" });
        const fresh = createHash("sha256");
        await archiveRange(file, fresh, 0, length);
        record({ ...base, sha256: fresh.digest("hex"), stored: "whole" });
        continue;
      }
      if (prior && isEventLog(file.path) && prior.size > length)
        warnings.push({
          path: file.path,
          reason: "log is shorter than in the parent (truncated); stored whole",
        });
      await archiveRange(file, hash, 0, length);
      record({ ...base, sha256: hash.digest("hex"), stored: "whole" });
    }

    // Every file is in; end the member so the manifest can say where each one starts.
    const gzipMembers = await writer.cut();
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
      encryption: options.encryptor
        ? { type: "age", recipients: options.encryptor.recipients }
        : { type: "none" },
      files,
      absent: contents.absent,
      deleted,
      excluded: contents.excluded,
      skipped: contents.skipped,
      warnings,
      totals: { files: files.length, bytes: files.reduce((n, f) => n + f.size, 0), storedBytes },
      scannerRules: SCANNER_RULES_VERSION,
      gzipMembers,
      scannerAllow: (options.secretAllow ?? [])
        .filter((a) => present.has(a.path))
        .map((a) => ({ path: a.path, rule: a.rule })),
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
      redactions,
    };
  } catch (err) {
    writer.abort();
    await staged.abort();
    await written.catch(() => undefined);
    throw err;
  } finally {
    if (!options.scanLane) await scanLane.close();
  }
}
