import { gzip } from "node:zlib";
import type { Writable } from "node:stream";

/**
 * Where each gzip member of an artifact starts and what it holds: members are laid end to end
 * from byte 0, member i is `compressed[i]` bytes of gzip that inflate to `plain[i]` bytes of tar.
 * Recorded in the manifest so restore and verify --deep can inflate members in parallel.
 */
export interface GzipMembers {
  compressed: number[];
  plain: number[];
}

/**
 * deflate level of the members, chosen by measurement (bench/, both shapes, zlib's memLevel 9):
 * level 4 costs 12-15 % less CPU than level 5 on si's usual lines (mixed shape: audit 0.22 to
 * 0.19 s per 32 MiB, deployments 0.34 to 0.29 s) for 4-7 % more bytes, an artifact about 1.06x
 * `gzip -6`, inside issue 14's 1.1x budget; on very regular lines (the project's sample) the two
 * levels write the same size within 2 %. Level 3 and below (zlib's deflate_fast) are no faster
 * on long lines and write 1.1x or more.
 */
export const DEFAULT_GZIP_LEVEL = 4;

/** Tar bytes per gzip member: big enough that the per-member header and the reset window cost nothing measurable. */
export const MEMBER_BYTES = 1024 * 1024;
/**
 * A data member taken from the member cache (snapshot/member-cache.ts): the gzip of exactly
 * MEMBER_BYTES of one file's data, copied into the artifact byte for byte.
 */
export interface ReusedMember {
  compressed: Buffer;
  /** where the cache holds it, handed back to the capture (the cache's own business) */
  cachedAt?: unknown;
}

/** What an aligned entry is written from: bytes to compress, or members compressed already. */
export type AlignedPart = Buffer | ReusedMember;

/** Told each member of an aligned entry's data once it is written: its bytes, and how much tar it holds. */
export type MemberCapture = (
  compressed: Buffer,
  plain: number,
  reused?: ReusedMember,
) => Promise<void> | void;

/** Members deflating at once in libuv's threadpool: enough to keep both cores of a small host busy. */
const IN_FLIGHT = 3;

/**
 * zlib's output buffer per member: si's logs deflate about 30:1, so a 1 MiB member fits in one
 * 64 KiB buffer (one callback); a less compressible one takes a few. A buffer the size of the
 * member, as before, allocated 1 MiB per member to keep 35 KiB of it: garbage the main thread
 * then spent its time collecting.
 */
const OUTPUT_CHUNK = 64 * 1024;

/**
 * zlib's memLevel: 9 (its largest hash table, 256 KiB more per member in flight) finds matches
 * with fewer collisions than the default 8: measured on 32 MiB of each bench shape, 3-7 % less
 * CPU for the same or a slightly smaller output.
 */
const MEM_LEVEL = 9;

/**
 * A member that deflated to more than this share of its bytes tells that the data is hard to
 * compress (long lines of ids, stack traces, payloads): when a level above LOWEST_LAZY_LEVEL was
 * asked, the next members are deflated one level lower. There the lower level's lazier matching
 * saves a third of the CPU for about 5 % more bytes (bench/ shape "long", 1 MiB members: level 5
 * 0.73 s, 0.336; level 4 0.46 s, 0.352). The artifact stays within issue 14's 1.1x `gzip -6`.
 */
const HARD_TO_COMPRESS = 0.25;
/**
 * Never below level 4 for hard data: level 3 (zlib's deflate_fast) took more CPU than level 4 on
 * the long shape (0.44 against 0.41 s per 32 MiB) and wrote 1.5 % more bytes.
 */
const LOWEST_LAZY_LEVEL = 4;
/** members smaller than this (a header, a small file's tail) say too little about the data */
const LEVEL_SAMPLE_BYTES = 256 * 1024;

function deflateMember(tar: Buffer, level: number): Promise<Buffer> {
  const chunkSize = OUTPUT_CHUNK;
  return new Promise((resolve, reject) =>
    gzip(tar, { level, chunkSize, memLevel: MEM_LEVEL }, (err, out) => (err ? reject(err) : resolve(out))),
  );
}

const BLOCK = 512;
const ZEROS = Buffer.alloc(BLOCK * 2);

function octal(value: number, width: number): string {
  return `${value.toString(8).padStart(width - 1, "0")}\0`;
}

/** A pax extended header record: "<len> key=value\n", where len counts the whole record in bytes. */
function paxRecord(key: string, value: string): string {
  const body = ` ${key}=${value}\n`;
  let len = Buffer.byteLength(body) + 1;
  while (String(len).length + Buffer.byteLength(body) !== len)
    len = String(len).length + Buffer.byteLength(body);
  return `${len}${body}`;
}

/** One ustar header block. `name` must fit in 100 bytes of ASCII (longer names go in a pax header). */
function ustarHeader(name: string, type: "0" | "5" | "x", size: number, mode: number, mtime: Date): Buffer {
  const h = Buffer.alloc(BLOCK);
  h.write(name, 0, 100, "utf8");
  h.write(octal(mode, 8), 100, "ascii");
  h.write(octal(0, 8), 108, "ascii");
  h.write(octal(0, 8), 116, "ascii");
  h.write(octal(size, 12), 124, "ascii");
  h.write(octal(Math.floor(mtime.getTime() / 1000), 12), 136, "ascii");
  h.write("        ", 148, "ascii");
  h.write(type, 156, "ascii");
  h.write("ustar\u000000", 257, "ascii");
  let sum = 0;
  for (const byte of h) sum += byte;
  h.write(`${sum.toString(8).padStart(6, "0")}\0 `, 148, "ascii");
  return h;
}

/**
 * A tar.gz writer in the pigz manner: the tar stream (ustar headers, pax where a name or the
 * manifest needs one, as GNU tar and node-tar read) is cut into 1 MiB pieces, each deflated as its
 * own gzip member in libuv's threadpool with several in flight, and the members are written in
 * order. Concatenated gzip members are one valid .tar.gz for GNU tar and gzip. Entries are taken
 * one at a time and memory stays flat: a few members in flight, whatever the file sizes. Entry
 * modes are fixed at 0700/0600 because the archive is private state whatever the source's were.
 */
export class ArchiveWriter {
  private piece: Buffer = Buffer.allocUnsafe(MEMBER_BYTES);
  private filled = 0;
  private readonly inFlight: {
    plain: number;
    /** the piece deflated, kept for reuse; null for a member copied from the cache */
    tar: Buffer | null;
    deflated: Promise<Buffer>;
    capture: MemberCapture | null;
    /** a member copied from the cache, as it came */
    reused?: ReusedMember;
  }[] = [];
  /** set while an aligned entry's data is written: its members are handed to it */
  private capture: MemberCapture | null = null;
  /** pieces whose member is written, reused: fresh 1 MiB buffers per member would grow the heap's external memory until a GC */
  private readonly spare: Buffer[] = [];
  private readonly members: GzipMembers = { compressed: [], plain: [] };
  private failure: Error | null = null;
  private sinkError: Error | null = null;
  /** the level the next member is deflated at: gzipLevel, or one lower while the data is hard to compress */
  private level: number;

  constructor(
    private readonly sink: Writable,
    private readonly gzipLevel = DEFAULT_GZIP_LEVEL,
  ) {
    this.level = gzipLevel;
    sink.on("error", (err: Error) => {
      this.sinkError ??= err;
    });
  }

  private check(): void {
    if (this.failure) throw this.failure;
    if (this.sinkError) throw this.sinkError;
    // Destroyed without an error (a stage that ended early), a sink emits neither 'drain' nor
    // 'error' again: a write would wait for it forever, and the run would end with exit 0 and
    // nothing printed once nothing else was left to wake it.
    if (this.sink.destroyed)
      throw (this.failure = new Error("the artifact's stream was closed before the archive was complete"));
  }

  private async write(data: Buffer): Promise<void> {
    let at = 0;
    while (at < data.length) {
      const n = Math.min(data.length - at, MEMBER_BYTES - this.filled);
      data.copy(this.piece, this.filled, at, at + n);
      this.filled += n;
      at += n;
      if (this.filled === MEMBER_BYTES) await this.seal();
    }
  }

  /** Hand the current piece to the threadpool; write out the oldest member when enough are in flight. */
  private async seal(): Promise<void> {
    if (this.filled === 0) return;
    const tar = this.filled === MEMBER_BYTES ? this.piece : this.piece.subarray(0, this.filled);
    const deflated = deflateMember(tar, this.level);
    deflated.catch(() => undefined);
    this.inFlight.push({ plain: this.filled, tar: this.piece, deflated, capture: this.capture });
    this.piece = this.spare.pop() ?? Buffer.allocUnsafe(MEMBER_BYTES);
    this.filled = 0;
    while (this.inFlight.length >= IN_FLIGHT) await this.writeOldest();
  }

  private async writeOldest(): Promise<void> {
    const next = this.inFlight.shift()!;
    const member = await next.deflated;
    if (next.tar) {
      this.spare.push(next.tar);
      if (next.plain >= LEVEL_SAMPLE_BYTES)
        this.level =
          this.gzipLevel > LOWEST_LAZY_LEVEL && member.length > next.plain * HARD_TO_COMPRESS
            ? this.gzipLevel - 1
            : this.gzipLevel;
    }
    this.check();
    this.members.compressed.push(member.length);
    this.members.plain.push(next.plain);
    if (next.capture) await next.capture(member, next.plain, next.reused);
    if (!this.sink.write(member)) await this.drained();
    this.check();
  }

  /**
   * The sink took the member but is full: wait for it to drain (or close or fail, which check()
   * then reports). The listeners go with the wait: racing two once() left the loser's behind on
   * every wait, dozens on a large snapshot (MaxListenersExceededWarning on stderr).
   */
  private drained(): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        this.sink.off("drain", done);
        this.sink.off("close", done);
        this.sink.off("error", done);
        resolve();
      };
      this.sink.on("drain", done);
      this.sink.on("close", done);
      this.sink.on("error", done);
    });
  }

  private async header(
    path: string,
    type: "0" | "5",
    size: number,
    mode: number,
    mtime: Date,
    pax: Record<string, string> = {},
  ): Promise<void> {
    this.check();
    const records = { ...pax };
    const ascii = /^[\x20-\x7e]*$/.test(path);
    if (!ascii || Buffer.byteLength(path) > 100) records.path = path;
    if (size > 0o77777777777) records.size = String(size);
    if (Object.keys(records).length > 0) {
      const body = Buffer.from(
        Object.entries(records)
          .map(([k, v]) => paxRecord(k, v))
          .join(""),
        "utf8",
      );
      const paxName = `PaxHeader/${path.replace(/[^\x20-\x7e]/g, "_")}`.slice(0, 99);
      await this.write(ustarHeader(paxName, "x", body.length, 0o600, mtime));
      await this.write(body);
      await this.pad(body.length);
    }
    const shortName = records.path !== undefined ? path.replace(/[^\x20-\x7e]/g, "_").slice(-99) : path;
    await this.write(ustarHeader(shortName, type, records.size !== undefined ? 0 : size, mode, mtime));
  }

  private async pad(size: number): Promise<void> {
    const rest = size % BLOCK;
    if (rest) await this.write(ZEROS.subarray(0, BLOCK - rest));
  }

  addDirectory(path: string, mtime: Date): Promise<void> {
    return this.header(`${path}/`, "5", 0, 0o700, mtime);
  }

  async addBuffer(path: string, content: Buffer, mtime: Date): Promise<void> {
    await this.header(path, "0", content.length, 0o600, mtime);
    await this.write(content);
    await this.pad(content.length);
  }

  /**
   * `source` must yield exactly `size` bytes, else the archive fails (no torn entry survives).
   * Each chunk is copied before the next is asked for, so a source may reuse a chunk's buffer then.
   */
  async addStream(
    path: string,
    source: AsyncIterable<Buffer> & { destroy?: () => void },
    size: number,
    mtime: Date,
  ): Promise<void> {
    await this.header(path, "0", size, 0o600, mtime);
    let seen = 0;
    try {
      for await (const chunk of source) {
        seen += (chunk as Buffer).length;
        if (seen > size) throw new Error(`${path} grew past ${size} bytes while it was archived`);
        await this.write(chunk as Buffer);
      }
    } catch (err) {
      this.failure ??= err as Error;
      source.destroy?.();
      throw err;
    }
    if (seen !== size) {
      this.failure ??= new Error(`${path} ended at ${seen} of ${size} bytes while it was archived`);
      throw this.failure;
    }
    await this.pad(size);
  }

  /**
   * An entry whose data lies in gzip members of its own (issue 23): the header (and any pax
   * header) ends the member it is in and is followed by a cut, then data member k holds bytes
   * [k * MEMBER_BYTES, (k + 1) * MEMBER_BYTES) of the file, the last one the rest and the tar
   * padding. Every cut falls on a tar block boundary (MEMBER_BYTES is a multiple of 512), so a
   * later full can copy member k of a log that only grew instead of compressing it again.
   * `parts` yields bytes to compress or, on a member boundary, a member compressed already
   * (it stands for MEMBER_BYTES of data). `capture` is told every data member as it is written.
   */
  async addAlignedStream(
    path: string,
    parts: AsyncIterable<AlignedPart>,
    size: number,
    mtime: Date,
    capture?: MemberCapture,
  ): Promise<void> {
    this.check();
    await this.seal();
    await this.header(path, "0", size, 0o600, mtime);
    await this.seal();
    this.capture = capture ?? null;
    let seen = 0;
    try {
      for await (const part of parts) {
        if (Buffer.isBuffer(part)) {
          seen += part.length;
          if (seen > size) throw new Error(`${path} grew past ${size} bytes while it was archived`);
          await this.write(part);
        } else {
          if (this.filled !== 0)
            throw new Error(`${path}: a reused member does not start on a member boundary`);
          seen += MEMBER_BYTES;
          if (seen > size) throw new Error(`${path}: a reused member reaches past ${size} bytes`);
          this.inFlight.push({
            plain: MEMBER_BYTES,
            tar: null,
            deflated: Promise.resolve(part.compressed),
            capture: this.capture,
            reused: part,
          });
          while (this.inFlight.length >= IN_FLIGHT) await this.writeOldest();
        }
      }
      if (seen !== size) throw new Error(`${path} ended at ${seen} of ${size} bytes while it was archived`);
      await this.pad(size);
      await this.seal();
    } catch (err) {
      this.failure ??= err as Error;
      throw err;
    } finally {
      this.capture = null;
    }
  }

  /**
   * End the current member and wait for every member so far to be written: returns where each
   * member starts and what it holds. What is written afterwards (the manifest entry) is not indexed.
   */
  async cut(): Promise<GzipMembers> {
    this.check();
    await this.seal();
    while (this.inFlight.length > 0) await this.writeOldest();
    return { compressed: [...this.members.compressed], plain: [...this.members.plain] };
  }

  /** Close the archive with the trailing "./" entry that carries the manifest as a pax comment. */
  async finish(manifestJson: string, mtime: Date): Promise<void> {
    await this.header("./", "5", 0, 0o700, mtime, { comment: manifestJson });
    await this.write(ZEROS);
    await this.cut();
    const ended = new Promise<void>((resolve, reject) => {
      this.sink.once("error", reject);
      this.sink.once("finish", () => resolve());
      this.sink.once("close", () => resolve());
    });
    this.sink.end();
    await ended;
    // The sink is destroyed once it finished (autoDestroy): only an error it reported counts now.
    if (this.sinkError) throw this.sinkError;
  }

  abort(): void {
    this.failure ??= new Error("archive aborted");
    this.inFlight.length = 0;
    this.sink.destroy();
  }
}
