import { Parser, type ReadEntry } from "tar";
import { Readable } from "node:stream";
import { gunzip } from "node:zlib";
import { IntegrityError, SafetyError } from "../errors.js";
import type { GzipMembers } from "./writer.js";
import type { Manifest } from "../manifest/schema.js";

export interface ArchiveEntryInfo {
  /** canonical (canonicalEntryPath): no "." segment, no empty segment, no leading or trailing "/" */
  path: string;
  type: "file" | "directory";
  size: number;
  mode: number;
}

export interface ReadArchiveOptions {
  /** where the archive came from, for messages */
  label: string;
  /** called for each file or directory entry, in order; consume `body` before resolving */
  onEntry(entry: ArchiveEntryInfo, body: Readable): Promise<void>;
  /** refuse once the entries' declared sizes add up past this (decompression bombs) */
  maxTotalBytes: number;
  /** refuse once the stream has expanded past this many times its compressed size (node-tar's guard) */
  maxDecompressionRatio: number;
  /** the manifest's member index: members are inflated in parallel, each to exactly its recorded size */
  gzipMembers?: GzipMembers;
  /** with gzipMembers: refuse an index that declares more tar bytes than this */
  maxTarBytes?: number;
  /** the artifact's size: an index whose members do not fit in it is not this artifact's (read it in sequence) */
  artifactBytes?: number;
}

/** Members inflating at once in libuv's threadpool. */
const INFLATE_IN_FLIGHT = 4;
/** The unindexed tail holds only the manifest's entry and the end-of-archive blocks. */
const MAX_TAIL_BYTES = 64 * 1024 * 1024;
/** The writer makes 1 MiB members; anything far larger is not ours. */
const MAX_MEMBER_PLAIN = 4 * 1024 * 1024;

/** The most tar bytes a manifest's snapshot can take: its stored bytes, plus headers, pax records and padding per entry. */
export function tarBytesBound(manifest: Manifest): number {
  let bound = manifest.totals.storedBytes + 1024 * 1024 + Buffer.byteLength(JSON.stringify(manifest)) * 2;
  for (const f of manifest.files)
    bound += (3 * 512 + 2 * Buffer.byteLength(f.path)) * (1 + f.path.split("/").length);
  return bound;
}

function inflate(
  member: Buffer,
  maxOutputLength: number,
  chunkSize = maxOutputLength + 1024,
): Promise<Buffer> {
  // An output buffer a little larger than the member's recorded size: one callback on the main
  // thread per member instead of one per 16 KiB (which cost more than the inflating itself).
  return new Promise((resolve, reject) =>
    gunzip(member, { maxOutputLength, chunkSize }, (err, out) => (err ? reject(err) : resolve(out))),
  );
}

/**
 * The plain tar stream of an artifact whose manifest indexes its gzip members: each member is cut
 * out by its recorded length and inflated in the threadpool, several at once, and must come to
 * exactly its recorded size (no member can expand past it: the bomb guard holds per member). The
 * unindexed tail (the manifest's entry) is inflated last, under a fixed cap.
 */
function inflateMembers(
  source: Readable,
  members: GzipMembers,
  label: string,
  maxTarBytes: number,
): Readable {
  return Readable.from(new MemberInflation(members, label, maxTarBytes).plainTar(source), {
    objectMode: false,
  });
}

/** A member cut out of the artifact and inflating in the threadpool. */
interface InflatingMember {
  plain: number;
  out: Promise<Buffer>;
  member: Buffer;
  index: number;
}

const startsAsGzip = (b: Buffer) => b.length >= 18 && b[0] === 0x1f && b[1] === 0x8b && b[2] === 8;

/** A member cut with a gzip header at its start and its recorded size in its trailer (ISIZE) lines up with the artifact. */
const linesUp = (member: Buffer, plain: number) =>
  startsAsGzip(member) && member.readUInt32LE(member.length - 4) === plain % 2 ** 32;

/**
 * One indexed artifact's inflation: cut (the member being gathered), inflate (at most
 * INFLATE_IN_FLIGHT at once), settle (in order, each to exactly its recorded size), then the
 * tail. Its state is fields, so the per-chunk loop allocates nothing but the members it cuts.
 */
class MemberInflation {
  private readonly queue: InflatingMember[] = [];
  /** the member being cut, and the bytes of it gathered so far */
  private index = 0;
  private parts: Buffer[] = [];
  private have = 0;
  /** what follows the indexed members: the manifest's entry and the end-of-archive blocks */
  private readonly tail: Buffer[] = [];
  private tailBytes = 0;

  constructor(
    private readonly members: GzipMembers,
    private readonly label: string,
    private readonly maxTarBytes: number,
  ) {}

  async *plainTar(source: Readable): AsyncGenerator<Buffer> {
    this.checkDeclared();
    const count = this.members.compressed.length;
    for await (const raw of source) {
      let chunk = raw as Buffer;
      while (chunk.length > 0 && this.index < count) {
        chunk = this.cut(chunk);
        // a member started inflating only when it was whole: the queue grows nowhere else
        while (this.queue.length >= INFLATE_IN_FLIGHT) yield await this.settle();
      }
      if (chunk.length > 0) this.keepTail(chunk);
    }
    if (this.index < count)
      throw indexDisagrees(this.label, `it ends inside gzip member ${this.index + 1} of ${count}`);
    while (this.queue.length > 0) yield await this.settle();
    if (this.tailBytes === 0)
      throw indexDisagrees(
        this.label,
        "nothing follows the indexed members: the manifest's entry is missing",
      );
    const last = Buffer.concat(this.tail);
    try {
      yield await inflate(last, MAX_TAIL_BYTES, 64 * 1024);
    } catch (err) {
      throw this.tailFailure(err, last);
    }
  }

  /** An index that declares more than the manifest's snapshot can hold is refused before a byte is inflated. */
  private checkDeclared(): void {
    const declared = this.members.plain.reduce((n, p) => n + p, 0);
    if (declared > this.maxTarBytes)
      throw indexTooLarge(
        this.label,
        `its member index declares ${declared} bytes of tar, at most ${this.maxTarBytes} expected`,
      );
    if (this.members.plain.some((p) => p > MAX_MEMBER_PLAIN))
      throw indexTooLarge(this.label, `a member declares more than ${MAX_MEMBER_PLAIN} bytes`);
  }

  /** Take the current member's bytes from the chunk; once the member is whole, start inflating it. Returns the rest. */
  private cut(chunk: Buffer): Buffer {
    const { members } = this;
    const take = Math.min(chunk.length, members.compressed[this.index]! - this.have);
    this.parts.push(chunk.subarray(0, take));
    this.have += take;
    if (this.have === members.compressed[this.index]) {
      const member = this.parts.length === 1 ? this.parts[0]! : Buffer.concat(this.parts);
      const out = inflate(member, members.plain[this.index]!);
      out.catch(() => undefined);
      this.queue.push({ plain: members.plain[this.index]!, out, member, index: this.index });
      this.parts = [];
      this.have = 0;
      this.index++;
    }
    return chunk.subarray(take);
  }

  /** Bytes past the indexed members, kept (copied: the source may reuse its buffer) up to a fixed cap. */
  private keepTail(chunk: Buffer): void {
    this.tailBytes += chunk.length;
    if (this.tailBytes > MAX_TAIL_BYTES)
      throw indexTooLarge(this.label, `more than ${MAX_TAIL_BYTES} bytes follow the indexed members`);
    this.tail.push(Buffer.from(chunk));
  }

  /** The oldest member's plain bytes, exactly its recorded size, or the error that says whose fault it is. */
  private async settle(): Promise<Buffer> {
    const next = this.queue.shift()!;
    let out: Buffer;
    try {
      out = await next.out;
    } catch (err) {
      if (overflowed(err))
        throw indexTooLarge(this.label, `a member inflates past its recorded ${next.plain} bytes`);
      // a cut that lines up and fails to inflate is damaged bytes (exit 3); one that does not is the index's (exit 4)
      if (linesUp(next.member, next.plain))
        throw memberDamaged(this.label, `gzip member ${next.index + 1}`, (err as Error).message, err);
      throw indexDisagrees(this.label, `a gzip member does not inflate: ${(err as Error).message}`, err);
    }
    if (out.length !== next.plain)
      throw indexDisagrees(
        this.label,
        `a gzip member inflates to ${out.length} bytes, its index says ${next.plain}`,
      );
    return out;
  }

  /** Why the unindexed tail did not inflate. */
  private tailFailure(err: unknown, last: Buffer): unknown {
    if (overflowed(err))
      return indexTooLarge(this.label, `the unindexed tail inflates past ${MAX_TAIL_BYTES} bytes`);
    if (startsAsGzip(last))
      return memberDamaged(this.label, "the last gzip member", (err as Error).message, err);
    return indexDisagrees(
      this.label,
      `the last gzip member does not inflate: ${(err as Error).message}`,
      err,
    );
  }
}

/** zlib's maxOutputLength was reached: the member expands past what it declares. */
function overflowed(err: unknown): boolean {
  return (err as { code?: string }).code === "ERR_BUFFER_TOO_LARGE" || err instanceof RangeError;
}

/**
 * An index that does not fit the artifact was not written with it: the manifest beside it is not
 * to be trusted. (A restore re-checks the checksum on any failure, so a damaged artifact is still
 * reported as a checksum mismatch.)
 */
function indexDisagrees(label: string, why: string, cause?: unknown): SafetyError {
  return new SafetyError(
    "PAAS_BACKUP_MANIFEST_DISAGREES",
    `archive ${label} disagrees with its manifest's gzip member index: ${why}`,
    {
      path: label,
      remediation:
        "Do not restore this artifact; it or its manifest was altered after it was written. Restore an older verified snapshot.",
      stage: "archive",
      data: { reason: why },
      ...(cause ? { cause: cause as Error } : {}),
    },
  );
}

/** The index declares, or a member inflates to, more than the snapshot it describes. */
function indexTooLarge(label: string, why: string): SafetyError {
  return new SafetyError(
    "PAAS_BACKUP_ARCHIVE_TOO_LARGE",
    `archive ${label} expands past its limit (${why}; decompression bomb guard)`,
    {
      path: label,
      remediation:
        "Do not restore this artifact; its manifest declares more data than the snapshot it describes.",
      stage: "archive",
    },
  );
}

/** A member that lines up with the artifact and still fails to inflate: its bytes are damaged. */
function memberDamaged(label: string, which: string, why: string, cause?: unknown): IntegrityError {
  return new IntegrityError(
    "PAAS_BACKUP_ARCHIVE_CORRUPT",
    `archive ${label} is corrupt: ${which} does not inflate (${why})`,
    {
      path: label,
      remediation:
        "Do not restore this artifact: its bytes are damaged. Restore an older snapshot that verifies, or fetch this one again from the offsite copy.",
      stage: "archive",
      data: { reason: why },
      ...(cause ? { cause: cause as Error } : {}),
    },
  );
}

export interface ReadArchiveResult {
  /** the manifest JSON carried by our trailing "./" entry, or null for a hand-made archive */
  manifestJson: string | null;
  entries: number;
  totalBytes: number;
}

const ALLOWED_TYPES = new Set(["File", "OldFile", "ContiguousFile", "Directory"]);

/**
 * Deeper or longer paths than any si state holds are refused before anything is created: a path
 * nested thousands of levels deep is an attack on whoever walks it, not a file to restore.
 */
export const MAX_ENTRY_DEPTH = 64;
export const MAX_ENTRY_PATH_BYTES = 4096;

/** Why an entry is refused, or null when it is a plain file or folder with a clean relative path. */
export function hostileEntryReason(rawPath: string, type: string): string | null {
  if (!ALLOWED_TYPES.has(type)) return `entry type ${type} (only plain files and folders are restored)`;
  if (/[\u0000-\u001f\u007f]/.test(rawPath)) return "control character in the path";
  if (rawPath.startsWith("/") || /^[A-Za-z]:/.test(rawPath)) return "absolute path";
  if (rawPath.includes("\\")) return "backslash in the path";
  const segments = rawPath.split("/");
  if (segments.includes("..")) return "'..' in the path";
  if (Buffer.byteLength(rawPath) > MAX_ENTRY_PATH_BYTES)
    return `path longer than ${MAX_ENTRY_PATH_BYTES} bytes`;
  if (segments.filter((s) => s !== "" && s !== ".").length > MAX_ENTRY_DEPTH)
    return `path nested deeper than ${MAX_ENTRY_DEPTH} levels`;
  return null;
}

/**
 * The one spelling of an entry's path every rule judges (issue 20): "." and empty segments
 * dropped wherever they stand, so `alerts/./telegram.json` is `alerts/telegram.json` to the
 * exclusions and `./events/audit.jsonl` and `events/./audit.jsonl` are one path to the duplicate
 * check. ".." is never resolved: hostileEntryReason refuses it first. "" is the root entry.
 */
export function canonicalEntryPath(rawPath: string): string {
  return rawPath
    .split("/")
    .filter((segment) => segment !== "" && segment !== ".")
    .join("/");
}

/**
 * Why an entry's (canonical) path cannot stand beside the entries before it, or null: the same
 * path twice, or a path under an earlier file entry, or a file entry where earlier entries put
 * a folder. An extractor would either replace one with the other or fail half way.
 */
export function entryConflictReason(
  path: string,
  type: "file" | "directory",
  earlier: { files: ReadonlySet<string>; folders: ReadonlySet<string> },
): string | null {
  if (earlier.files.has(path)) return "duplicate path";
  if (earlier.folders.has(path)) return type === "file" ? "a file where earlier entries have a folder" : null;
  for (let at = path.lastIndexOf("/"); at > 0; at = path.lastIndexOf("/", at - 1)) {
    const above = path.slice(0, at);
    if (earlier.files.has(above)) return `under ${JSON.stringify(above)}, which an earlier entry made a file`;
  }
  return null;
}

/** Record an entry the reader accepted: its path, and every folder above it. */
function noteEntry(
  path: string,
  type: "file" | "directory",
  earlier: { files: Set<string>; folders: Set<string>; directoryEntries: Set<string> },
): void {
  if (type === "file") earlier.files.add(path);
  else earlier.directoryEntries.add(path);
  for (let at = type === "file" ? path.lastIndexOf("/") : path.length; at > 0;) {
    const folder = path.slice(0, at);
    if (earlier.folders.has(folder)) break;
    earlier.folders.add(folder);
    at = path.lastIndexOf("/", at - 1);
  }
}

function printable(path: string): string {
  return JSON.stringify(path.length > 200 ? `${path.slice(0, 200)}…` : path);
}

/**
 * Stream a tar.gz (or plain tar) and hand each entry to `onEntry` after checking it is safe.
 * Any refusal stops the stream at once: nothing past the hostile entry is read or written.
 */
export function readArchive(artifact: Readable, options: ReadArchiveOptions): Promise<ReadArchiveResult> {
  const source = plainSource(artifact, options);
  return new Promise<ReadArchiveResult>((resolve, reject) =>
    new ArchiveReading(artifact, source, options, resolve, reject).start(),
  );
}

/**
 * What the parser reads: the members inflated in parallel when the manifest indexes them and the
 * index fits the artifact, otherwise the artifact itself (node-tar inflates it in sequence).
 */
function plainSource(artifact: Readable, options: ReadArchiveOptions): Readable {
  const index = options.gzipMembers;
  const fits =
    index &&
    (options.artifactBytes === undefined ||
      index.compressed.reduce((n, c) => n + c, 0) < options.artifactBytes);
  return index && fits ? inflateMembers(artifact, index, options.label, options.maxTarBytes ?? 0) : artifact;
}

/**
 * One archive being read: each entry judged (the root entry's manifest, hostile paths, conflicts
 * with earlier entries, the size limit), then handed to onEntry in order through a queue; the
 * first refusal or parser complaint stops everything (fail), and the end resolves once the queue
 * has drained.
 */
class ArchiveReading {
  private manifestJson: string | null = null;
  private entries = 0;
  private totalBytes = 0;
  private failed = false;
  private readonly earlier = {
    files: new Set<string>(),
    folders: new Set<string>(),
    directoryEntries: new Set<string>(),
  };
  /** onEntry calls, one after the other, in archive order */
  private queue: Promise<void> = Promise.resolve();
  private readonly parser: Parser;

  constructor(
    private readonly artifact: Readable,
    private readonly source: Readable,
    private readonly options: ReadArchiveOptions,
    private readonly resolve: (result: ReadArchiveResult) => void,
    private readonly reject: (err: unknown) => void,
  ) {
    this.parser = new Parser({ strict: true, maxDecompressionRatio: options.maxDecompressionRatio });
  }

  start(): void {
    const { parser, source } = this;
    parser.on("entry", (entry: ReadEntry) => this.onEntry(entry));
    parser.on("warn", (code: string, message: string) => {
      if (/decompression ratio/.test(String(message)))
        return this.fail(archiveTooLarge(this.options.label, String(message)));
      this.fail(archiveCorrupt(this.options.label, `${code}: ${message}`));
    });
    parser.on("error", (err: Error) => {
      if (/decompression ratio/.test(err.message))
        return this.fail(archiveTooLarge(this.options.label, err.message));
      this.fail(archiveCorrupt(this.options.label, err.message, err));
    });
    parser.on("end", () => {
      void this.queue.then(() => {
        if (!this.failed)
          this.resolve({
            manifestJson: this.manifestJson,
            entries: this.entries,
            totalBytes: this.totalBytes,
          });
      });
    });
    source.on("error", (err) => this.fail(err));
    source.pipe(parser);
  }

  /** The first failure stops the read: the source is cut off and destroyed, later ones are ignored. */
  private fail(err: unknown): void {
    if (this.failed) return;
    this.failed = true;
    this.source.unpipe(this.parser);
    this.source.destroy();
    this.artifact.destroy();
    this.reject(err);
  }

  private onEntry(entry: ReadEntry): void {
    if (this.failed) {
      entry.resume();
      return;
    }
    const raw = entry.path;
    const path = canonicalEntryPath(raw);
    const type = entry.type === "Directory" ? "directory" : "file";
    if (path === "" && entry.type === "Directory") {
      // The root entry: ours carries the manifest; the reference flow's "./" carries nothing.
      const comment = (entry as unknown as { comment?: string }).comment;
      if (typeof comment === "string" && comment.startsWith("{")) this.manifestJson = comment;
      entry.resume();
      return;
    }
    const reason = this.refusalOf(raw, path, type, entry.type);
    if (reason) {
      entry.resume();
      this.fail(hostileEntry(this.options.label, raw, reason));
      return;
    }
    noteEntry(path, type, this.earlier);
    this.entries++;
    this.totalBytes += entry.size ?? 0;
    if (this.totalBytes > this.options.maxTotalBytes) {
      entry.resume();
      this.fail(
        archiveTooLarge(
          this.options.label,
          `${this.options.maxTotalBytes} bytes at entry ${printable(path)}`,
        ),
      );
      return;
    }
    const info: ArchiveEntryInfo = {
      path,
      type,
      size: entry.size ?? 0,
      mode: (entry.mode ?? 0o600) & 0o777,
    };
    entry.pause();
    this.queue = this.queue.then(() => this.handOver(info, entry));
  }

  /** Why an entry cannot be restored (its type or path, or a clash with the entries before it), or null. */
  private refusalOf(raw: string, path: string, type: "file" | "directory", tarType: string): string | null {
    return (
      hostileEntryReason(raw, tarType) ??
      (path === "" ? "empty path" : null) ??
      (type === "directory" && this.earlier.directoryEntries.has(path) ? "duplicate path" : null) ??
      entryConflictReason(path, type, this.earlier)
    );
  }

  /** Hand an accepted entry to onEntry in its turn; after a failure its body is only drained. */
  private async handOver(info: ArchiveEntryInfo, entry: ReadEntry): Promise<void> {
    if (this.failed) {
      entry.resume();
      return;
    }
    try {
      await this.options.onEntry(info, entry as unknown as Readable);
    } catch (err) {
      entry.resume();
      this.fail(err);
    }
  }
}

function archiveTooLarge(label: string, detail: string): SafetyError {
  return new SafetyError(
    "PAAS_BACKUP_ARCHIVE_TOO_LARGE",
    `archive ${label} expands past its limit (${detail}; decompression bomb guard)`,
    {
      path: label,
      remediation:
        "Do not restore this artifact. If it is a genuine hand-made snapshot (no manifest) of very compressible data, pass a larger --max-expansion (default 200) to restore or verify.",
      stage: "archive",
    },
  );
}

function archiveCorrupt(label: string, detail: string, cause?: Error): IntegrityError {
  return new IntegrityError("PAAS_BACKUP_ARCHIVE_CORRUPT", `archive ${label} is corrupt (${detail})`, {
    path: label,
    remediation: "Restore an older snapshot that verifies, or fetch this one again from the offsite copy.",
    stage: "archive",
    ...(cause ? { cause } : {}),
  });
}

function hostileEntry(label: string, raw: string, reason: string): SafetyError {
  return new SafetyError(
    "PAAS_BACKUP_HOSTILE_ENTRY",
    `refused archive entry ${printable(raw)} in ${label}: ${reason}`,
    {
      path: label,
      remediation:
        "Do not restore this artifact; it was not written by paas-backup or has been tampered with. Restore an older verified snapshot.",
      stage: "archive",
      data: { entry: raw, reason },
    },
  );
}
