import { createHash, type Hash } from "node:crypto";
import { Transform, type TransformCallback } from "node:stream";
import type { FileSystem } from "../fs/types.js";
import { SafetyError } from "../errors.js";
import { MEMBER_BYTES, type AlignedPart, type ArchiveWriter } from "../archive/writer.js";
import type { ManifestEntryNote, ManifestFile } from "../manifest/schema.js";
import { isEventLog, isJsonStateFile } from "../policy/selection.js";
import { redactBytes, SecretScanner, type SecretAllowance, type SecretFinding } from "../policy/secrets.js";
import { join } from "../util/paths.js";
import { sha256Hex } from "../util/hash.js";
import { isPlainFileInside } from "../util/no-follow.js";
import type { PlannedFile } from "./plan.js";
import { completeLinesLength, readStableJson } from "./read-stable.js";
import { openChunks, ReadBuffers, type ChunkReader } from "./read-chunks.js";
import type { FileScan, ScanLane } from "./scan-lane.js";
import type { MemberCache } from "./member-cache.js";

import { isAcknowledged, type SecretAcknowledgement } from "../policy/secrets.js";
export { isAcknowledged, type SecretAcknowledgement } from "../policy/secrets.js";

export interface SnapshotRedaction {
  path: string;
  line: number;
  rule: string;
  acknowledged: boolean;
}

/** A file's scan found a secret after some of its bytes were already in the archive: take the snapshot again, redacting it from the start. */
export class RedactionNeeded extends Error {
  constructor(readonly path: string) {
    super(`${path} needs redaction`);
  }
}

/** Chunks read ahead of the scanner's answers: enough to keep a worker busy, 4 MiB at 512 KiB reads. */
const SCAN_AHEAD = 8;

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

const asRedactions = (findings: readonly SecretFinding[]) =>
  findings.map((f) => ({ line: f.line, rule: f.rule }));

/** What every manifest entry of a file carries before the way it was stored decides the rest. */
type EntryBase = { path: string; size: number; mode: number; mtimeMs: number };

/** The source size, hash and redactions a file's entry carries over from its parent's entry. */
type Carried = Partial<Pick<ManifestFile, "sourceSize" | "sourceSha256" | "redactions">>;

export interface ArchiverOptions {
  fs: FileSystem;
  /** the context's folder in the state root */
  srcDir: string;
  writer: ArchiveWriter;
  scanLane: ScanLane;
  allow: readonly SecretAllowance[];
  acks: readonly SecretAcknowledgement[];
  /** files redacted from the start (known leaks, or a restart's) */
  redact: ReadonlySet<string>;
  /** the modification time of every entry in the tar: the snapshot's start */
  mtime: Date;
  sleep: (ms: number) => Promise<void>;
  totalBytes: number;
  /** a full's member cache: members of logs that only grew are copied from it, and this full's are kept in it */
  memberCache?: MemberCache;
  onProgress?: (progress: { phase: "archive"; path: string; doneBytes: number; totalBytes: number }) => void;
}

/**
 * Step 4: the archiver. It takes the planned files one at a time, decides how each is stored
 * (state JSON, unchanged, redacted, log append, whole: one store method each), writes what needs
 * writing into the artifact and records the manifest entry. Its counters are its fields.
 */
export class SnapshotArchiver {
  readonly files: ManifestFile[] = [];
  readonly warnings: ManifestEntryNote[] = [];
  readonly redactions: SnapshotRedaction[] = [];
  /** bytes of file content written into this artifact (before compression) */
  storedBytes = 0;
  /** bytes of source read or proven so far, for progress */
  doneBytes = 0;
  /** bytes of log data whose gzip members were copied from the member cache */
  reusedBytes = 0;
  private readonly dirsAdded = new Set<string>();
  private readonly readBuffers = new ReadBuffers();

  constructor(private readonly o: ArchiverOptions) {}

  private progress(path: string): void {
    this.o.onProgress?.({ phase: "archive", path, doneBytes: this.doneBytes, totalBytes: this.o.totalBytes });
  }

  private record(entry: ManifestFile): void {
    this.files.push(entry);
    for (const r of entry.redactions ?? [])
      this.redactions.push({
        path: entry.path,
        line: r.line,
        rule: r.rule,
        acknowledged: isAcknowledged(this.o.acks, entry.path, r.line, r.rule),
      });
  }

  private async ensureDirs(path: string): Promise<void> {
    const parts = path.split("/");
    for (let i = 1; i < parts.length; i++) {
      const d = parts.slice(0, i).join("/");
      if (!this.dirsAdded.has(d)) {
        this.dirsAdded.add(d);
        await this.o.writer.addDirectory(d, this.o.mtime);
      }
    }
  }

  /** Store one planned file the way its kind, its parent's entry and the known leaks call for. */
  async store(file: PlannedFile, prior: ManifestFile | undefined): Promise<void> {
    const { fs, srcDir } = this.o;
    const abs = join(srcDir, file.path);
    // Planned as a plain file; if it or a folder above it became a link since, do not read through it.
    if (!(await isPlainFileInside(fs, srcDir, file.path))) throw changedIntoLink(abs);
    if (isJsonStateFile(file.path)) return this.storeStateJson(file, prior);

    // Logs are captured up to their last complete line; other files (releases/, cache/) whole.
    const length = isEventLog(file.path)
      ? await completeLinesLength(fs, abs, file.stat.size)
      : file.stat.size;
    const base: EntryBase = {
      path: file.path,
      size: length,
      mode: file.stat.mode,
      mtimeMs: file.stat.mtimeMs,
    };
    const priorSourceSize = prior ? (prior.sourceSize ?? prior.size) : 0;
    const carried: Carried = prior?.sourceSha256
      ? {
          sourceSize: prior.sourceSize!,
          sourceSha256: prior.sourceSha256,
          redactions: prior.redactions ?? [],
        }
      : {};
    if (prior && priorSourceSize === length && prior.mtimeMs === file.stat.mtimeMs)
      return this.storeUnchanged(file, prior, carried, base);
    if (this.o.redact.has(file.path)) return this.storeRedacted(file, prior, carried, length, base);
    if (prior && isEventLog(file.path) && prior.size <= length)
      return this.storeLogAppend(file, prior, length, base);
    if (prior && isEventLog(file.path) && prior.size > length)
      this.warnings.push({
        path: file.path,
        reason: "log is shorter than in the parent (truncated); stored whole",
      });
    return this.storeWhole(file, length, base);
  }

  /** A state JSON file: read until stable, redacted inside its strings (it stays valid JSON), stored whole unless its parent holds the same bytes. */
  private async storeStateJson(file: PlannedFile, prior: ManifestFile | undefined): Promise<void> {
    const { fs, srcDir, allow } = this.o;
    const stable = await readStableJson(fs, join(srcDir, file.path), this.o.sleep);
    if (!stable.parses)
      this.warnings.push({ path: file.path, reason: "not valid JSON (stable across reads); kept as is" });
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
      this.record({ ...entry, stored: "unchanged" });
    } else {
      await this.ensureDirs(file.path);
      await this.o.writer.addBuffer(file.path, redacted.content, this.o.mtime);
      this.storedBytes += redacted.content.length;
      this.record({ ...entry, stored: "whole" });
    }
    this.doneBytes += file.stat.size;
    this.progress(file.path);
  }

  /** Same size and modification time as in the parent: not read again (as restic and borg do). */
  private storeUnchanged(file: PlannedFile, prior: ManifestFile, carried: Carried, base: EntryBase): void {
    this.record({ ...base, size: prior.size, sha256: prior.sha256, ...carried, stored: "unchanged" });
    this.doneBytes += file.stat.size;
  }

  /**
   * Append-only log: prove the old content is byte for byte what the parent stored, then store
   * only the new lines. A log whose old content differs is stored whole.
   */
  private async storeLogAppend(
    file: PlannedFile,
    prior: ManifestFile,
    length: number,
    base: EntryBase,
  ): Promise<void> {
    const hash = createHash("sha256");
    await this.hashPrefix(join(this.o.srcDir, file.path), hash, prior.size);
    const prefixSha256 = hash.copy().digest("hex");
    if (prefixSha256 !== prior.sha256) {
      this.warnings.push({ path: file.path, reason: "log was rewritten since the parent; stored whole" });
      return this.storeWhole(file, length, base);
    }
    this.doneBytes += prior.size;
    if (length === prior.size) {
      this.record({ ...base, sha256: prefixSha256, stored: "unchanged" });
      return;
    }
    await this.archiveRange(file, hash, prior.size, length);
    this.record({
      ...base,
      sha256: hash.digest("hex"),
      stored: "append",
      appendOffset: prior.size,
      prefixSha256,
    });
  }

  /** The file's first `length` bytes, scanned on their way in (a finding restarts the snapshot with it redacted). */
  private async storeWhole(file: PlannedFile, length: number, base: EntryBase): Promise<void> {
    if (isEventLog(file.path)) return this.storeLogAligned(file, length, base);
    const hash = createHash("sha256");
    await this.archiveRange(file, hash, 0, length);
    this.record({ ...base, sha256: hash.digest("hex"), stored: "whole" });
  }

  /**
   * An event log stored whole, its data in gzip members of its own (ArchiveWriter.addAlignedStream).
   * With a member cache that holds the log: when the log's first `cached.size` bytes hash to the
   * sha256 the last full recorded, that full's members of those bytes are copied (each checked
   * against the hash the cache recorded; one that fails is compressed from the source) and only
   * the rest is compressed. Only bytes past the proven prefix are scanned: the prefix was scanned
   * by that full under the same rules version, which the cache checks.
   */
  private async storeLogAligned(file: PlannedFile, length: number, base: EntryBase): Promise<void> {
    const { fs, writer, mtime, memberCache } = this.o;
    const abs = join(this.o.srcDir, file.path);
    const cached = memberCache?.candidate(file.path);
    let hash = createHash("sha256");
    let proven = 0;
    if (cached && cached.size <= length) {
      await this.hashPrefix(abs, hash, cached.size);
      if (hash.copy().digest("hex") === cached.sha256) proven = cached.size;
      else hash = createHash("sha256");
    }
    await this.ensureDirs(file.path);
    if (proven > 0) {
      this.doneBytes += proven;
      this.progress(file.path);
    }
    const reused = proven > 0 ? cached!.members.length : 0;
    const parts = async function* (this: SnapshotArchiver): AsyncGenerator<AlignedPart> {
      if (reused > 0) {
        let k = 0;
        for await (const member of memberCache!.members(cached!)) {
          if (member) {
            this.reusedBytes += MEMBER_BYTES;
            yield member;
          } else yield* this.rawRange(abs, k * MEMBER_BYTES, (k + 1) * MEMBER_BYTES);
          k++;
        }
      }
      // proven bytes past the last whole member: compressed again, not scanned again
      yield* this.rawRange(abs, reused * MEMBER_BYTES, proven);
      if (length > proven) {
        const chunks = await openChunks(fs, abs, proven, length, this.readBuffers);
        let scan: FileScan;
        try {
          scan = this.o.scanLane.file(file.path, this.o.allow, length - proven);
        } catch (err) {
          await chunks.close();
          throw err;
        }
        yield* scannedChunks(file.path, chunks, hash, scan, (n) => {
          this.doneBytes += n;
          this.progress(file.path);
        });
      }
    }.call(this);
    await writer.addAlignedStream(file.path, parts, length, mtime, memberCache?.capture(file.path, length));
    this.storedBytes += length;
    this.record({ ...base, sha256: hash.digest("hex"), stored: "whole" });
  }

  /** Bytes [start, end) of a file as they are: bytes already proven, neither hashed nor scanned again. */
  private async *rawRange(abs: string, start: number, end: number): AsyncGenerator<Buffer> {
    if (end <= start) return;
    const chunks = await openChunks(this.o.fs, abs, start, end, this.readBuffers);
    try {
      let seen = 0;
      for (let chunk = await chunks.next(); chunk; chunk = await chunks.next()) {
        seen += chunk.length;
        yield chunk;
        chunks.release(chunk);
      }
      if (seen !== end - start)
        throw new Error(`${abs} ended at ${start + seen} of ${end} bytes while it was archived`);
    } finally {
      await chunks.close();
    }
  }

  /** Hash a file's first `length` bytes (the proof that a log only grew), in the snapshot's reusable read buffers. */
  private async hashPrefix(abs: string, hash: Hash, length: number): Promise<void> {
    if (length <= 0) return;
    const chunks = await openChunks(this.o.fs, abs, 0, length, this.readBuffers);
    try {
      for (let chunk = await chunks.next(); chunk; chunk = await chunks.next()) {
        hash.update(chunk);
        chunks.release(chunk);
      }
    } finally {
      await chunks.close();
    }
  }

  /**
   * A file that holds (or held) a secret. An event log whose source still begins with the bytes
   * its parent proved (source sha256) and whose redacted prefix is the parent's stored copy
   * (stored sha256) gets only its new lines, redacted; anything else is stored whole, redacted.
   */
  private async storeRedacted(
    file: PlannedFile,
    prior: ManifestFile | undefined,
    carried: Carried,
    length: number,
    base: EntryBase,
  ): Promise<void> {
    const { fs, allow } = this.o;
    const abs = join(this.o.srcDir, file.path);
    const priorSourceSize = prior ? (prior.sourceSize ?? prior.size) : 0;
    const priorSourceSha256 = prior ? (prior.sourceSha256 ?? prior.sha256) : "";
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
        this.doneBytes += priorSourceSize;
        if (length === priorSourceSize) {
          this.record({ ...base, size: prior.size, sha256: prior.sha256, ...carried, stored: "unchanged" });
          return;
        }
        const { findings, storedLength } = await this.archiveRedacted(
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
        this.record({
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
      this.warnings.push({
        path: file.path,
        reason: "log was rewritten since the parent (or its redactions differ); stored whole",
      });
    }
    const source = createHash("sha256");
    const stored = createHash("sha256");
    const { findings, storedLength } = await this.archiveRedacted(file, source, stored, 0, length, 1);
    const sourceSha256 = source.digest("hex");
    const sha256 = stored.digest("hex");
    this.record({
      ...base,
      size: storedLength,
      sha256,
      ...(sha256 !== sourceSha256
        ? { sourceSize: length, sourceSha256, redactions: asRedactions(findings) }
        : {}),
      stored: "whole",
    });
  }

  /** Write [start, end) of a file into the artifact as it is, hashed into `hash` and scanned on the way. */
  private async archiveRange(
    file: PlannedFile,
    hash: Hash,
    start: number,
    endExclusive: number,
  ): Promise<void> {
    const { writer, mtime } = this.o;
    await this.ensureDirs(file.path);
    const length = endExclusive - start;
    if (length === 0) {
      await writer.addBuffer(file.path, Buffer.alloc(0), mtime);
    } else {
      const chunks = await openChunks(
        this.o.fs,
        join(this.o.srcDir, file.path),
        start,
        endExclusive,
        this.readBuffers,
      );
      const scan = this.o.scanLane.file(file.path, this.o.allow, length);
      // The archiver pulls straight from the generator (no stream between): a chunk it asked past
      // is one it has copied, which is what lets the generator hand its buffer back for reuse.
      const feed = scannedChunks(file.path, chunks, hash, scan, (n) => {
        this.doneBytes += n;
        this.progress(file.path);
      });
      try {
        await writer.addStream(file.path, feed, length, mtime);
      } finally {
        // The generator closes the file once it runs; an archive that failed before its first
        // chunk (the staged artifact's disk full) never started it.
        await chunks.close();
      }
    }
    this.storedBytes += length;
  }

  /**
   * Store [start, end) of a file with every finding replaced: a first pass counts what redaction
   * does to the size (a tar header needs it before the bytes), the second stores. Returns the
   * findings, with line numbers counted from `firstLine`.
   */
  private async archiveRedacted(
    file: PlannedFile,
    source: Hash,
    stored: Hash,
    start: number,
    endExclusive: number,
    firstLine: number,
  ): Promise<{ findings: SecretFinding[]; storedLength: number }> {
    const { fs, allow, writer, mtime } = this.o;
    await this.ensureDirs(file.path);
    const abs = join(this.o.srcDir, file.path);
    const counting = new SecretScanner(file.path, { allow, firstLine });
    await countRange(fs, abs, start, endExclusive, (chunk) => counting.push(chunk));
    counting.end();
    const storedLength = endExclusive - start + counting.sizeDelta;
    const scanner = new SecretScanner(file.path, { allow, firstLine, redact: true });
    const feed = new RedactingFeed(scanner, source, stored, (n) => {
      this.doneBytes += n;
      this.progress(file.path);
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
    this.storedBytes += storedLength;
    return { findings: scanner.findings, storedLength };
  }
}
