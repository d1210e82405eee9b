import { createHash, randomUUID } from "node:crypto";
import type { FileSystem } from "../fs/types.js";
import { MEMBER_BYTES, type MemberCapture, type ReusedMember } from "../archive/writer.js";
import type { ManifestFile } from "../manifest/schema.js";
import { SCANNER_RULES_VERSION } from "../policy/secrets.js";
import type { SnapshotRef } from "../repository/repository.js";
import { join } from "../util/paths.js";

/**
 * The member cache (issue 23): the gzip members of each event log as the context's last full
 * wrote them, so the next full copies the members of bytes that only grew instead of compressing
 * them again, and compresses only the new tail. It lives in the state root's own paas-backup
 * folder, beside the contexts (never inside one, so never backed up, never in the backup root or
 * offsite), files 0600. It holds the stored bytes of logs stored without redaction: bytes the live
 * log holds in clear anyway. It needs no key (an encrypted full encrypts the spliced stream), and
 * losing it costs one full that compresses everything again.
 *
 * A cached member is reused only when everything it stands for is proven:
 * - the cache names a snapshot of the context that is still listed, whose manifest records the
 *   log with the cache's sha256 and size, stored without redaction;
 * - that manifest's scannerRules, and the cache's, are the current rules version;
 * - the live log's first `size` bytes hash to that sha256 (the caller checks);
 * - the member's bytes hash to what the cache recorded when that full wrote them.
 * Only members wholly inside the old bytes are kept, so the last partial block is always
 * compressed again.
 */
export const MEMBER_CACHE_FORMAT = 2;

/** the cache's index: which full its members are of, and each log's members */
const INDEX = "index.json";

export function memberCacheDir(stateRoot: string, context: string): string {
  return join(stateRoot, ".paas-backup", "member-cache", context);
}

/**
 * Whether the context has a member cache (its index), read or not: a full will likely copy
 * members rather than scan and compress everything (the CLI then starts no scan worker ahead).
 */
export async function hasMemberCache(fs: FileSystem, stateRoot: string, context: string): Promise<boolean> {
  try {
    await fs.lstat(join(memberCacheDir(stateRoot, context), INDEX));
    return true;
  } catch {
    return false;
  }
}

export interface CachedLog {
  path: string;
  /** the log's stored sha256 and size in that full's manifest */
  sha256: string;
  size: number;
  /** member k holds bytes [k * memberBytes, (k + 1) * memberBytes) of the log, gzipped */
  members: { bytes: number; sha256: string }[];
  /**
   * Where the members lie (format 2): blob `name` holds members [from, the next segment's from)
   * end to end from byte `offset`. A full that copies a member refers to the blob it came from
   * rather than writing it again: a daily full writes only the day's new members into the cache
   * (format 1 rewrote every member of every log, as many bytes as the artifact, each hashed again).
   */
  segments: { name: string; from: number; offset: number }[];
}

interface CacheIndex {
  format: number;
  /** the full whose members these are */
  snapshot: string;
  scannerRules: number;
  gzipLevel: number;
  memberBytes: number;
  logs: CachedLog[];
}

/** a blob's name: its writer's nonce and the log's place, never a name an earlier full used (old blobs stay referenced) */
const BLOB_NAME = /^[0-9a-f]{32}-[0-9]+\.members$/;
/** cached members are read in runs of about this many bytes */
const READ_RUN = 1024 * 1024;

function parseIndex(text: string): CacheIndex | null {
  try {
    const v = JSON.parse(text) as CacheIndex;
    if (
      v.format !== MEMBER_CACHE_FORMAT ||
      typeof v.snapshot !== "string" ||
      typeof v.scannerRules !== "number" ||
      typeof v.gzipLevel !== "number" ||
      v.memberBytes !== MEMBER_BYTES ||
      !Array.isArray(v.logs)
    )
      return null;
    for (const log of v.logs)
      if (
        typeof log.path !== "string" ||
        !/^[0-9a-f]{64}$/.test(log.sha256) ||
        !Number.isSafeInteger(log.size) ||
        !Array.isArray(log.members) ||
        log.members.length * MEMBER_BYTES > log.size ||
        !log.members.every(
          (m) => Number.isSafeInteger(m.bytes) && m.bytes > 0 && /^[0-9a-f]{64}$/.test(m.sha256),
        ) ||
        !Array.isArray(log.segments) ||
        (log.members.length > 0 && log.segments[0]?.from !== 0) ||
        !log.segments.every(
          (g, i) =>
            typeof g.name === "string" &&
            BLOB_NAME.test(g.name) &&
            Number.isSafeInteger(g.offset) &&
            g.offset >= 0 &&
            Number.isSafeInteger(g.from) &&
            g.from < log.members.length &&
            (i === 0 || g.from > log.segments[i - 1]!.from),
        )
      )
        return null;
    return v;
  } catch {
    return null;
  }
}

/** A log's members being written for the cache by the full in progress. */
interface Capturing {
  path: string;
  size: number;
  temp: string;
  /** the blob the new members go into, named at commit */
  blob: string;
  members: { bytes: number; sha256: string }[];
  segments: { name: string; from: number; offset: number }[];
  /** bytes of new members in the blob so far */
  blobBytes: number;
  /** where the last member kept ends: a member that starts there continues its segment */
  tail: { name: string; end: number } | null;
  pending: Buffer[];
  pendingBytes: number;
  /** data members seen so far, kept or not */
  seen: number;
}

/** Where a cached member lies, carried with it into the artifact and back into the next index. */
interface CachedAt {
  blob: string;
  offset: number;
  sha256: string;
}

export class MemberCache {
  private readonly capturing: Capturing[] = [];
  private readonly nonce = randomUUID().replaceAll("-", "");
  private dirMade = false;

  private constructor(
    private readonly fs: FileSystem,
    private readonly dir: string,
    private readonly gzipLevel: number,
    private readonly proven: ReadonlyMap<string, CachedLog>,
  ) {}

  /** The cache of a context, its members proven against the snapshots listed (none when it does not hold). */
  static async open(args: {
    fs: FileSystem;
    dir: string;
    existing: readonly SnapshotRef[];
    gzipLevel: number;
  }): Promise<MemberCache> {
    const { fs, dir, existing, gzipLevel } = args;
    const proven = new Map<string, CachedLog>();
    let text: string | null = null;
    try {
      text = Buffer.from(await fs.readFile(join(dir, INDEX))).toString("utf8");
    } catch {
      // no cache yet, or unreadable: the full compresses everything (and writes a new one)
    }
    const index = text === null ? null : parseIndex(text);
    const full = index ? existing.find((s) => s.id === index.snapshot) : undefined;
    const manifest = full?.manifest;
    if (
      index &&
      manifest &&
      index.scannerRules === SCANNER_RULES_VERSION &&
      manifest.scannerRules === SCANNER_RULES_VERSION &&
      index.gzipLevel === gzipLevel
    ) {
      const recorded = new Map<string, ManifestFile>(manifest.files.map((f) => [f.path, f]));
      for (const log of index.logs) {
        const entry = recorded.get(log.path);
        if (
          entry &&
          entry.sha256 === log.sha256 &&
          entry.size === log.size &&
          entry.sourceSha256 === undefined &&
          !entry.redactions?.length
        )
          proven.set(log.path, log);
      }
    }
    return new MemberCache(fs, dir, gzipLevel, proven);
  }

  /** What the cache holds for a log whose bytes it recorded; the caller proves the live prefix. */
  candidate(path: string): CachedLog | undefined {
    const log = this.proven.get(path);
    return log && log.members.length > 0 ? log : undefined;
  }

  /**
   * The log's cached members in order: each one whose bytes hash to what was recorded, or null
   * for one that does not (or cannot be read), which the caller then compresses from the source.
   * Each blob is opened once and read in runs of about READ_RUN bytes.
   */
  async *members(log: CachedLog): AsyncGenerator<ReusedMember | null> {
    for (let g = 0; g < log.segments.length; g++) {
      const { name, from, offset } = log.segments[g]!;
      const to = log.segments[g + 1]?.from ?? log.members.length;
      const blob = join(this.dir, name);
      const reader = this.fs.openRead ? await this.fs.openRead(blob).catch(() => null) : null;
      try {
        let position = offset;
        let k = from;
        while (k < to) {
          let end = k;
          let runBytes = 0;
          while (end < to && (end === k || runBytes + log.members[end]!.bytes <= READ_RUN))
            runBytes += log.members[end++]!.bytes;
          let run: Buffer | null = null;
          try {
            if (reader) {
              // a fresh buffer per run: its members stay referenced until the artifact has them
              run = Buffer.allocUnsafe(runBytes);
              if ((await reader.read(run, position)) !== runBytes) run = null;
            } else {
              run = Buffer.from(await this.fs.readRange(blob, position, runBytes));
              if (run.length !== runBytes) run = null;
            }
          } catch {
            run = null;
          }
          let at = position;
          for (; k < end; k++) {
            const { bytes, sha256 } = log.members[k]!;
            const member = run ? run.subarray(at - position, at - position + bytes) : null;
            yield member && createHash("sha256").update(member).digest("hex") === sha256
              ? { compressed: member, cachedAt: { blob: name, offset: at, sha256 } satisfies CachedAt }
              : null;
            at += bytes;
          }
          position += runBytes;
        }
      } finally {
        await reader?.close().catch(() => undefined);
      }
    }
  }

  /**
   * Keep the data members of a log this full writes (stored without redaction, `size` bytes):
   * the returned function is the writer's capture. Only members wholly inside the data are kept.
   */
  capture(path: string, size: number): MemberCapture {
    const c: Capturing = {
      path,
      size,
      temp: join(this.dir, `tmp-${this.nonce}-${this.capturing.length}.members`),
      blob: `${this.nonce}-${this.capturing.length}.members`,
      members: [],
      segments: [],
      blobBytes: 0,
      tail: null,
      pending: [],
      pendingBytes: 0,
      seen: 0,
    };
    this.capturing.push(c);
    return async (compressed, plain, reused) => {
      const k = c.seen++;
      if (plain !== MEMBER_BYTES || (k + 1) * MEMBER_BYTES > c.size) return;
      if (c.members.length !== k) return; // a member before it was not kept: the run is broken
      const cachedAt = reused?.cachedAt as CachedAt | undefined;
      // copied from the cache, a member stays where it is (proven by the hash just checked); a new one goes into this full's blob
      const at = cachedAt
        ? { name: cachedAt.blob, offset: cachedAt.offset }
        : { name: c.blob, offset: c.blobBytes };
      if (c.tail?.name !== at.name || c.tail.end !== at.offset) c.segments.push({ ...at, from: k });
      c.tail = { name: at.name, end: at.offset + compressed.length };
      if (cachedAt) {
        c.members.push({ bytes: compressed.length, sha256: cachedAt.sha256 });
        return;
      }
      c.members.push({
        bytes: compressed.length,
        sha256: createHash("sha256").update(compressed).digest("hex"),
      });
      c.blobBytes += compressed.length;
      c.pending.push(Buffer.from(compressed));
      c.pendingBytes += compressed.length;
      if (c.pendingBytes >= READ_RUN) await this.flush(c);
    };
  }

  private async flush(c: Capturing): Promise<void> {
    if (c.pending.length === 0) return;
    if (!this.dirMade) {
      await this.fs.mkdir(this.dir, { recursive: true, mode: 0o700 });
      this.dirMade = true;
    }
    const data = Buffer.concat(c.pending);
    c.pending = [];
    c.pendingBytes = 0;
    await this.fs.appendFile(c.temp, data, { mode: 0o600 });
  }

  /**
   * After the full is committed: its members become the cache (an index naming it), and what
   * the cache held before goes. Written last and atomically (index renamed into place), so a crash
   * leaves either cache whole; temp files a crash left are swept here.
   */
  async commit(snapshot: string, recorded: readonly ManifestFile[]): Promise<void> {
    const byPath = new Map(recorded.map((f) => [f.path, f]));
    const logs: CachedLog[] = [];
    const keep = new Set<string>([INDEX]);
    for (const c of this.capturing) {
      const entry = byPath.get(c.path);
      if (!entry || c.members.length === 0 || entry.size !== c.size || entry.sourceSha256 !== undefined)
        continue;
      await this.flush(c);
      if (c.blobBytes > 0) await this.fs.rename(c.temp, join(this.dir, c.blob));
      for (const g of c.segments) keep.add(g.name);
      logs.push({
        path: c.path,
        sha256: entry.sha256,
        size: c.size,
        members: c.members,
        segments: c.segments,
      });
    }
    if (logs.length === 0 && !this.dirMade) {
      await this.fs.rm(this.dir, { recursive: true, force: true });
      return;
    }
    await this.fs.mkdir(this.dir, { recursive: true, mode: 0o700 });
    const index: CacheIndex = {
      format: MEMBER_CACHE_FORMAT,
      snapshot,
      scannerRules: SCANNER_RULES_VERSION,
      gzipLevel: this.gzipLevel,
      memberBytes: MEMBER_BYTES,
      logs,
    };
    const temp = join(this.dir, `tmp-${this.nonce}-index.json`);
    await this.fs.writeFile(temp, `${JSON.stringify(index)}\n`, { mode: 0o600 });
    await this.fs.rename(temp, join(this.dir, INDEX));
    for (const e of await this.fs.readdir(this.dir))
      if (!keep.has(e.name)) await this.fs.rm(join(this.dir, e.name), { force: true });
  }

  /** The full failed or restarts: what it captured goes. */
  async discard(): Promise<void> {
    for (const c of this.capturing) await this.fs.rm(c.temp, { force: true }).catch(() => undefined);
    this.capturing.length = 0;
  }
}
